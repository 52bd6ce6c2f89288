"""Stable Diffusion x4 upscaler endpoint: image -> image four times as wide and as tall.

Inputs up to ``TRYON_UPSCALE_MAX_INPUT_SIDE`` px per side (default 512) go through the
pipeline in one pass. Larger ones, up to ``TRYON_UPSCALE_MAX_TILED_SIDE`` px (default
2048, and never an output above 8192 px per side), are cut into overlapping tiles that are
upscaled in batches (as many per pipeline call as fit one single pass's pixels; one at a
time for a small model on a CPU) and blended with linear ramps across the overlaps. Larger still is
refused with a message naming the limit. Every pass is padded (mirrored edges) to a
multiple of 8 px, so any size works and the output is exactly 4x the input.

The initial latent noise is drawn once for the whole (padded) image from the seed and
cropped per tile, so overlapping tiles start from the same noise where they overlap.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from tryon.core import imaging, upscale_budget
from tryon.core.contract import COMPUTE_SECONDS, SD_UPSCALE, UPSCALE_MAX_OUTPUT_SIDE, upscale_max_side
from tryon.core.errors import RequestError
from tryon.core.upscale_budget import PAD_MULTIPLE, tile_starts
from tryon.handlers import cancellation, threads
from tryon.handlers.common import (
    PhaseTimer,
    encode_inline,
    json_response,
    load_image,
    loading_progress_bars,
    parse_json_request,
    progress_bars_enabled,
    resolve_model_source,
    resolve_seed,
    torch_device_and_dtype,
)
from tryon.handlers.compat import dtype_kwargs
from tryon.handlers.s3io import OutputTarget, output_target, write_pngs

DEFAULT_MODEL_ID = "stabilityai/stable-diffusion-x4-upscaler"
SCALE = 4
MAX_OUTPUT_SIDE = UPSCALE_MAX_OUTPUT_SIDE


def max_input_side() -> int:
    """Largest side upscaled in a single pass (``TRYON_UPSCALE_MAX_INPUT_SIDE``, default 512).

    Prepare estimates the tiles with the same setting (:mod:`tryon.core.upscale_budget`).
    """
    return upscale_budget.tile_side()


def max_tiled_side() -> int:
    """Largest side accepted at all: ``TRYON_UPSCALE_MAX_TILED_SIDE`` (default 2048), capped by 8192/4."""
    return upscale_max_side()


@dataclass
class UpscaleModel:
    """A loaded upscale pipeline, the model id it came from, and a lock for inference."""

    pipe: Any
    device: Any
    dtype: Any
    model_id: str
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class UpscaleRequest:
    """A validated request with its decoded RGB image; ``timer`` already holds the decode time."""

    image: Image.Image
    prompt: str
    negative_prompt: str | None
    steps: int
    guidance_scale: float
    noise_level: int
    seed: int
    tile_size: int
    tile_overlap: int
    output: OutputTarget | None
    timer: PhaseTimer


def model_fn(model_dir: str | None, context: Any = None) -> UpscaleModel:
    """Load the x4 upscaler (float16 on CUDA, float32 on CPU); progress bars only if asked for."""
    loading_progress_bars("transformers", "diffusers")
    from diffusers import StableDiffusionUpscalePipeline

    source = resolve_model_source(model_dir, DEFAULT_MODEL_ID)
    device, dtype = torch_device_and_dtype()
    pipe = StableDiffusionUpscalePipeline.from_pretrained(source, **dtype_kwargs("diffusers", dtype))
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=not progress_bars_enabled())
    return UpscaleModel(pipe=pipe, device=device, dtype=dtype, model_id=source)


def input_fn(data: Any, content_type: str | None) -> UpscaleRequest:
    """Parse and validate a JSON request; decode its image and check it against the size limits."""
    timer = PhaseTimer()
    with timer.phase("decode"):
        payload = parse_json_request(data, content_type)
        SD_UPSCALE.check_known(payload)
        prompt = SD_UPSCALE.read(payload, "prompt")
        negative_prompt = SD_UPSCALE.read(payload, "negative_prompt")
        steps = SD_UPSCALE.read(payload, "steps")
        guidance_scale = SD_UPSCALE.read(payload, "guidance_scale")
        noise_level = SD_UPSCALE.read(payload, "noise_level")
        seed = resolve_seed(payload)
        single = max_input_side()
        tile_size = SD_UPSCALE.read(payload, "tile_size", single)
        if tile_size > single:
            raise RequestError(
                "tile_size", f"must be <= {single} (TRYON_UPSCALE_MAX_INPUT_SIDE), got {tile_size}"
            )
        tile_overlap = SD_UPSCALE.read(payload, "tile_overlap", upscale_budget.default_overlap(tile_size))
        output = output_target(SD_UPSCALE, payload)
        if tile_overlap > tile_size // 2:
            half = tile_size // 2
            raise RequestError("tile_overlap", f"must be <= tile_size / 2 = {half}, got {tile_overlap}")
        limit = max_tiled_side()
        image = load_image(payload, "image", max_pixels=min(imaging.DEFAULT_MAX_PIXELS, limit * limit))
        if max(image.size) > limit:
            raise RequestError(
                "image",
                f"is {image.width}x{image.height}; the limit is {limit} px per side "
                f"(TRYON_UPSCALE_MAX_TILED_SIDE; outputs are at most {MAX_OUTPUT_SIDE} px per side)",
            )
        image = imaging.to_rgb(image)
    return UpscaleRequest(
        image=image,
        prompt=prompt,
        negative_prompt=negative_prompt,
        steps=steps,
        guidance_scale=guidance_scale,
        noise_level=noise_level,
        seed=seed,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        output=output,
        timer=timer,
    )


def tiles_per_call(tile_h: int, tile_w: int, model: UpscaleModel | None = None) -> int:
    """Tiles upscaled in one batched pipeline call: as many as fit the single-pass pixel budget.

    A batch of tiles then needs no more memory than one pass of the largest accepted input
    (``max_input_side()`` squared), and the UNet's weights are read once per step for all of
    them. A small model on a CPU gains nothing from that and loses cache to the larger batch,
    so it runs one tile per call (measured: docs/benchmarks.md#upscaler-tiles).
    """
    small = model is not None and threads.parameter_count(model.pipe.unet) < threads.SMALL_MODEL_PARAMS
    if small and model.device.type == "cpu":
        return 1
    return max(1, max_input_side() ** 2 // (tile_h * tile_w))


def _ramp_weights(starts: list[int], tile: int, index: int, scale: int) -> np.ndarray:
    """1-D blend weights (output scale) for tile ``index``: linear ramps across each overlap, else 1."""
    size = tile * scale
    x = np.arange(size, dtype=np.float32) + 0.5
    weights = np.ones(size, dtype=np.float32)
    left = (starts[index - 1] + tile - starts[index]) * scale if index > 0 else 0
    right = (starts[index] + tile - starts[index + 1]) * scale if index < len(starts) - 1 else 0
    if left > 0:
        weights = np.minimum(weights, x / left)
    if right > 0:
        weights = np.minimum(weights, (size - x) / right)
    return weights


def _pad_to_multiple(image: Image.Image, multiple: int) -> np.ndarray:
    """The image as an array, mirrored at the right and bottom edges up to a multiple of ``multiple``."""
    arr = np.asarray(image)
    pad_h = -arr.shape[0] % multiple
    pad_w = -arr.shape[1] % multiple
    if pad_h or pad_w:
        arr = np.pad(arr, ((0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")
    return arr


def predict_fn(data: UpscaleRequest, model: UpscaleModel) -> dict[str, Any]:
    """Upscale 4x, in one pass or in blended tiles; returns the image, seed, tile count and timings."""
    import torch

    timer = data.timer
    pipe = model.pipe
    width, height = data.image.size
    with timer.phase("preprocess"):
        padded = _pad_to_multiple(data.image, PAD_MULTIPLE)
        ph, pw = padded.shape[:2]
        tile_h, tile_w = min(data.tile_size, ph), min(data.tile_size, pw)
        ys = tile_starts(ph, tile_h, data.tile_overlap)
        xs = tile_starts(pw, tile_w, data.tile_overlap)
        noise = torch.randn(
            (1, pipe.vae.config.latent_channels, ph, pw),
            generator=torch.Generator("cpu").manual_seed(data.seed),
            dtype=torch.float32,
        )
        cfg = data.guidance_scale > 1.0
    with (
        timer.holding(model.lock),
        timer.phase("inference"),
        threads.fitted(pipe.unet, model.device),
        torch.inference_mode(),
    ):
        prompt_embeds, negative_embeds = pipe.encode_prompt(
            data.prompt, model.device, 1, cfg, negative_prompt=data.negative_prompt
        )
        tiles = [(iy, y, ix, x) for iy, y in enumerate(ys) for ix, x in enumerate(xs)]
        single = len(tiles) == 1
        out = None if single else np.zeros((ph * SCALE, pw * SCALE, 3), dtype=np.float32)
        weight_sum = None if single else np.zeros((ph * SCALE, pw * SCALE, 1), dtype=np.float32)
        per_call = tiles_per_call(tile_h, tile_w, model)
        for start in range(0, len(tiles), per_call):
            group = tiles[start : start + per_call]
            n = len(group)
            # One batched pass for the group: each tile keeps its own crop of the shared noise and
            # its own generator (seeded alike), as if it ran alone.
            results = pipe(
                image=[Image.fromarray(padded[y : y + tile_h, x : x + tile_w]) for _, y, _, x in group],
                prompt_embeds=prompt_embeds.repeat(n, 1, 1),
                negative_prompt_embeds=negative_embeds.repeat(n, 1, 1) if cfg else None,
                num_inference_steps=data.steps,
                guidance_scale=data.guidance_scale,
                noise_level=data.noise_level,
                generator=[torch.Generator("cpu").manual_seed(data.seed) for _ in group],
                latents=torch.cat([noise[:, :, y : y + tile_h, x : x + tile_w] for _, y, _, x in group]).to(
                    model.device, model.dtype
                ),
                output_type="np",
                callback=cancellation.legacy_step_callback,  # stops work nobody waits for
            ).images
            if single:
                out = results[0]
                continue
            for (iy, y, ix, x), result in zip(group, results, strict=True):
                wy = _ramp_weights(ys, tile_h, iy, SCALE)
                weight = (wy[:, None] * _ramp_weights(xs, tile_w, ix, SCALE)[None, :])[..., None]
                oy, ox = y * SCALE, x * SCALE
                region = np.s_[oy : oy + tile_h * SCALE, ox : ox + tile_w * SCALE]
                out[region] += result * weight
                weight_sum[region] += weight
    with timer.phase("postprocess"):
        if not single:
            out /= weight_sum
        pixels = np.clip(out[: height * SCALE, : width * SCALE] * 255.0 + 0.5, 0, 255).astype(np.uint8)
        upscaled = Image.fromarray(pixels)
    with timer.phase("encode"):
        if data.output is None:
            written: dict[str, Any] = {"image": encode_inline([upscaled])[0]}
        else:
            written = {"outputs": write_pngs(data.output, [upscaled], indexed=False)}
    return {
        **written,
        "seed": data.seed,
        "size": [upscaled.width, upscaled.height],
        "tiles": len(ys) * len(xs),
        "timings_ms": timer.timings_ms,
        COMPUTE_SECONDS: timer.compute_seconds(),
        "model": model.model_id,
    }


def output_fn(prediction: dict[str, Any], accept: str | None) -> str:
    """Serialise the prediction as JSON."""
    return json_response(prediction, accept)
