"""The SDXL refiner: an optional second pass over the inpainted crop (JumpStart's refiner parameters).

An SDXL inpainting model folder may carry ``refiner/``, a diffusers
``StableDiffusionXLImg2ImgPipeline`` folder such as ``stabilityai/stable-diffusion-xl-refiner-1.0``.
Only its ``model_index.json``, ``unet/`` and ``scheduler/`` are read: the second text encoder,
its tokenizer and the VAE are the base's (SDXL 1.0's refiner was trained with the same ones),
loaded once and shared. A base that is not SDXL with a ``refiner/`` fails at start-up.

A request refines with ``use_refiner`` (absent: whenever the model has a refiner, as JumpStart
does). The base then hands its latents over without a VAE round trip, and the refiner
re-denoises them image-to-image at ``refiner_strength``: ``int(refiner_steps *
refiner_strength)`` steps, with the request's prompts, guidance and sampler, and a generator
per image seeded with that image's seed. LoRA adapters and the garment image condition the
base only. Use a :class:`Refiner` under the model's lock, like the pipeline.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from tryon.core.contract import SD_INPAINT, check_refiner_steps
from tryon.core.errors import RequestError
from tryon.handlers import cancellation
from tryon.handlers.common import ModelFolderError, progress_bars_enabled
from tryon.handlers.compat import dtype_kwargs
from tryon.handlers.samplers import SchedulerCache

FOLDER = "refiner"
USE_FIELD, STEPS_FIELD, STRENGTH_FIELD = "use_refiner", "refiner_steps", "refiner_strength"
#: The base's components the refiner shares (its own copies, if shipped, are not loaded).
SHARED = ("text_encoder_2", "tokenizer_2", "vae")
#: Said to a client whose model has no refiner.
NO_REFINER = (
    "this model has no refiner; the refiner is for SDXL inpainting models packaged with an SDXL "
    "refiner in refiner/ (see docs/endpoint-sd-inpaint.md)"
)


#: What a refiner folder must hold (besides the base's shared components): relative path -> what it is.
REQUIRED_FILES = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
)
#: Weight files that stand for ``unet/diffusion_pytorch_model.safetensors`` (``.bin``, variants, shards).
_UNET_WEIGHTS = ("diffusion_pytorch_model*.safetensors", "diffusion_pytorch_model*.bin")


class RefinerLayoutError(ModelFolderError):
    """The model folder's ``refiner/`` cannot serve with its base (a deployment mistake, at start-up)."""


def missing_files(folder: Path) -> list[str]:
    """The :data:`REQUIRED_FILES` that ``folder`` lacks (a ``.bin``, variant or sharded UNet counts)."""
    missing = [name for name in REQUIRED_FILES[:3] if not (folder / name).is_file()]
    if not any(any((folder / "unet").glob(pattern)) for pattern in _UNET_WEIGHTS):
        missing.append(REQUIRED_FILES[3])
    return missing


def check_folder(folder: Path) -> None:
    """RefinerLayoutError, one line naming the folder and the files it needs, unless it has them all."""
    missing = missing_files(folder)
    if missing:
        raise RefinerLayoutError(
            f"{folder} is not a complete SDXL refiner folder: it has no {', '.join(missing)} "
            f"(a refiner needs {', '.join(REQUIRED_FILES[:-1])} and {REQUIRED_FILES[-1]} or .bin, "
            "as save_pretrained writes them)"
        )


@dataclass
class Refiner:
    """A loaded refiner pipeline (sharing the base's second text encoder and VAE) and its samplers."""

    pipe: Any
    schedulers: SchedulerCache


@dataclass(frozen=True)
class RefineRequest:
    """A request's validated refiner parameters."""

    steps: int
    strength: float


def find(model_dir: str | os.PathLike[str] | None) -> Path | None:
    """``<model_dir>/refiner/`` if there is one (complete or not: :func:`load` checks it), else None."""
    if not model_dir:
        return None
    folder = Path(model_dir) / FOLDER
    return folder if folder.is_dir() else None


