"""Keep the body: depth and pose ControlNets condition inpainting on the person's shape (``keep_body``).

Plain inpainting repaints everything in the mask, the body under the garment included. A model
folder that carries ControlNets and the estimators that make their input images keeps it:

::

    controlnet_depth/   diffusers ControlNetModel trained on depth maps
    depth_estimator/    transformers depth estimator (AutoModelForDepthEstimation) + image processor
    controlnet_pose/    diffusers ControlNetModel trained on OpenPose skeletons
    pose_estimator/     transformers ViTPose (VitPoseForPoseEstimation, 17 COCO keypoints) + processor
    person_detector/    optional: transformers object detector with a "person" label (for pose)

A control is served when its ControlNet and its estimator are both there (one without the other
fails at start-up, as does a ControlNet made for another base). Everything loads at start-up.
A request's ``keep_body`` (``none``, ``depth``, ``pose``, ``depth+pose``) picks the controls;
each control's ``<control>_scale`` (``controlnet_conditioning_scale``) and ``<control>_start`` /
``<control>_end`` (the fractions of the denoising schedule it applies between) tune it. The
estimators run once per request on the working-size crop of the original photo (what the model
repaints), whatever ``num_images``; the control images go to diffusers' ControlNet inpainting
pipeline of the base (SD 1.5: ``StableDiffusionControlNetInpaintPipeline``, SDXL:
``StableDiffusionXLControlNetInpaintPipeline``), which shares the base pipeline's modules, so
LoRA adapters, the IP-Adapter, the samplers and the SDXL refiner work as without controls. A
scale of 0 gives exactly the image without the control.

SD 2 inpainting takes none: no depth or pose ControlNet exists for its UNet (see
:data:`SD2_REFUSAL`). Use :class:`BodyControls` under the model's lock, like the pipeline.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

from PIL import Image

from tryon.core.contract import (
    BODY_CONTROLS,
    SD_INPAINT,
    check_control_window,
    control_field,
    keep_body_name,
    parse_keep_body,
)
from tryon.core.errors import RequestError
from tryon.handlers import body_estimators
from tryon.handlers.common import progress_bars_enabled
from tryon.handlers.compat import dtype_kwargs

KEEP_BODY_FIELD = "keep_body"
#: The model folder's ControlNet and estimator folder of each control.
CONTROLNET_FOLDERS = {"depth": "controlnet_depth", "pose": "controlnet_pose"}
ESTIMATOR_FOLDERS = {"depth": "depth_estimator", "pose": "pose_estimator"}
PERSON_DETECTOR_FOLDER = "person_detector"
#: Every folder this module reads, in the order the docs list them.
FOLDERS = (*CONTROLNET_FOLDERS.values(), *ESTIMATOR_FOLDERS.values(), PERSON_DETECTOR_FOLDER)
#: The ControlNet inpainting pipeline of each base family that has ControlNets.
PIPELINES = {
    "sd15": "StableDiffusionControlNetInpaintPipeline",
    "sdxl": "StableDiffusionXLControlNetInpaintPipeline",
}
#: The library classes this feature uses; each exists in the serving image's diffusers 0.33.1 and
#: transformers 4.51.3 (tests/serving/test_container_compat.py checks them there).
LIBRARY_CLASSES: dict[str, tuple[str, ...]] = {
    "diffusers": ("ControlNetModel", "MultiControlNetModel", *PIPELINES.values()),
    "transformers": (
        "AutoImageProcessor",
        "AutoModelForDepthEstimation",
        "AutoModelForObjectDetection",
        "VitPoseForPoseEstimation",
    ),
}
#: Width of SD 2's text encoder (OpenCLIP ViT-H/14) and so of its UNet's cross-attention; SD 1.x's is 768.
SD2_CROSS_ATTENTION_DIM = 1024
#: Said to a client who asks an SD 2 model to keep the body.
SD2_REFUSAL = (
    "SD 2 inpainting models cannot keep the body: no depth or pose ControlNet exists for the SD 2 "
    "inpainting UNet (the SD 1.5 and SDXL ControlNets do not fit its 1024-wide cross-attention, and "
    "stable-diffusion-2-depth is an image-to-image model without a mask); only keep_body none. Use an "
    "SD 1.5 or SDXL inpainting model packaged with ControlNets (docs/endpoint-sd-inpaint.md#keep-the-body)"
)


#: diffusers' loggers of the ControlNet inpainting pipelines.
PIPELINE_LOGGERS = (
    "diffusers.pipelines.controlnet.pipeline_controlnet_inpaint",
    "diffusers.pipelines.controlnet.pipeline_controlnet_inpaint_sd_xl",
)


class _SameControlImagesNotice(logging.Filter):
    """Drops the pipelines' per-call warning that several ControlNets get the same control images for
    every prompt of the batch: that is what this endpoint means (one photo, one set of control images)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "The conditionings will be fixed across the prompts" not in record.getMessage()


