"""Each endpoint's request fields and their limits: one definition, read by the handlers and the workflow.

Light (standard library plus :mod:`tryon.core.validation`), so the Lambda functions use it too:
the workflow's job parameters take their limits from here (``tryon.workflow.params``), and
each handler reads its scalar fields through :meth:`EndpointContract.read`, so a limit
changed here changes what both sides accept. Images (``image``, ``mask``, ``garment_image``) are named here
but decoded by the handlers. The field tables are documented in ``docs/endpoint-*.md``.

Every endpoint also takes ``output`` (an ``s3://bucket/prefix/`` the endpoint writes its
images to, answering with their URIs) and ``output_name`` (the file stem under it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tryon.core import validation
from tryon.core.errors import RequestError
from tryon.core.kinds import EndpointKind
from tryon.core.s3uri import parse_s3_prefix

MAX_SEED = 2**32 - 1
#: Adapter names: a folder name under ``adapters/``; no slashes and no leading dot (no path traversal).
ADAPTER_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: An adapter a request may name: a name (``none`` and ``default`` included) or ``s3://bucket/prefix/``.
ADAPTER_URI_PATTERN = re.compile(r"s3://[^/]+/.+")
ADAPTER_SPEC_PATTERN = re.compile(f"{ADAPTER_URI_PATTERN.pattern}|{ADAPTER_NAME_PATTERN.pattern}")
#: File stems an endpoint may be asked to write under ``output`` (``inpainted`` -> ``inpainted-0.png``).
OUTPUT_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: Largest photo side the x4 upscaler takes by default (tiled above its single-pass size).
UPSCALE_MAX_SIDE = 2048
#: The x4 upscaler never writes more than this many pixels per side.
UPSCALE_MAX_OUTPUT_SIDE = 8192
#: Default weight of a garment reference image (IP-Adapter scale; 0 ignores the image).
GARMENT_SCALE = 0.6
#: Body structure an inpainting request can keep under the new garment (``keep_body``), each by a
#: ControlNet on a control image estimated from the photo: docs/endpoint-sd-inpaint.md#keep-the-body.
BODY_CONTROLS = ("depth", "pose")
#: What ``keep_body`` takes (``pose+depth`` too: the order does not matter; lower case, no spaces).
KEEP_BODY_CHOICES = ("none", "depth", "pose", "depth+pose")
#: A regular expression for exactly the ``keep_body`` values :func:`parse_keep_body` accepts.
KEEP_BODY_PATTERN = re.compile(r"none|depth|pose|depth\+pose|pose\+depth")
#: Default weight of each control (``controlnet_conditioning_scale``: diffusers' default for
#: ControlNet inpainting); 0 gives exactly the image without the control.
CONTROL_SCALE = 0.5

#: Every endpoint's answer carries this field: the seconds its worker spent on the request, every
#: phase of its ``timings_ms`` but those in :data:`WAITING_PHASES`. Instance time is what a
#: try-on costs; the workflow records it per step in the manifest (docs/cost.md).
COMPUTE_SECONDS = "compute_seconds"
#: Phases of an answer's ``timings_ms`` that wait for another request instead of working.
WAITING_PHASES = frozenset({"queue"})

FieldKind = Literal["str", "int", "float", "bool", "str_list", "image", "output"]
_REQUIRED: Any = object()
_UNSET: Any = object()

_READERS: dict[str, Callable[..., Any]] = {
    "str": validation.get_str,
    "int": validation.get_int,
    "float": validation.get_float,
    "bool": validation.get_bool,
    "str_list": validation.get_str_list,
}


@dataclass(frozen=True)
class Field:
    """One request field: its type, its default (``_REQUIRED`` if it has none) and its limits."""

    name: str
    kind: FieldKind
    default: Any = None
    limits: Mapping[str, Any] = field(default_factory=dict)

    @property
    def required(self) -> bool:
        """Whether a request must give this field."""
        return self.default is _REQUIRED

    def read(self, payload: Mapping[str, Any], default: Any = _UNSET) -> Any:
        """The field's validated value in ``payload`` (RequestError naming the field and the limit)."""
        if self.kind not in _READERS:
            raise TypeError(f"{self.name} is a {self.kind} field; read it with its own decoder")
        fallback = self.default if default is _UNSET else default
        args = () if fallback is _REQUIRED else (fallback,)
        return _READERS[self.kind](payload, self.name, *args, **self.limits)


@dataclass(frozen=True)
class EndpointContract:
    """The request fields of one endpoint kind."""

    kind: EndpointKind
    fields: tuple[Field, ...]

    def __getitem__(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.kind} has no field {name!r}")

    @property
    def names(self) -> frozenset[str]:
        """Every field a request may carry."""
        return frozenset(f.name for f in self.fields)

    def check_known(self, payload: Mapping[str, Any]) -> None:
        """Refuse fields this endpoint does not know (a typo must not be silently ignored)."""
        validation.reject_unknown(payload, set(self.names))

    def read(self, payload: Mapping[str, Any], name: str, default: Any = _UNSET) -> Any:
        """``self[name].read(payload, default)``."""
        return self[name].read(payload, default)


