"""Garment reference images: an IP-Adapter in the model folder conditions inpainting on a packshot.

A model folder carries an IP-Adapter in ``ip_adapter/`` (the layout of ``h94/IP-Adapter``'s
``models/`` or ``sdxl_models/`` folder): exactly one weight file (``*.safetensors`` or
``*.bin``) and ``image_encoder/`` (a ``CLIPVisionModelWithProjection``). diffusers'
``load_ip_adapter`` loads both at start-up; IP-Adapters exist for SD 1.5 and SDXL bases,
not SD 2. A request's ``garment_image`` is encoded once by the image encoder and its
embedding passed to every pipeline call (``ip_adapter_image_embeds``) at ``garment_scale``
(``set_ip_adapter_scale``). A request without one runs at scale 0 with zero embeddings:
diffusers then skips the image tokens, so its output equals the model's without the adapter.
LoRA adapters sit in the attention's linear layers, the IP-Adapter in its processors: both
apply at once. Use :class:`GarmentConditioner` under the model's lock, like the pipeline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from tryon.core import imaging
from tryon.core.contract import SD_INPAINT
from tryon.core.errors import RequestError
from tryon.handlers.common import ModelFolderError, load_image

#: Where a model folder keeps its IP-Adapter, and the image encoder inside it.
FOLDER = "ip_adapter"
IMAGE_ENCODER_FOLDER = "image_encoder"
IMAGE_FIELD = "garment_image"
SCALE_FIELD = "garment_scale"
#: Said to a client whose model cannot take a garment image.
SUPPORTED_MODELS = (
    "garment images need an inpainting model packaged with an IP-Adapter (an ip_adapter/ folder; "
    "IP-Adapters exist for SD 1.5 and SDXL bases, not SD 2): see docs/endpoint-sd-inpaint.md"
)


class IPAdapterLayoutError(ModelFolderError):
    """The model folder's ``ip_adapter/`` cannot be loaded (a deployment mistake, reported at start-up)."""


def weight_file(folder: Path) -> Path:
    """The one IP-Adapter weight file in ``folder``; IPAdapterLayoutError if there is none or several."""
    candidates = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in {".safetensors", ".bin"})
    if len(candidates) != 1:
        found = ", ".join(p.name for p in candidates) or "none"
        raise IPAdapterLayoutError(
            f"{folder} must hold exactly one IP-Adapter weight file (*.safetensors or *.bin); found: {found}"
        )
    if not (folder / IMAGE_ENCODER_FOLDER / "config.json").is_file():
        raise IPAdapterLayoutError(
            f"{folder} has no {IMAGE_ENCODER_FOLDER}/ (a CLIP vision model) beside its weights"
        )
    return candidates[0]


def find(model_dir: str | os.PathLike[str] | None) -> Path | None:
    """``<model_dir>/ip_adapter`` if the model folder has one, else None."""
    if not model_dir:
        return None
    folder = Path(model_dir) / FOLDER
    return folder if folder.is_dir() else None


@dataclass(frozen=True)
class GarmentRequest:
    """A request's decoded garment image (RGB; transparency composited on white) and its scale."""

    image: Image.Image
    scale: float


@dataclass
class GarmentConditioner:
    """An IP-Adapter loaded into a pipeline, and the zero embeddings a request without a garment gets."""

    pipe: Any
    weight_name: str
    zero_embeds: list[Any]

    def embeds(self, garment: GarmentRequest | None, guidance_scale: float) -> list[Any]:
        """Set the adapter's scale; return ``ip_adapter_image_embeds`` for this request's pipeline calls.

        With classifier-free guidance (``guidance_scale > 1``, as the pipelines decide) the
        pipeline expects each embedding as [negative, positive] along the batch axis. The
        garment is encoded once per request, however many images the request asks for.
        """
        import torch

        guided = guidance_scale > 1 and self.pipe.unet.config.time_cond_proj_dim is None
        if garment is None:
            self.pipe.set_ip_adapter_scale(0.0)
            return [torch.cat([z, z]) if guided else z for z in self.zero_embeds]
        self.pipe.set_ip_adapter_scale(garment.scale)
        with torch.no_grad():
            return self.pipe.prepare_ip_adapter_image_embeds(garment.image, None, self.pipe.device, 1, guided)


def pipeline_kwargs(
    conditioner: GarmentConditioner | None, garment: GarmentRequest | None, guidance_scale: float
) -> dict[str, Any]:
    """Extra pipeline keyword arguments: the garment's embeddings, on a model with an IP-Adapter."""
    if conditioner is None:
        return {}
    return {"ip_adapter_image_embeds": conditioner.embeds(garment, guidance_scale)}


def load(pipe: Any, model_dir: str | os.PathLike[str] | None) -> GarmentConditioner | None:
    """Load ``<model_dir>/ip_adapter`` into ``pipe`` (None if the folder has none)."""
    folder = find(model_dir)
    if folder is None:
        return None
    weights = weight_file(folder)
    try:
        pipe.load_ip_adapter(
            str(folder), subfolder="", weight_name=weights.name, image_encoder_folder=IMAGE_ENCODER_FOLDER
        )
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise IPAdapterLayoutError(
            f"{folder} could not be loaded into this model's UNet (IP-Adapters exist for SD 1.5 and SDXL "
            f"bases, not SD 2): {detail}"
        ) from exc
    return conditioner(pipe, weights.name)


def conditioner(pipe: Any, weight_name: str) -> GarmentConditioner:
    """The :class:`GarmentConditioner` of a pipeline whose IP-Adapter is loaded (image encoder included)."""
    import torch

    size = pipe.image_encoder.config.image_size
    with torch.no_grad():  # shapes of this adapter's embeddings (plain, or hidden states for "plus")
        template = pipe.prepare_ip_adapter_image_embeds(
            Image.new("RGB", (size, size)), None, pipe.device, 1, False
        )
    return GarmentConditioner(pipe, weight_name, [torch.zeros_like(t) for t in template])


def read_request(payload: Any, conditioner: GarmentConditioner | None) -> GarmentRequest | None:
    """The request's garment image and scale, validated like any input image; None if it gives none."""
    given = payload.get(IMAGE_FIELD) not in (None, "")
    if not given:
        if payload.get(SCALE_FIELD) is not None:
            raise RequestError(SCALE_FIELD, f"needs {IMAGE_FIELD} (the garment's reference image)")
        return None
    if conditioner is None:
        raise RequestError(IMAGE_FIELD, f"this model has no IP-Adapter; {SUPPORTED_MODELS}")
    scale = SD_INPAINT.read(payload, SCALE_FIELD)
    return GarmentRequest(imaging.to_rgb(load_image(payload, IMAGE_FIELD)), scale)


def describe(request: GarmentRequest | None, conditioner: GarmentConditioner | None) -> dict[str, Any] | None:
    """What the response reports about the garment conditioning (None without a garment image)."""
    if request is None or conditioner is None:
        return None
    return {"ip_adapter": conditioner.weight_name, "scale": request.scale, "size": list(request.image.size)}