_NOTICE_FILTER = _SameControlImagesNotice()


class ControlLayoutError(RuntimeError):
    """The model folder's control folders cannot serve with its base (a deployment mistake, at start-up)."""


def family(pipe: Any) -> str:
    """The base pipeline's family: ``sdxl``, ``sd2`` or ``sd15`` (:func:`family_from`)."""
    return family_from(pipe.unet.config, two_text_encoders=getattr(pipe, "text_encoder_2", None) is not None)


def family_from(unet_config: Mapping[str, Any], *, two_text_encoders: bool) -> str:
    """``sdxl`` (two text encoders), ``sd2`` (1024-wide cross-attention: OpenCLIP ViT-H) or ``sd15``."""
    if two_text_encoders:
        return "sdxl"
    if unet_config["cross_attention_dim"] == SD2_CROSS_ATTENTION_DIM:
        return "sd2"
    return "sd15"


def needed_folders(control: str) -> str:
    """``controlnet_depth/ and depth_estimator/``: what a model folder needs to serve ``control``."""
    return f"{CONTROLNET_FOLDERS[control]}/ and {ESTIMATOR_FOLDERS[control]}/"


def find(model_dir: str | os.PathLike[str] | None) -> dict[str, Path]:
    """The control folders ``model_dir`` has (folder name -> path)."""
    if not model_dir:
        return {}
    found = {name: Path(model_dir) / name for name in FOLDERS}
    return {name: path for name, path in found.items() if path.is_dir()}


@dataclass
class BodyControls:
    """A model's loaded ControlNets and estimators, and one ControlNet pipeline per set of controls."""

    controlnets: dict[str, Any]
    estimators: dict[str, Any]
    #: ``("depth",)``, ``("pose",)``, ``("depth", "pose")`` -> a ControlNet inpainting pipeline
    #: sharing the base pipeline's modules.
    pipelines: dict[tuple[str, ...], Any]

    @property
    def available(self) -> tuple[str, ...]:
        """The controls this model serves, in :data:`BODY_CONTROLS` order."""
        return tuple(c for c in BODY_CONTROLS if c in self.controlnets)


@dataclass(frozen=True)
class ControlSetting:
    """One control a request asks for: its weight and the schedule fractions it applies between."""

    name: str
    scale: float
    start: float
    end: float