_PROMPT = {"max_length": 2000}
_QUERY = {"max_length": 200}
_GROW = {"minimum": 0, "maximum": 256}
_STEPS = {"minimum": 1, "maximum": 150}
_GUIDANCE = {"minimum": 0.0, "maximum": 50.0}
_SEED = {"minimum": 0, "maximum": MAX_SEED}
_CONTROL_SCALE = {"minimum": 0.0, "maximum": 2.0}
_FRACTION = {"minimum": 0.0, "maximum": 1.0}


def control_field(control: str, what: str) -> str:
    """The request field of one setting of a body control: ``depth_scale``, ``pose_start``, ..."""
    return f"{control}_{what}"


def _control_fields() -> tuple[Field, ...]:
    """``keep_body`` and, per control, its scale and the fraction of the schedule it applies to."""
    fields = [Field("keep_body", "str", "none", {"max_length": 32})]  # its values: parse_keep_body
    for control in BODY_CONTROLS:
        fields += [
            Field(control_field(control, "scale"), "float", CONTROL_SCALE, _CONTROL_SCALE),
            Field(control_field(control, "start"), "float", 0.0, _FRACTION),
            Field(control_field(control, "end"), "float", 1.0, _FRACTION),
        ]
    return tuple(fields)


def _output_fields(default_name: str) -> tuple[Field, ...]:
    return (
        Field("output", "output"),
        Field("output_name", "str", default_name, {"max_length": 64, "allow_empty": False}),
    )


CLIPSEG = EndpointContract(
    "clipseg",
    (
        Field("image", "image", _REQUIRED),
        Field("queries", "str_list", (), {"max_items": 16, **_QUERY}),
        Field("query", "str", None, {**_QUERY, "allow_empty": False}),
        Field("negative_queries", "str_list", (), {"max_items": 16, **_QUERY}),
        Field("threshold", "float", 0.4, {"minimum": 0.0, "maximum": 1.0}),
        Field("dilate", "int", 0, _GROW),
        Field("feather", "int", 0, _GROW),
        *_output_fields("mask"),
    ),
)

SD_INPAINT = EndpointContract(
    "sd_inpaint",
    (
        Field("image", "image", _REQUIRED),
        Field("mask", "image", _REQUIRED),
        Field("prompt", "str", _REQUIRED, {**_PROMPT, "allow_empty": False}),
        Field("negative_prompt", "str", None, _PROMPT),
        Field("steps", "int", 30, _STEPS),
        Field("guidance_scale", "float", 7.5, _GUIDANCE),
        Field("cfg_scale", "float", 7.5, _GUIDANCE),
        Field("strength", "float", 1.0, {"minimum": 0.0, "maximum": 1.0, "exclusive_minimum": True}),
        Field("seed", "int", None, _SEED),
        Field("sampler", "str", None, {"max_length": 100}),
        Field("num_images", "int", 1, {"minimum": 1, "maximum": 4}),
        Field("width", "int", None, {"minimum": 64, "maximum": 2048, "multiple_of": 8}),
        Field("height", "int", None, {"minimum": 64, "maximum": 2048, "multiple_of": 8}),
        Field("adapter", "str", None, {"max_length": 1024}),
        Field("adapter_scale", "float", 1.0, {"minimum": 0.0, "maximum": 2.0}),
        Field("padding", "int", 32, {"minimum": 0, "maximum": 2048}),
        # A garment's reference image (packshot) for models with an IP-Adapter, and its weight.
        Field("garment_image", "image", None),
        Field("garment_scale", "float", GARMENT_SCALE, {"minimum": 0.0, "maximum": 2.0}),
        # SDXL refiner (JumpStart's parameters), for SDXL models with a refiner/ folder: absent
        # use_refiner means "if the model has one"; it re-denoises refiner_steps x refiner_strength
        # steps of the inpainted crop (img2img), as diffusers' StableDiffusionXLImg2ImgPipeline.
        Field("use_refiner", "bool", None),
        Field("refiner_steps", "int", 30, _STEPS),
        Field("refiner_strength", "float", 0.3, {"minimum": 0.0, "maximum": 1.0, "exclusive_minimum": True}),
        # Keep the body (ControlNet): which controls (keep_body), and per control its weight
        # (<control>_scale) and the fractions of the denoising schedule it applies between.
        *_control_fields(),
        *_output_fields("inpainted"),
    ),
)