def load(pipe: Any, model_dir: str | os.PathLike[str] | None, *, is_sdxl: bool) -> Refiner | None:
    """Load ``<model_dir>/refiner/`` onto the base ``pipe``'s device and dtype; None if there is none."""
    folder = find(model_dir)
    if folder is None:
        return None
    if not is_sdxl:
        raise RefinerLayoutError(f"{folder}: a refiner needs an SDXL base, and this model is not SDXL")
    check_folder(folder)  # before diffusers, whose own message is a multi-line "Error no file named ..."
    from diffusers import StableDiffusionXLImg2ImgPipeline

    shared = {name: getattr(pipe, name) for name in SHARED}
    try:
        refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(
            str(folder),
            text_encoder=None,
            tokenizer=None,
            **shared,
            **dtype_kwargs("diffusers", pipe.unet.dtype),
        )
    except (OSError, ValueError, TypeError) as exc:
        reason = " ".join(str(exc).split())  # one line
        raise RefinerLayoutError(f"{folder} is not an SDXL refiner pipeline folder: {reason}") from exc
    _check_fits(refiner, folder)
    refiner = refiner.to(pipe.device)
    refiner.set_progress_bar_config(disable=not progress_bars_enabled())
    return Refiner(refiner, SchedulerCache(refiner.scheduler))


def _check_fits(refiner: Any, folder: Path) -> None:
    """RefinerLayoutError unless the refiner's UNet takes the shared text encoder's outputs."""
    unet, encoder = refiner.unet.config, refiner.text_encoder_2.config
    ids = 5 if refiner.config.requires_aesthetics_score else 6
    expected = ids * (unet.addition_time_embed_dim or 0) + encoder.projection_dim
    if unet.in_channels != 4 or unet.addition_embed_type != "text_time":
        raise RefinerLayoutError(f"{folder}/unet is not an SDXL refiner UNet (4 latent channels, text_time)")
    if (
        unet.cross_attention_dim != encoder.hidden_size
        or unet.projection_class_embeddings_input_dim != expected
    ):
        raise RefinerLayoutError(
            f"{folder}/unet does not fit the base's text_encoder_2 (hidden size {encoder.hidden_size}, "
            f"projection {encoder.projection_dim}): it was made for another base"
        )


def read_request(
    payload: Mapping[str, Any], refiner: Refiner | None, *, sampler: str | None
) -> RefineRequest | None:
    """The refiner parameters of a request (None: no refining); RequestError naming the field."""
    use = SD_INPAINT.read(payload, USE_FIELD)
    steps = SD_INPAINT.read(payload, STEPS_FIELD)
    strength = SD_INPAINT.read(payload, STRENGTH_FIELD)
    given = [name for name in (STEPS_FIELD, STRENGTH_FIELD) if payload.get(name) is not None]
    if refiner is None:
        if use or given:
            raise RequestError(USE_FIELD if use else given[0], NO_REFINER)
        return None
    if use is False:
        if given:
            raise RequestError(given[0], f"applies only when the refiner runs, and {USE_FIELD} is false")
        return None
    check_refiner_steps(steps, strength)
    refiner.schedulers.validate(sampler)
    return RefineRequest(steps, strength)


def base_output_type(request: RefineRequest | None) -> str:
    """What the base pipeline returns: latents for the refiner, else PIL images."""
    return "pil" if request is None else "latent"


def refine(
    refiner: Refiner,
    request: RefineRequest,
    latents: list[Any],
    *,
    prompt: str,
    negative_prompt: str | None,
    guidance_scale: float,
    sampler: str | None,
    seeds: list[int],
) -> list[Image.Image]:
    """Refine the base's latents (one per seed) in one batched image-to-image call; PIL images."""
    import torch

    refiner.pipe.scheduler = refiner.schedulers.get(sampler)
    count = len(seeds)
    result = refiner.pipe(
        prompt=[prompt] * count,
        negative_prompt=None if negative_prompt is None else [negative_prompt] * count,
        image=torch.stack(list(latents)),
        strength=request.strength,
        num_inference_steps=request.steps,
        guidance_scale=guidance_scale,
        generator=[torch.Generator(device="cpu").manual_seed(seed) for seed in seeds],
        output_type="pil",
        callback_on_step_end=cancellation.step_end_callback,
    )
    return list(result.images)


def describe(request: RefineRequest | None) -> dict[str, Any] | None:
    """The response's ``refiner`` field: the steps and strength used, or None."""
    return None if request is None else {"steps": request.steps, "strength": request.strength}
