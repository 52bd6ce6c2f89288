"""Stable Diffusion inpainting endpoint: crop-to-mask, samplers, LoRA adapters, garment images, body controls.

SageMaker entry points (Hugging Face inference toolkit contract): :func:`model_fn`,
:func:`input_fn`, :func:`predict_fn`, :func:`output_fn`. The request and response
contract is documented in ``docs/endpoint-sd-inpaint.md``.

One :class:`InpaintModel` serves concurrent callers: every pipeline mutation (scheduler,
active adapter) and every inference run happens under its lock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from tryon.core import imaging
from tryon.core.contract import COMPUTE_SECONDS, SD_INPAINT
from tryon.core.errors import RequestError
from tryon.core.validation import require_mapping
from tryon.handlers import cancellation, controls, crop, ip_adapter, png_writer, refiner, threads
from tryon.handlers.adapters import (
    AdapterCache,
    AdapterSource,
    default_adapter,
    max_adapters_from_env,
    resolve_adapter,
)
from tryon.handlers.common import (
    MAX_SEED,
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
from tryon.handlers.s3io import OutputTarget, output_target, write_labelled_pngs, write_pngs
from tryon.handlers.samplers import SchedulerCache

DEFAULT_MODEL_ID = "stabilityai/stable-diffusion-2-inpainting"
#: Stability AI's SDXL 1.0 rules (JumpStart / REST API): these working sizes and cfg_scale <= 35.
SDXL_DIMENSIONS = frozenset(
    {(1024, 1024), (1152, 896), (896, 1152), (1216, 832), (832, 1216), (1344, 768), (768, 1344)}
    | {(1536, 640), (640, 1536)}
)
SDXL_MAX_GUIDANCE = 35.0


@dataclass
class InpaintModel:
    """A loaded inpainting pipeline and the state that goes with it (what model_fn returns)."""

    pipe: Any
    model_id: str
    model_dir: str | None
    working_resolution: int
    is_sdxl: bool
    adapters: AdapterCache
    schedulers: SchedulerCache
    default_adapter: AdapterSource | None
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: The IP-Adapter that takes garment reference images, if the model folder has one.
    garments: ip_adapter.GarmentConditioner | None = None
    #: The SDXL refiner in the model folder's ``refiner/``, if any (refiner.py).
    refiner: refiner.Refiner | None = None
    #: The base's family: ``sd15``, ``sd2`` or ``sdxl`` (controls.family).
    family: str = "sd15"
    #: The depth/pose ControlNets and estimators in the model folder, if any (controls.py).
    controls: controls.BodyControls | None = None


@dataclass(frozen=True)
class InpaintParams:
    """The validated scalar fields of a request (images are decoded separately)."""

    prompt: str
    negative_prompt: str | None
    steps: int
    guidance_scale: float
    strength: float
    seed: int
    sampler: str | None
    num_images: int
    width: int
    height: int
    adapter: str | None
    adapter_scale: float
    padding: int
    output: OutputTarget | None


def model_fn(model_dir: str | None, context: Any = None) -> InpaintModel:
    """Load the inpainting pipeline (SD 1.5/2 or SDXL) and the default LoRA adapter, if any."""
    loading_progress_bars("transformers", "diffusers")
    from diffusers import AutoPipelineForInpainting

    source = resolve_model_source(model_dir, DEFAULT_MODEL_ID)
    device, dtype = torch_device_and_dtype()
    pipe = AutoPipelineForInpainting.from_pretrained(
        source, **dtype_kwargs("diffusers", dtype), safety_checker=None, requires_safety_checker=False
    )
    if getattr(pipe, "safety_checker", None) is not None:
        pipe.safety_checker = None
    pipe = pipe.to(device)
    if device.type == "cuda":
        # SDPA (flash / memory-efficient attention) is diffusers' default processor on torch 2.
        from diffusers.models.attention_processor import AttnProcessor2_0

        pipe.unet.set_attn_processor(AttnProcessor2_0())
    pipe.set_progress_bar_config(disable=not progress_bars_enabled())
    garments = ip_adapter.load(pipe, model_dir)  # after the attention processors are chosen
    base_family = controls.family(pipe)
    model = InpaintModel(
        pipe=pipe,
        model_id=os.environ.get("TRYON_MODEL_ID") or source,
        model_dir=str(model_dir) if model_dir else None,
        working_resolution=int(pipe.unet.config.sample_size * pipe.vae_scale_factor),
        is_sdxl=hasattr(pipe, "text_encoder_2"),
        adapters=AdapterCache(pipe, max_adapters_from_env()),
        schedulers=SchedulerCache(pipe.scheduler),
        default_adapter=default_adapter(model_dir),
        garments=garments,
        refiner=refiner.load(pipe, model_dir, is_sdxl=hasattr(pipe, "text_encoder_2")),
        family=base_family,
        # after the IP-Adapter: the ControlNet pipelines share the base's modules as they are now
        controls=controls.load(pipe, model_dir, base_family),
    )
    if model.default_adapter is not None:
        model.adapters.activate(model.default_adapter)
    return model


def input_fn(data: Any, content_type: str | None) -> dict[str, Any]:
    """Parse the JSON request body."""
    return parse_json_request(data, content_type)


def output_fn(prediction: Mapping[str, Any], accept: str | None) -> str:
    """Serialise the response as JSON."""
    return json_response(prediction, accept)


def _guidance(payload: Mapping[str, Any], model: InpaintModel) -> float:
    has_alias = payload.get("cfg_scale") is not None
    if has_alias and payload.get("guidance_scale") is not None:
        raise RequestError("cfg_scale", "is an alias of guidance_scale; give only one of them")
    name = "cfg_scale" if has_alias else "guidance_scale"
    value = SD_INPAINT.read(payload, name)
    if model.is_sdxl and value > SDXL_MAX_GUIDANCE:
        raise RequestError(name, f"must be <= {SDXL_MAX_GUIDANCE} for SDXL models, got {value}")
    return value


def _working_size(payload: Mapping[str, Any], model: InpaintModel) -> tuple[int, int]:
    res = model.working_resolution
    width = SD_INPAINT.read(payload, "width", res)
    height = SD_INPAINT.read(payload, "height", res)
    if model.is_sdxl and (width, height) not in SDXL_DIMENSIONS:
        allowed = ", ".join(f"{w}x{h}" for w, h in sorted(SDXL_DIMENSIONS))
        field_name = "width" if "width" in payload else "height"
        raise RequestError(field_name, f"{width}x{height} is not an SDXL size; allowed: {allowed}")
    return width, height


def parse_params(payload: Mapping[str, Any], model: InpaintModel) -> InpaintParams:
    """Validate every non-image field; RequestError names the field and its limit."""
    SD_INPAINT.check_known(payload)
    steps = SD_INPAINT.read(payload, "steps")
    strength = SD_INPAINT.read(payload, "strength")
    if int(steps * strength) < 1:
        raise RequestError(
            "strength", f"{strength} x steps {steps} leaves no denoising step; steps x strength must be >= 1"
        )
    width, height = _working_size(payload, model)
    seed = resolve_seed(payload)
    num_images = SD_INPAINT.read(payload, "num_images")
    sampler = SD_INPAINT.read(payload, "sampler") or None
    model.schedulers.validate(sampler)
    return InpaintParams(
        prompt=SD_INPAINT.read(payload, "prompt"),
        negative_prompt=SD_INPAINT.read(payload, "negative_prompt") or None,
        steps=steps,
        guidance_scale=_guidance(payload, model),
        strength=strength,
        seed=seed,
        sampler=sampler,
        num_images=num_images,
        width=width,
        height=height,
        adapter=SD_INPAINT.read(payload, "adapter") or None,
        adapter_scale=SD_INPAINT.read(payload, "adapter_scale"),
        padding=SD_INPAINT.read(payload, "padding"),
        output=output_target(SD_INPAINT, payload),
    )


def _load_inputs(payload: Mapping[str, Any]) -> tuple[Image.Image, Image.Image]:
    """The RGB photo and its binary mask (same EXIF-oriented size), or RequestError."""
    image = load_image(payload, "image")
    mask = load_image(payload, "mask")
    if mask.size != image.size:
        raise RequestError(
            "mask",
            f"is {mask.width}x{mask.height} but the image is {image.width}x{image.height}; sizes must match",
        )
    return imaging.to_rgb(image), crop.binarize(mask)


def image_seeds(params: InpaintParams) -> list[int]:
    """Seed of each image: ``seed + i``, wrapped into [0, 2**32 - 1] so each can be replayed alone."""
    return [(params.seed + i) % (MAX_SEED + 1) for i in range(params.num_images)]


def _generate(
    pipe: Any,
    params: InpaintParams,
    image: Image.Image,
    mask: Image.Image,
    conditioning: Mapping[str, Any],
    output_type: str = "pil",
) -> list[Any]:
    """All images in ONE batched denoising call, each row with its own generator.

    The photo, mask and prompt are passed once per image (not ``num_images_per_prompt``), so
    the pipeline encodes each row's image latents with that row's generator and each
    generator is consumed exactly as in a ``num_images=1`` call with that seed: every image
    replays alone (to within float rounding of the larger batch: docs/endpoint-sd-inpaint.md).
    """
    import torch

    seeds = image_seeds(params)
    count = len(seeds)
    result = pipe(
        prompt=[params.prompt] * count,
        negative_prompt=None if params.negative_prompt is None else [params.negative_prompt] * count,
        image=[image] * count,
        mask_image=[mask] * count,
        width=params.width,
        height=params.height,
        strength=params.strength,
        num_inference_steps=params.steps,
        guidance_scale=params.guidance_scale,
        generator=[torch.Generator(device="cpu").manual_seed(seed) for seed in seeds],
        output_type=output_type,  # "latent" when the refiner takes over
        callback_on_step_end=cancellation.step_end_callback,  # stops work nobody waits for
        **conditioning,  # the garment image's embeddings (ip_adapter.py), the control images (controls.py)
    )
    return list(result.images)


def predict_fn(data: Mapping[str, Any], model: InpaintModel) -> dict[str, Any]:
    """Inpaint the masked part of the photo; return full-size images and what was used."""
    timer = PhaseTimer()
    params = parse_params(require_mapping(data), model)
    refining = refiner.read_request(data, model.refiner, sampler=params.sampler)
    keeping = controls.read_request(data, model.controls, model.family)
    with timer.phase("decode"):
        image, mask = _load_inputs(data)
        garment = ip_adapter.read_request(data, model.garments)
    with timer.phase("preprocess"):
        bbox = crop.mask_bbox(mask)
        if bbox is None:
            raise RequestError("mask", "is empty (no pixel > 127)")
        work = (params.width, params.height)
        box = crop.crop_box_for_mask(bbox, image.size, work, params.padding)
        work_image = image.crop(box).resize(work, Image.Resampling.LANCZOS)
        # BOX + "any coverage" keeps thin mask parts in the working-size mask.
        work_mask = mask.crop(box).resize(work, Image.Resampling.BOX).point(lambda v: 255 if v else 0)
        adapter = resolve_adapter(params.adapter, model.model_dir)
        # Every result is the photo outside the window: that part starts compressing now, once
        # for all images, in the PNG threads, while the model runs (png_writer.py).
        encoder = png_writer.WindowEncoder(image, box)
    with timer.phase("queue"):  # waiting for other callers of the same pipeline
        model.lock.acquire()
    estimates: dict[str, Any] = {}
    try:
        with timer.phase("preprocess"):
            model.adapters.activate(adapter, params.adapter_scale)
            model.pipe.scheduler = model.schedulers.get(params.sampler)
        pipe = model.pipe
        if keeping is not None:
            # depth / pose of the original photo's crop, once for every image of the request
            with timer.phase("estimate"), threads.fitted(model.pipe.unet, model.pipe.device):
                estimates = controls.estimate(model.controls, keeping, work_image)
            pipe, control_kwargs = controls.pipeline_and_kwargs(model.controls, keeping, estimates)
            pipe.scheduler = model.pipe.scheduler
        with timer.phase("inference"), threads.fitted(model.pipe.unet, model.pipe.device):
            # encoding the garment image is model work too: the same phase and thread count
            conditioning = ip_adapter.pipeline_kwargs(model.garments, garment, params.guidance_scale)
            if keeping is not None:
                conditioning.update(control_kwargs)
            generated = _generate(
                pipe, params, work_image, work_mask, conditioning, refiner.base_output_type(refining)
            )
        if refining is not None:
            with timer.phase("refine"), threads.fitted(model.refiner.pipe.unet, model.pipe.device):
                generated = refiner.refine(
                    model.refiner,
                    refining,
                    generated,
                    prompt=params.prompt,
                    negative_prompt=params.negative_prompt,
                    guidance_scale=params.guidance_scale,
                    sampler=params.sampler,
                    seeds=image_seeds(params),
                )
    except BaseException:
        encoder.cancel()
        raise
    finally:
        model.lock.release()
    with timer.phase("postprocess"):  # each image's window starts compressing as soon as it is blended
        paste = crop.PasteBack(image, box, mask)
        pngs = [encoder.start(paste.region(g)) for g in generated]
    control_images = {name: estimate.image for name, estimate in estimates.items()}
    with timer.phase("encode"):
        if params.output is None:
            # the control images count towards the response limit too
            encoded = encode_inline([*pngs, *control_images.values()])
            written: dict[str, Any] = {"images": encoded[: len(pngs)]}
            control_written = dict(zip(control_images, encoded[len(pngs) :], strict=True))
        else:
            written = {"outputs": write_pngs(params.output, pngs, indexed=True)}
            control_written = write_labelled_pngs(params.output, control_images)
    return {
        **written,
        "seeds": image_seeds(params),
        "timings_ms": timer.timings_ms,
        COMPUTE_SECONDS: timer.compute_seconds(),
        "model": model.model_id,
        "adapter": None if adapter is None else {"name": adapter.name, "scale": params.adapter_scale},
        "garment": ip_adapter.describe(garment, model.garments),
        "refiner": refiner.describe(refining),
        "controls": controls.describe(
            keeping, estimates, control_written, image_key="image" if params.output is None else "output"
        ),
        "sampler": params.sampler or model.schedulers.default_name,
        "working_size": [params.width, params.height],
        "crop_box": list(box),
    }


__all__ = [
    "DEFAULT_MODEL_ID",
    "InpaintModel",
    "InpaintParams",
    "image_seeds",
    "input_fn",
    "model_fn",
    "output_fn",
    "parse_params",
    "predict_fn",
]