def check_refiner_steps(steps: int, strength: float) -> None:
    """The refiner must run at least one step: ``int(refiner_steps * refiner_strength) >= 1``.

    Checked by the handler on each request and by the workflow's Prepare on each job.
    """
    if int(steps * strength) < 1:
        raise RequestError(
            "refiner_strength",
            f"{strength} x refiner_steps {steps} leaves no refining step; "
            "refiner_steps x refiner_strength must be >= 1",
        )


def parse_keep_body(value: str, field: str = "keep_body") -> tuple[str, ...]:
    """The controls ``value`` names, in :data:`BODY_CONTROLS` order (``()`` for ``none``); RequestError."""
    if not isinstance(value, str) or not KEEP_BODY_PATTERN.fullmatch(value):
        raise RequestError(
            field, f"must be one of {', '.join(KEEP_BODY_CHOICES)} (or pose+depth), got {value!r}"
        )
    return tuple(control for control in BODY_CONTROLS if control in value.split("+"))


def keep_body_name(controls: tuple[str, ...]) -> str:
    """The canonical ``keep_body`` spelling of ``controls``: ``none``, ``depth``, ``pose``, ``depth+pose``."""
    return "+".join(controls) or "none"


def check_control_window(control: str, start: float, end: float) -> None:
    """A control applies between the fractions ``start`` < ``end`` of the denoising schedule.

    Checked by the handler on each request and by the workflow's Prepare on each job.
    """
    if start >= end:
        raise RequestError(
            control_field(control, "start"),
            f"{start} must be < {control_field(control, 'end')} {end}: the control would apply to no step",
        )


SD_UPSCALE = EndpointContract(
    "sd_upscale",
    (
        Field("image", "image", _REQUIRED),
        Field("prompt", "str", "", _PROMPT),
        Field("negative_prompt", "str", None, _PROMPT),
        Field("steps", "int", 20, _STEPS),
        Field("guidance_scale", "float", 7.5, _GUIDANCE),
        Field("noise_level", "int", 20, {"minimum": 0, "maximum": 350}),
        Field("seed", "int", None, _SEED),
        Field("tile_size", "int", None, {"minimum": 32, "multiple_of": 8}),
        Field("tile_overlap", "int", None, {"minimum": 0}),
        *_output_fields("upscaled"),
    ),
)

CONTRACTS: dict[EndpointKind, EndpointContract] = {c.kind: c for c in (CLIPSEG, SD_INPAINT, SD_UPSCALE)}


def upscale_max_side() -> int:
    """Largest side the upscaler takes: ``TRYON_UPSCALE_MAX_TILED_SIDE`` (default 2048), capped by 8192/4.

    The endpoint and Prepare read the same variable (the template sets it on both), so a photo
    the upscaler would refuse is refused before any model runs.
    """
    raw = os.environ.get("TRYON_UPSCALE_MAX_TILED_SIDE") or str(UPSCALE_MAX_SIDE)
    try:
        value = int(raw)
    except ValueError:
        raise RequestError("TRYON_UPSCALE_MAX_TILED_SIDE", f"must be an integer, got {raw!r}") from None
    return min(value, UPSCALE_MAX_OUTPUT_SIDE // 4)


def check_adapter_spec(value: str, field_name: str = "adapter") -> str:
    """An adapter a request may name: ``none``, ``default``, a name, or ``s3://bucket/prefix/``."""
    if value.startswith("s3://"):
        if not ADAPTER_URI_PATTERN.fullmatch(value):
            raise RequestError(field_name, f"must be s3://bucket/prefix/, got {value!r}")
        return value
    if not ADAPTER_NAME_PATTERN.fullmatch(value):
        raise RequestError(
            field_name,
            f"{value!r} is not a valid adapter name (letters, digits, '.', '_' and '-', at most 64, "
            "starting with a letter or digit), 'none', 'default' or an s3:// URI",
        )
    return value


def read_output(contract: EndpointContract, payload: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(bucket, key prefix, file stem) where the endpoint writes its images, or None (answer base64).

    ``output`` must be an ``s3://bucket/prefix/`` URI ending with ``/``; ``output_name`` a file stem.
    """
    uri = payload.get("output")
    if uri is None:
        if payload.get("output_name") is not None:
            raise RequestError("output_name", "needs output (the s3://bucket/prefix/ to write to)")
        return None
    bucket, prefix = parse_s3_prefix(uri, field="output")
    if not bucket or not prefix.endswith("/") or "//" in prefix or len(uri) > 1024:
        raise RequestError("output", f"must be s3://bucket/prefix/ (ending with '/'), got {uri!r}")
    name = contract.read(payload, "output_name")
    if not OUTPUT_NAME_PATTERN.fullmatch(name):
        raise RequestError(
            "output_name", f"must be letters, digits, '.', '_' or '-' (at most 64), got {name!r}"
        )
    return bucket, prefix, name
