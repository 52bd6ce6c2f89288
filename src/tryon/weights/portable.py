"""Save checkpoints in a layout both the serving image's libraries and the project's own load.

The endpoints run on the Hugging Face inference image (transformers 4.51.3, diffusers
0.33.1, see ``serving/image-requirements.txt``); this project builds and trains with
transformers 5. Three things transformers 5 writes that 4.51 does not read:

- tokenizers: only ``tokenizer.json``; 4.x's slow ``CLIPTokenizer`` (what diffusers
  pipelines load) needs ``vocab.json`` and ``merges.txt``;
- processors: ``processor_config.json`` with the image processor nested inside, which 4.51
  passes twice to the processor (``got multiple values for argument 'image_processor'``);
  4.x reads the image processor from ``preprocessor_config.json``;
- ``CLIPTextModel`` weights without the ``text_model.`` prefix, which 4.51 silently skips
  (random weights). Both versions load the prefixed names.

Standard library and safetensors; transformers objects are passed in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Prefix 4.x's CLIPTextModel (and 5.x, when loading) expects on every weight name.
CLIP_TEXT_PREFIX = "text_model."


def save_tokenizer(tokenizer: Any, folder: str | Path) -> None:
    """Save a fast (tokenizers-backed) BPE tokenizer with ``vocab.json`` and ``merges.txt`` too."""
    folder = Path(folder)
    tokenizer.save_pretrained(folder)
    tokenizer.backend_tokenizer.model.save(str(folder))


def save_processor(image_processor: Any, tokenizer: Any, folder: str | Path) -> None:
    """Save a processor as its parts: ``preprocessor_config.json`` and the tokenizer files.

    No ``processor_config.json``: transformers 5 assembles the processor from the parts too.
    """
    image_processor.save_pretrained(folder)
    save_tokenizer(tokenizer, folder)


def save_clip_text_encoder(text_encoder: Any, folder: str | Path) -> None:
    """``save_pretrained`` a ``CLIPTextModel``, with weight names in the prefixed (4.x) layout."""
    text_encoder.save_pretrained(folder, safe_serialization=True)
    prefix_clip_text_weights(folder)


def prefix_clip_text_weights(folder: str | Path) -> None:
    """Rename the weights of a saved ``CLIPTextModel`` so every name starts with ``text_model.``."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    def prefixed(name: str) -> str:
        return name if name.startswith(CLIP_TEXT_PREFIX) else CLIP_TEXT_PREFIX + name

    folder = Path(folder)
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {"format": "pt"}
        tensors = load_file(str(path))
        if any(name != prefixed(name) for name in tensors):
            save_file({prefixed(name): t for name, t in tensors.items()}, str(path), metadata=metadata)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        data = json.loads(index.read_text())
        data["weight_map"] = {prefixed(name): shard for name, shard in data.get("weight_map", {}).items()}
        index.write_text(json.dumps(data, indent=2) + "\n")


def make_pipeline_compatible(pipeline_dir: str | Path) -> None:
    """Fix a diffusers pipeline folder saved with transformers 5, in place (tokenizers, text encoders).

    Every ``tokenizer*/`` folder with a ``tokenizer.json`` gains ``vocab.json``/``merges.txt``;
    every ``text_encoder*/`` holding a ``CLIPTextModel`` gets the ``text_model.`` prefix.
    """
    from tokenizers import Tokenizer

    for folder in sorted(p for p in Path(pipeline_dir).iterdir() if p.is_dir()):
        config = folder / "config.json"
        if (folder / "tokenizer.json").is_file() and not (folder / "vocab.json").is_file():
            Tokenizer.from_file(str(folder / "tokenizer.json")).model.save(str(folder))
        elif config.is_file() and json.loads(config.read_text()).get("architectures") == ["CLIPTextModel"]:
            prefix_clip_text_weights(folder)