@dataclass(frozen=True)
class ControlRequest:
    """A request's validated controls (in :data:`BODY_CONTROLS` order)."""

    settings: tuple[ControlSetting, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The controls' names."""
        return tuple(s.name for s in self.settings)


def load(pipe: Any, model_dir: str | os.PathLike[str] | None, base_family: str) -> BodyControls | None:
    """Load the model folder's ControlNets and estimators onto ``pipe``'s device; None if it has none.

    Call after the IP-Adapter is loaded: the ControlNet pipelines take the base pipeline's
    components as they are then (the image encoder included).
    """
    present = find(model_dir)
    if not present:
        return None
    where = ", ".join(f"{name}/" for name in present)
    if base_family == "sd2":
        raise ControlLayoutError(f"{model_dir} has {where} but its base is SD 2 inpainting. {SD2_REFUSAL}")
    served = []
    for control in BODY_CONTROLS:
        has_net, has_estimator = CONTROLNET_FOLDERS[control] in present, ESTIMATOR_FOLDERS[control] in present
        if has_net != has_estimator:
            raise ControlLayoutError(
                f"{model_dir}: the {control} control needs both {needed_folders(control)} (its ControlNet "
                "and the estimator that makes its control image); one of them is missing"
            )
        if has_net:
            served.append(control)
    if PERSON_DETECTOR_FOLDER in present and "pose" not in served:
        raise ControlLayoutError(
            f"{model_dir}: {PERSON_DETECTOR_FOLDER}/ serves the pose control; add {needed_folders('pose')}"
        )
    device, dtype = pipe.device, pipe.unet.dtype
    controlnets = {c: _load_controlnet(present[CONTROLNET_FOLDERS[c]], pipe, device, dtype) for c in served}
    estimators: dict[str, Any] = {}
    if "depth" in served:
        estimators["depth"] = body_estimators.load_depth(present[ESTIMATOR_FOLDERS["depth"]], device, dtype)
    if "pose" in served:
        estimators["pose"] = body_estimators.load_pose(
            present[ESTIMATOR_FOLDERS["pose"]], present.get(PERSON_DETECTOR_FOLDER), device, dtype
        )
    return assemble(pipe, base_family, controlnets, estimators)


def assemble(
    pipe: Any, base_family: str, controlnets: Mapping[str, Any], estimators: Mapping[str, Any]
) -> BodyControls:
    """:class:`BodyControls` of loaded ControlNets and estimators (by control), with their pipelines."""
    for name in PIPELINE_LOGGERS:
        logging.getLogger(name).addFilter(_NOTICE_FILTER)  # a set: adding it twice keeps one
    return BodyControls(dict(controlnets), dict(estimators), _pipelines(pipe, base_family, controlnets))


def _load_controlnet(folder: Path, pipe: Any, device: Any, dtype: Any) -> Any:
    from diffusers import ControlNetModel

    try:
        controlnet = ControlNetModel.from_pretrained(str(folder), **dtype_kwargs("diffusers", dtype))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ControlLayoutError(f"{folder} is not a diffusers ControlNetModel folder: {detail}") from exc
    _check_fits(controlnet, pipe, folder)
    if device.type == "cuda":
        from diffusers.models.attention_processor import AttnProcessor2_0

        controlnet.set_attn_processor(AttnProcessor2_0())
    return controlnet.to(device)


def _check_fits(controlnet: Any, pipe: Any, folder: Path) -> None:
    """ControlLayoutError unless the ControlNet's residuals and conditioning fit the base's UNet."""
    wrong = misfits(controlnet.config, pipe.unet.config, pipe.vae.config)
    if wrong:
        raise ControlLayoutError(f"{folder} is a ControlNet for another base: {wrong}")


def misfits(controlnet: Mapping[str, Any], unet: Mapping[str, Any], vae: Mapping[str, Any]) -> str:
    """How a ControlNet's config does not fit a base's UNet and VAE configs ('' if it fits).

    Read by the handler at start-up and by ``tryon package`` from the folders' ``config.json``.
    """
    checks = {
        "latent channels": (controlnet.get("in_channels"), vae.get("latent_channels")),
        "cross-attention width": (controlnet.get("cross_attention_dim"), unet.get("cross_attention_dim")),
        "block widths": (
            list(controlnet.get("block_out_channels", ())),
            list(unet.get("block_out_channels", ())),
        ),
        "layers per block": (controlnet.get("layers_per_block"), unet.get("layers_per_block")),
        "added conditioning": (controlnet.get("addition_embed_type"), unet.get("addition_embed_type")),
        "added conditioning width": (
            controlnet.get("projection_class_embeddings_input_dim"),
            unet.get("projection_class_embeddings_input_dim"),
        ),
        "control image downsampling": (
            2 ** (len(controlnet.get("conditioning_embedding_out_channels", ())) - 1),
            2 ** (len(vae.get("block_out_channels", ())) - 1),
        ),
    }
    wrong = [f"{what} {got} (the base: {want})" for what, (got, want) in checks.items() if got != want]
    if not wrong:
        return ""
    return (
        f"{'; '.join(wrong)}. Ship the ControlNet trained for this base "
        "(SD 1.5 or SDXL; docs/endpoint-sd-inpaint.md#keep-the-body)"
    )


def _pipelines(pipe: Any, base_family: str, controlnets: Mapping[str, Any]) -> dict[tuple[str, ...], Any]:
    """A ControlNet inpainting pipeline per non-empty set of controls, sharing ``pipe``'s modules."""
    import diffusers
    from diffusers.utils import logging as diffusers_logging

    cls = getattr(diffusers, PIPELINES[base_family])
    names = [c for c in BODY_CONTROLS if c in controlnets]
    pipelines = {}
    verbosity = diffusers_logging.get_verbosity()
    # from_pipe casts every module to its dtype (float32 unless told): the base's own dtype keeps the
    # shared modules as they are; its warning about modules "kept in float32" (there are none) is noise
    diffusers_logging.set_verbosity_error()
    try:
        for count in range(1, len(names) + 1):
            for chosen in combinations(names, count):
                nets = [controlnets[c] for c in chosen]
                view = cls.from_pipe(
                    pipe,
                    controlnet=nets[0] if count == 1 else nets,
                    **dtype_kwargs("diffusers", pipe.unet.dtype),
                )
                view.set_progress_bar_config(disable=not progress_bars_enabled())
                pipelines[chosen] = view
    finally:
        diffusers_logging.set_verbosity(verbosity)
    return pipelines


def read_request(
    payload: Mapping[str, Any], controls: BodyControls | None, base_family: str
) -> ControlRequest | None:
    """The request's controls (None: ``keep_body`` none); RequestError naming the field."""
    value = SD_INPAINT.read(payload, KEEP_BODY_FIELD)
    names = parse_keep_body(value)
    for control in BODY_CONTROLS:
        if control in names:
            continue
        for what in ("scale", "start", "end"):
            name = control_field(control, what)
            if payload.get(name) is not None:
                raise RequestError(
                    name, f"applies only when keep_body includes {control}, and it is {value!r}"
                )
    if not names:
        return None
    if base_family == "sd2":
        raise RequestError(KEEP_BODY_FIELD, SD2_REFUSAL)
    missing = [c for c in names if controls is None or c not in controls.controlnets]
    if missing:
        needs = "; ".join(f"{c} needs {needed_folders(c)}" for c in missing)
        served = keep_body_options(controls)
        raise RequestError(
            KEEP_BODY_FIELD,
            f"this model cannot keep the body's {' and '.join(missing)} ({needs} in the model folder: "
            f"tryon package sd_inpaint --controlnet {missing[0]}=DIR --{missing[0]} DIR); it takes keep_body "
            f"{served} (docs/endpoint-sd-inpaint.md#keep-the-body)",
        )
    settings = []
    for control in names:
        scale, start, end = (
            SD_INPAINT.read(payload, control_field(control, w)) for w in ("scale", "start", "end")
        )
        check_control_window(control, start, end)
        settings.append(ControlSetting(control, scale, start, end))
    return ControlRequest(tuple(settings))


def keep_body_options(controls: BodyControls | None) -> str:
    """The ``keep_body`` values a model takes: ``none only``, or ``none, depth, pose, depth+pose``."""
    if controls is None:
        return "none only"
    return ", ".join(["none", *(keep_body_name(names) for names in controls.pipelines)])


def estimate(
    controls: BodyControls, request: ControlRequest, image: Image.Image
) -> dict[str, body_estimators.Estimate]:
    """Each requested control's image of ``image`` (the working-size crop): one estimator pass each."""
    return {name: controls.estimators[name](image) for name in request.names}


def pipeline_and_kwargs(
    controls: BodyControls, request: ControlRequest, estimates: Mapping[str, body_estimators.Estimate]
) -> tuple[Any, dict[str, Any]]:
    """The ControlNet pipeline of the request's controls and its keyword arguments.

    One control image per control: the pipeline repeats it for every image of the batch.
    """
    pipe = controls.pipelines[request.names]
    settings = request.settings
    if len(settings) == 1:
        (only,) = settings
        return pipe, {
            "control_image": estimates[only.name].image,
            "controlnet_conditioning_scale": only.scale,
            "control_guidance_start": only.start,
            "control_guidance_end": only.end,
        }
    return pipe, {
        "control_image": [estimates[s.name].image for s in settings],
        "controlnet_conditioning_scale": [s.scale for s in settings],
        "control_guidance_start": [s.start for s in settings],
        "control_guidance_end": [s.end for s in settings],
    }


def describe(
    request: ControlRequest | None,
    estimates: Mapping[str, body_estimators.Estimate],
    images: Mapping[str, Any],
    *,
    image_key: str,
) -> dict[str, Any] | None:
    """The response's ``controls``: ``keep_body``, and per control its settings, estimator and image.

    ``images[name]`` is the control image as the answer carries it: base64 (``image_key``
    ``image``) or the written object (``output``).
    """
    if request is None:
        return None
    described: dict[str, Any] = {KEEP_BODY_FIELD: keep_body_name(request.names)}
    for setting in request.settings:
        described[setting.name] = {
            "scale": setting.scale,
            "start": setting.start,
            "end": setting.end,
            **estimates[setting.name].details,
            image_key: images[setting.name],
        }
    return described
