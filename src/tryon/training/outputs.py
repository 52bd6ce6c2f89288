"""What a fine-tune leaves behind, in the layouts the inpainting endpoint loads.

- LoRA: ``<dir>/pytorch_lora_weights.safetensors`` in the diffusers LoRA format (the file
  ``StableDiffusionInpaintPipeline.load_lora_weights`` reads), with the LoRA config
  (rank, alpha, targets) stored as safetensors metadata so alpha != rank loads correctly.
- Full fine-tune: ``<dir>/unet/`` (and ``<dir>/text_encoder/``) in the diffusers layout, to
  replace the base model's folders.
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


def save_lora_adapter(out_dir: str | Path, unet: Any, text_encoder: Any | None = None) -> Path:
    """Write the LoRA adapter of ``unet`` (and ``text_encoder`` if it has LoRA layers); return the file."""
    from diffusers import StableDiffusionInpaintPipeline

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    te_layers = te_meta = None
    if text_encoder is not None and getattr(text_encoder, "peft_config", None):
        te_layers, te_meta = lora_layers(text_encoder), _adapter_metadata(text_encoder)
    StableDiffusionInpaintPipeline.save_lora_weights(
        out,
        unet_lora_layers=lora_layers(unet),
        text_encoder_lora_layers=te_layers,
        unet_lora_adapter_metadata=_adapter_metadata(unet),
        text_encoder_lora_adapter_metadata=te_meta,
        safe_serialization=True,
    )
    return out / LORA_WEIGHTS_NAME


def save_full_model(out_dir: str | Path, unet: Any, text_encoder: Any | None = None) -> Path:
    """Write a fully fine-tuned UNet (and text encoder) in the diffusers layout; return ``out_dir``."""
    out = Path(out_dir)
    unet.save_pretrained(out / "unet", safe_serialization=True)
    if text_encoder is not None:
        text_encoder.save_pretrained(out / "text_encoder", safe_serialization=True)
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
    from tryon.errors import RequestError

    folder = Path(adapter_dir)
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        raise RequestError(
            "adapter_dir", f"{folder} holds no .safetensors file (expected {LORA_WEIGHTS_NAME})"
        )
    bucket, _, prefix = s3_uri[5:].partition("/") if s3_uri.startswith("s3://") else ("", "", "")
    if not bucket:
        raise RequestError("s3_uri", f"must be an s3://bucket/prefix/ URI, got {s3_uri!r}")
    prefix = prefix.strip("/")
    if client is None:
        import boto3

        client = boto3.client("s3")
    for path in files:
        key = f"{prefix}/{path.name}" if prefix else path.name
        client.upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{prefix}/" if prefix else f"s3://{bucket}/"
