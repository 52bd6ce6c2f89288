"""What differs between base-model families in the fine-tune: text encoding and added conditioning.

The training loop (:mod:`tryon.training.loop`) is one; a :class:`Family` supplies the parts
that depend on the base:

- ``sd`` (SD 1.5 / SD 2 inpainting): one CLIP text encoder; the UNet reads its last hidden
  state.
- ``sdxl`` (SDXL inpainting): two text encoders whose penultimate hidden states go side by
  side to the UNet, plus SDXL's added conditioning: the second encoder's pooled projection
  (``text_embeds``) and the size/crop ids (``time_ids``: original height and width, crop top
  and left, target height and width).

:func:`family_for` picks one from the model folder's ``model_index.json`` (a second text
encoder means SDXL). Torch and diffusers are imported inside the methods.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tryon.core.errors import RequestError

#: SDXL inpainting's size/crop ids per example (no aesthetic score: that is the refiner's).
SDXL_TIME_IDS = 6


@dataclass
class TextStack:
    """The tokenizers and text encoders of a base, in the pipeline's order."""

    tokenizers: list[Any]
    encoders: list[Any]


@dataclass(frozen=True)
class Family:
    """The per-base parts of the fine-tune (see the module docstring)."""

    name: str
    #: (tokenizer folder, text encoder folder, transformers class name) per text encoder
    text_parts: tuple[tuple[str, str, str], ...]
    pipeline_class_name: str

    def pipeline_class(self) -> type:
        """The diffusers inpainting pipeline of this family (validation, class images, LoRA files)."""
        import diffusers

        return getattr(diffusers, self.pipeline_class_name)

    def load_text(self, source: str) -> TextStack:
        """Load the tokenizers and text encoders of the base at ``source``."""
        import transformers

        tokenizers, encoders = [], []
        for tokenizer_folder, encoder_folder, encoder_class in self.text_parts:
            tokenizers.append(transformers.CLIPTokenizer.from_pretrained(source, subfolder=tokenizer_folder))
            cls = getattr(transformers, encoder_class)
            encoders.append(cls.from_pretrained(source, subfolder=encoder_folder))
        return TextStack(tokenizers, encoders)

    def tokenize(self, text: TextStack, prompts: list[str]) -> dict[str, Any]:
        """Token ids of ``prompts`` for each text encoder: ``input_ids``, ``input_ids_2``, ..."""
        ids = {}
        for index, tokenizer in enumerate(text.tokenizers):
            ids[_ids_key(index)] = tokenizer(
                prompts,
                padding="max_length",
                truncation=True,
                max_length=tokenizer.model_max_length,
                return_tensors="pt",
            ).input_ids
        return ids

    def encode(
        self, encoders: list[Any], batch: dict[str, Any], device: Any, dtype: Any
    ) -> tuple[Any, dict[str, Any] | None]:
        """(encoder hidden states, the UNet's ``added_cond_kwargs`` or None) of a micro-batch."""
        import torch

        if self.name == "sd":
            return encoders[0](batch["input_ids"].to(device), return_dict=False)[0], None
        hidden, pooled = [], None
        for index, encoder in enumerate(encoders):
            out = encoder(batch[_ids_key(index)].to(device), output_hidden_states=True, return_dict=True)
            hidden.append(out.hidden_states[-2])
            pooled = out[0]  # the last encoder's pooled projection, as the SDXL pipelines take it
        added = {"text_embeds": pooled, "time_ids": batch["time_ids"].to(device, dtype=dtype)}
        return torch.cat(hidden, dim=-1), added

    def check_unet(self, unet: Any, text: TextStack, source: str) -> None:
        """RequestError naming ``pretrained_model`` if the UNet's added conditioning is not this family's."""
        if self.name == "sd":
            return
        config = unet.config
        expected = (
            SDXL_TIME_IDS * (config.addition_time_embed_dim or 0) + text.encoders[-1].config.projection_dim
        )
        if (
            config.addition_embed_type != "text_time"
            or config.projection_class_embeddings_input_dim != expected
        ):
            raise RequestError(
                "pretrained_model",
                f"{source} is not an SDXL inpainting model: its UNet does not take the pooled text and "
                f"{SDXL_TIME_IDS} size/crop ids (a refiner, with its aesthetic score, cannot be fine-tuned)",
            )

    def pipeline(self, *, vae: Any, text: TextStack, unet: Any, scheduler: Any) -> Any:
        """An inpainting pipeline of this family from loaded parts (for validation images)."""
        parts: dict[str, Any] = {"vae": vae, "unet": unet, "scheduler": scheduler}
        for index, (tokenizer_folder, encoder_folder, _) in enumerate(self.text_parts):
            parts[tokenizer_folder], parts[encoder_folder] = text.tokenizers[index], text.encoders[index]
        return self.pipeline_class()(**parts, **self.pipeline_options())

    def pipeline_options(self) -> dict[str, Any]:
        """Extra arguments of the pipeline (no safety checker; SDXL inpainting has no aesthetic score)."""
        if self.name == "sd":
            return {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
        return {"requires_aesthetics_score": False}


def _ids_key(index: int) -> str:
    return "input_ids" if index == 0 else f"input_ids_{index + 1}"


SD = Family(
    "sd",
    (("tokenizer", "text_encoder", "CLIPTextModel"),),
    "StableDiffusionInpaintPipeline",
)
SDXL = Family(
    "sdxl",
    (
        ("tokenizer", "text_encoder", "CLIPTextModel"),
        ("tokenizer_2", "text_encoder_2", "CLIPTextModelWithProjection"),
    ),
    "StableDiffusionXLInpaintPipeline",
)
FAMILIES = {f.name: f for f in (SD, SDXL)}


def family_for(source: str) -> Family:
    """The family of the pipeline at ``source`` (a folder or a hub id), from its ``model_index.json``."""
    folder = Path(source)
    if folder.is_dir():
        index_file = folder / "model_index.json"
        if not index_file.is_file():
            raise RequestError(
                "pretrained_model", f"{source} has no model_index.json (not a diffusers pipeline)"
            )
        index = json.loads(index_file.read_text())
    else:
        from diffusers import DiffusionPipeline

        index = DiffusionPipeline.load_config(source)
    return SDXL if index.get("text_encoder_2") else SD


def time_ids(original_size: tuple[int, int], crop_top_left: tuple[int, int], resolution: int) -> list[int]:
    """SDXL's size/crop ids of one example: (height, width) before cropping, (top, left), target size."""
    return [*original_size, *crop_top_left, resolution, resolution]
