"""What a fine-tune leaves behind, in the layouts the inpainting endpoint loads.

- LoRA: ``<dir>/pytorch_lora_weights.safetensors`` in the diffusers LoRA format (the file
  ``StableDiffusionInpaintPipeline.load_lora_weights`` reads), with the LoRA config stored
  as safetensors metadata and the scale alpha / rank folded into the ``up`` weights.
- Full fine-tune: ``<dir>/unet/`` (and ``<dir>/text_encoder/``) in the diffusers layout, to
  replace the base model's folders.
- Both load alike on the project's libraries and the serving image's older ones (folded
  LoRA scale, ``text_model.`` weight names; see :mod:`tryon.weights.portable`).
- ``training_config.json``: the effective configuration; ``validation.png``: the grid.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

LORA_WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
CONFIG_NAME = "training_config.json"
VALIDATION_NAME = "validation.png"


def lora_layers(model: Any) -> dict[str, Any]:
    """The diffusers-format LoRA state dict of a peft-injected model (UNet or text encoder)."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import get_peft_model_state_dict

    return convert_state_dict_to_diffusers(get_peft_model_state_dict(model))


def _adapter_metadata(model: Any) -> dict[str, Any]:
    config = model.peft_config["default"].to_dict()
    return json.loads(json.dumps(config, default=lambda v: sorted(v) if isinstance(v, set) else str(v)))


def portable_lora(model: Any, *, key_prefix: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """(layers, metadata) of a peft-injected model, in a form every diffusers version loads alike.

    diffusers before 0.34 (the serving image has 0.33.1) ignores the adapter metadata and loads
    a diffusers-format LoRA with alpha = rank. So the scale alpha / rank is folded into the
    ``up`` weights and the metadata says alpha = rank: the same deltas on every version.
    ``key_prefix`` is put in front of every name that lacks it.
    """
    meta = _adapter_metadata(model)
    if meta.get("rank_pattern") or meta.get("alpha_pattern"):
        raise ValueError("per-module LoRA ranks/alphas cannot be saved portably")
    scale = float(meta["lora_alpha"]) / float(meta["r"])
    layers = {}
    for name, tensor in lora_layers(model).items():
        key = name if name.startswith(key_prefix) else key_prefix + name
        layers[key] = tensor * scale if name.endswith("up.weight") and scale != 1.0 else tensor
    meta["lora_alpha"] = meta["r"]
    return layers, meta


def save_lora_adapter(
    out_dir: str | Path, unet: Any, text_encoder: Any | None = None, text_encoder_2: Any | None = None
) -> Path:
    """Write the LoRA adapter of ``unet`` (and of the text encoders with LoRA layers); return the file.

    ``text_encoder_2`` is SDXL's second encoder (its layers are saved as ``text_encoder_2.*``).
    The file loads alike on the project's diffusers and the serving image's (see :func:`portable_lora`).
    """
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionXLInpaintPipeline

    from tryon.weights.portable import CLIP_TEXT_PREFIX

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts: dict[str, Any] = {}
    for name, encoder in (("text_encoder", text_encoder), ("text_encoder_2", text_encoder_2)):
        if encoder is not None and getattr(encoder, "peft_config", None):
            layers, meta = portable_lora(encoder, key_prefix=CLIP_TEXT_PREFIX)
            parts.update({f"{name}_lora_layers": layers, f"{name}_lora_adapter_metadata": meta})
    unet_layers, unet_meta = portable_lora(unet)
    saver = (
        StableDiffusionXLInpaintPipeline
        if "text_encoder_2_lora_layers" in parts
        else StableDiffusionInpaintPipeline
    )
    saver.save_lora_weights(
        out,
        unet_lora_layers=unet_layers,
        unet_lora_adapter_metadata=unet_meta,
        safe_serialization=True,
        **parts,
    )
    return out / LORA_WEIGHTS_NAME


def save_full_model(
    out_dir: str | Path, unet: Any, text_encoder: Any | None = None, text_encoder_2: Any | None = None
) -> Path:
    """Write a fully fine-tuned UNet (and text encoders) in the diffusers layout; return ``out_dir``."""
    from tryon.weights.portable import save_clip_text_encoder

    out = Path(out_dir)
    unet.save_pretrained(out / "unet", safe_serialization=True)
    if text_encoder is not None:  # in the weight-name layout the serving image's transformers loads
        save_clip_text_encoder(text_encoder, out / "text_encoder")
    if text_encoder_2 is not None:  # CLIPTextModelWithProjection: both versions read its names as saved
        text_encoder_2.save_pretrained(out / "text_encoder_2", safe_serialization=True)
    return out


def write_config(out_dir: str | Path, effective: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    """Write ``training_config.json`` (the effective options plus run facts); return its path."""
    path = Path(out_dir) / CONFIG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**effective, **(extra or {})}, indent=2, sort_keys=True) + "\n")
    return path


def save_grid(images: Sequence[Image.Image], path: str | Path, *, columns: int | None = None) -> Path:
    """Save images side by side (``columns`` per row, default all in one row) as a PNG."""
    from diffusers.utils import make_image_grid

    columns = columns or len(images)
    rows = -(-len(images) // columns)
    cells = [img.convert("RGB") for img in images]
    size = cells[0].size
    cells += [Image.new("RGB", size, (0, 0, 0))] * (rows * columns - len(cells))
    grid = make_image_grid([c.resize(size) for c in cells], rows=rows, cols=columns)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    return out


def upload_adapter(adapter_dir: str | Path, s3_uri: str, *, client: Any = None) -> str:
    """Upload the adapter's ``*.safetensors`` to ``s3://bucket/prefix/``; return the prefix URI.

    The inpainting endpoint loads it when a request says ``{"adapter": "<that URI>"}``.
    Raises RequestError for a bad URI or a folder without LoRA weights.
    """
    from tryon.core.errors import RequestError

    folder = Path(adapter_dir)
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        raise RequestError(
            "adapter_dir", f"{folder} holds no .safetensors file (expected {LORA_WEIGHTS_NAME})"
        )
    from tryon.core.s3uri import parse_s3_prefix

    bucket, prefix = parse_s3_prefix(s3_uri, field="s3_uri")
    prefix = prefix.strip("/")
    if client is None:
        import boto3

        client = boto3.client("s3")
    for path in files:
        key = f"{prefix}/{path.name}" if prefix else path.name
        client.upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{prefix}/" if prefix else f"s3://{bucket}/"
