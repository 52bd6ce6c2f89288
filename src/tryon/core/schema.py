"""One row per job parameter and one per endpoint kind: every other spelling is derived from them.

A **job parameter** (:class:`Param`, the table :data:`PARAMS`) is one row: its name in the job
(and in console inputs and batch columns), its type, its default, the endpoint fields it is
sent as (its limits are theirs: :mod:`tryon.core.contract` defines each endpoint's fields once)
and when it is sent, and its help text. Its other names follow from its name by one rule each:

======================  ====================================  =========================
where                   rule                                  ``num_images``
======================  ====================================  =========================
job, console, batch     the name                              ``num_images``
S3 object metadata      ``-`` for ``_``                       ``x-amz-meta-num-images``
template default        ``TRYON_DEFAULT_`` + upper case       ``TRYON_DEFAULT_NUM_IMAGES``
template parameter      ``Default`` + CamelCase               ``DefaultNumImages``
``tryon run/submit``    ``--`` + ``-`` for ``_``              ``--num-images``
======================  ====================================  =========================

An **endpoint kind** (:class:`Kind`, the table :data:`ENDPOINT_KINDS`) is one row with every
spelling of that kind: ``sd_inpaint`` (requests, state, ``--mode``/``--models`` options),
``sd-inpaint`` (endpoint names), ``TRYON_INPAINT_*`` (function environment), ``Inpaint*``
(template parameters and resources), ``inpaint`` (the workflow step, ``Settings.inpaint_endpoint``),
its handler module, its tiny model folder and the serving modes the template offers.

Everything else derives from the rows: :mod:`tryon.workflow.params` (validation, metadata,
template defaults), the request builders of :mod:`tryon.workflow.steps`, the settings, the
options of ``tryon run`` and ``tryon submit`` and their help, the local harness's maps,
``deploy-models``' endpoint names, and the generated blocks of ``template.yaml`` and
``docs/workflow.md`` (``python -m tryon.aws.schema_blocks``). docs/schema.md walks through
adding a parameter and adding a kind. Standard library only: the Lambda functions use it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tryon.core import contract, mask_modes
from tryon.core.errors import RequestError
from tryon.core.kinds import KINDS, EndpointKind, EndpointMode
from tryon.core.s3uri import parse_versioned_s3_uri

# ---------------------------------------------------------------------------- endpoint kinds


@dataclass(frozen=True)
class Kind:
    """One endpoint kind and all its spellings."""

    #: ``sd_inpaint``: requests, the job's ``endpoints``/``modes``, ``KIND=`` options
    kind: EndpointKind
    #: ``inpaint``: the ``TRYON_INPAINT_*`` variables and ``Settings.inpaint_endpoint``
    short: str
    #: ``sd-inpaint``: endpoint names (``tryon-sd-inpaint``, ``<prefix>-sd-inpaint``)
    slug: str
    #: ``Inpaint``: template parameters (``InpaintEndpointName``, ``InpaintMode``, ...) and resources
    template: str
    #: the workflow step calling it (``Segment`` -> ``segment``), its key in the state
    step: str
    #: what it does, for help texts
    title: str
    #: the SageMaker inference toolkit handler (``model_fn``/``input_fn``/``predict_fn``/``output_fn``)
    handler_module: str
    #: the folder ``python -m tryon.weights.tiny`` builds for it
    tiny_folder: str
    #: the serving modes the template (and ``deploy-models``) offers for it
    modes: tuple[EndpointMode, ...]
    #: instance type of a stack- or ``deploy-models``-created endpoint
    default_instance_type: str

    @property
    def contract(self) -> contract.EndpointContract:
        """The request fields this kind's endpoints take."""
        return contract.CONTRACTS[self.kind]

    @property
    def endpoint_variable(self) -> str:
        """``TRYON_INPAINT_ENDPOINT``: the endpoint name, in every function's environment."""
        return f"TRYON_{self.short.upper()}_ENDPOINT"

    @property
    def component_variable(self) -> str:
        """``TRYON_INPAINT_COMPONENT``: its inference component on the shared endpoint (shared layout;
        empty: an endpoint of its own), in every function's environment."""
        return f"TRYON_{self.short.upper()}_COMPONENT"

    @property
    def mode_variable(self) -> str:
        """``TRYON_INPAINT_MODE``: the serving mode, in every function's environment."""
        return f"TRYON_{self.short.upper()}_MODE"

    @property
    def instance_type_variable(self) -> str:
        """``TRYON_INPAINT_INSTANCE_TYPE``: what the manifest's cost records (Finalize's environment)."""
        return f"TRYON_{self.short.upper()}_INSTANCE_TYPE"

    @property
    def settings_attribute(self) -> str:
        """``inpaint_endpoint``: the endpoint name in :class:`tryon.workflow.settings.Settings`."""
        return f"{self.short}_endpoint"

    @property
    def endpoint_parameter(self) -> str:
        """``InpaintEndpointName``: the template parameter naming the endpoint."""
        return f"{self.template}EndpointName"

    @property
    def mode_parameter(self) -> str:
        """``InpaintMode``: the template parameter choosing the serving mode."""
        return f"{self.template}Mode"

    @property
    def instance_type_parameter(self) -> str:
        """``InpaintInstanceType``: instance type of a stack-created endpoint."""
        return f"{self.template}InstanceType"

    @property
    def model_data_parameter(self) -> str:
        """``InpaintModelDataUrl``: set, the stack creates the endpoint from that model.tar.gz."""
        return f"{self.template}ModelDataUrl"

    @property
    def model_folder(self) -> str:
        """``models/sd_inpaint``: the packaged inference code's folder in the repository."""
        return f"models/{self.kind}"

    def endpoint_name(self, prefix: str = "tryon") -> str:
        """``tryon-sd-inpaint``: the endpoint's name under ``prefix`` (the template's default: ``tryon``)."""
        return f"{prefix}-{self.slug}"

    def component_name(self, endpoint: str = "tryon-shared") -> str:
        """``tryon-shared-sd-inpaint``: its inference component on the shared layout's ``endpoint``."""
        return f"{endpoint}-{self.slug}"


ENDPOINT_KINDS: tuple[Kind, ...] = (
    Kind(
        kind="clipseg",
        short="clipseg",
        slug="clipseg",
        template="ClipSeg",
        step="segment",
        title="CLIPSeg: text query -> garment mask",
        handler_module="tryon.handlers.clipseg",
        tiny_folder="clipseg",
        modes=("realtime", "serverless", "async"),
        default_instance_type="ml.m5.xlarge",  # CPU is enough
    ),
    Kind(
        kind="sd_inpaint",
        short="inpaint",
        slug="sd-inpaint",
        template="Inpaint",
        step="inpaint",
        title="Stable Diffusion inpainting (+ LoRA adapters, IP-Adapter, SDXL refiner, body controls)",
        handler_module="tryon.handlers.sd_inpaint",
        # with the tiny IP-Adapter and body controls: garment images and keep_body work out of the box
        tiny_folder="sd-inpaint-controls",
        modes=("realtime", "async"),  # not serverless: CPU only, and diffusion on CPU outlasts its 60 s
        default_instance_type="ml.g5.xlarge",
    ),
    Kind(
        kind="sd_upscale",
        short="upscale",
        slug="sd-upscale",
        template="Upscale",
        step="upscale",
        title="Stable Diffusion x4 upscaler",
        handler_module="tryon.handlers.sd_upscale",
        tiny_folder="sd-x4-upscaler",
        modes=("realtime", "async"),
        default_instance_type="ml.g5.xlarge",
    ),
)
_KINDS_BY_NAME: dict[str, Kind] = {row.kind: row for row in ENDPOINT_KINDS}
if tuple(_KINDS_BY_NAME) != KINDS:  # the Literal type and the rows list the same kinds, in workflow order
    raise AssertionError(f"tryon.core.kinds.KINDS {KINDS} != the schema's kinds {tuple(_KINDS_BY_NAME)}")


def kind(name: str) -> Kind:
    """The row of an endpoint kind (``clipseg``, ``sd_inpaint``, ``sd_upscale``); KeyError if none."""
    try:
        return _KINDS_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown endpoint kind {name!r}; known: {', '.join(_KINDS_BY_NAME)}") from None


#: endpoint kind -> handler module (SageMaker inference toolkit contract)
HANDLER_MODULES: dict[str, str] = {row.kind: row.handler_module for row in ENDPOINT_KINDS}
#: endpoint kind -> the folder the tiny checkpoints build for it
TINY_MODEL_FOLDERS: dict[str, str] = {row.kind: row.tiny_folder for row in ENDPOINT_KINDS}


# ---------------------------------------------------------------------------- job parameters

#: Lambda refuses a function whose environment variables, measured as their JSON, take more bytes.
LAMBDA_ENVIRONMENT_BYTES = 4096
#: The longest text a number in the template may have: a ``Number`` parameter passes its value as
#: typed, so the environment budget counts it this long, and the numbers kept in a ``String`` (an
#: optional one, or one with an exclusive bound) have this ``MaxLength``.
NUMBER_TEXT_MAX = 20

ParamType = Literal["str", "int", "float", "bool", "str_list"]
#: When a parameter is sent to its endpoint fields: always, or only when set (not None, not "").
Send = Literal["always", "when_set"]
_FROM_FIELD: Any = object()


@dataclass(frozen=True)
class Param:
    """One job parameter: its type, default and limits, the endpoint fields it is sent as, its help."""

    name: str
    #: one line, without the limits (help texts add them): what the parameter does
    help: str
    #: the endpoint field its type, limits (and, unless given, default) come from; None: its own
    field: contract.Field | None = None
    #: the endpoint fields it is sent as, ``(kind, field name)``; the first is ``field``'s
    sends: tuple[tuple[EndpointKind, str], ...] = ()
    #: ``always``, or ``when_set`` (left out of the request while None or empty)
    send: Send = "always"
    #: sent only together with this other parameter (``adapter_scale`` with ``adapter``)
    with_param: str | None = None
    #: not sent while this other parameter has this value (``refiner_steps`` when ``use_refiner`` is false)
    unless: tuple[str, Any] | None = None
    #: sent only while this other parameter's ``+``-joined value names this choice
    #: (``depth_scale`` while ``keep_body`` is ``depth`` or ``depth+pose``)
    with_choice: tuple[str, str] | None = None
    #: the job's default when no layer sets it (the field's when not given); the template's default too
    default: Any = _FROM_FIELD
    #: None is a value (unset: the endpoint decides); an empty template default or metadata value unsets
    optional: bool = False
    #: type and limits of a parameter no endpoint field defines (``min_coverage``, ``upscale``)
    type: ParamType | None = None
    limits: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: a check beyond type and limits, ``(value) -> None`` raising RequestError (adapter specs, s3:// URIs)
    check: Callable[[Any], None] | None = None
    #: the value's one spelling, ``(value) -> value`` (``upper`` -> ``upper-body``), so a job id
    #: does not depend on how a caller spelled it
    canonical: Callable[[Any], Any] | None = None
    #: a garment of an outfit may set it for itself (``upper-body.prompt``); else it is the job's
    #: (num_images, the refiner, upscaling): docs/workflow.md, "Outfits"
    garment: bool = True
    #: regular expression the template parameter's value must match (besides the limits)
    pattern: str | None = None
    #: whether the template has a job default for it (``Default<Name>`` -> ``TRYON_DEFAULT_<NAME>``)
    template: bool = True
    #: the template default's MaxLength, where every function's environment (which carries every
    #: default) must fit Lambda's 4 KB: shorter than the field's own limit, which jobs keep
    template_max_length: int | None = None
    #: the ``tryon run``/``submit`` option: True ``--<name>``, a string its own spelling, None only ``--set``
    cli: bool | str | None = True
    #: what the docs' parameter table adds about it
    note: str = ""
    #: what leaving an optional parameter unset means (default: the endpoint's default)
    unset: str = ""
    #: the content policy's rule its value must pass (a text parameter: a key of
    #: ``tryon.core.content_policy.TEXT_RULES``), or ``"exempt: <why>"``; docs/responsible-use.md
    policy: str = ""

    def __post_init__(self) -> None:
        if self.field is not None:
            object.__setattr__(self, "type", self.field.kind)
            object.__setattr__(self, "limits", dict(self.field.limits))
            if self.default is _FROM_FIELD:
                object.__setattr__(self, "default", self.field.default)
        if self.default is _FROM_FIELD:
            raise TypeError(f"{self.name}: give a default (no endpoint field to take it from)")
        if self.type not in ("str", "int", "float", "bool", "str_list"):
            raise TypeError(f"{self.name}: type {self.type!r}")

    # names ------------------------------------------------------------------------------------
    @property
    def metadata_key(self) -> str:
        """``num-images``: its S3 user-metadata key (``x-amz-meta-num-images``)."""
        return self.name.replace("_", "-")

    @property
    def env(self) -> str | None:
        """``TRYON_DEFAULT_NUM_IMAGES``: the variable holding its template default (None: it has none)."""
        return f"TRYON_DEFAULT_{self.name.upper()}" if self.template else None

    @property
    def template_parameter(self) -> str | None:
        """``DefaultNumImages``: the template parameter of its job default (None: no template default)."""
        return (
            "Default" + "".join(part.capitalize() for part in self.name.split("_")) if self.template else None
        )

    @property
    def cli_option(self) -> str | None:
        """``--num-images`` (``--refiner/--no-refiner`` for a flag), or None (only ``--set NAME=VALUE``)."""
        if self.cli is None or self.cli is False:
            return None
        if isinstance(self.cli, str):
            return self.cli
        if self.type == "bool":
            return f"--{self.metadata_key}/--no-{self.metadata_key}"
        return f"--{self.metadata_key}"

    @property
    def column(self) -> str:
        """Its batch manifest column (CSV header, JSON Lines key)."""
        return self.name

    # limits -----------------------------------------------------------------------------------
    def limits_text(self) -> str:
        """Its limits in words: ``1..150``, ``(0, 1]``, ``1..200 chars``, ``<= 16 items of <= 200 chars``."""
        return limits_text(self.type or "str", self.limits)

    @property
    def unset_text(self) -> str:
        """What leaving it unset means: ``the endpoint's 30``, ``derived from the job id``."""
        if self.unset:
            return self.unset
        default = self.field.default if self.field is not None else None
        return f"the endpoint's {default}" if default is not None else "the endpoint's default"

    def help_text(self) -> str:
        """Its help with its limits (``Diffusion steps (1..150).``): what the CLI and the template show."""
        text = self.help.rstrip(".")
        if self.optional:
            text += f"; unset: {self.unset_text}"
        limits = self.limits_text()
        return f"{text} ({limits})." if limits else f"{text}."


def limits_text(kind: str, limits: Mapping[str, Any]) -> str:
    """Limits in words, as the docs and help texts write them."""

    def num(value: Any) -> str:
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)

    if kind in ("int", "float"):
        low, high = limits.get("minimum"), limits.get("maximum")
        if low is None and high is None:
            return ""
        if limits.get("exclusive_minimum"):
            return f"({num(low)}, {num(high)}]" if high is not None else f"> {num(low)}"
        if low is not None and high is not None:
            return f"{num(low)}..{num(high)}"
        return f">= {num(low)}" if low is not None else f"<= {num(high)}"
    if kind == "str":
        longest = limits.get("max_length", 2000)
        return f"1..{longest} chars" if limits.get("allow_empty") is False else f"<= {longest} chars"
    if kind == "str_list":
        return f"<= {limits.get('max_items', 16)} items of <= {limits.get('max_length', 200)} chars"
    return ""


def _check_mask_image(value: Any) -> None:
    """An ``s3://`` URI (checked by Prepare under the mask prefix) or, on the console, base64 text."""
    if str(value).startswith("s3://"):
        parse_versioned_s3_uri(value, field="mask_image")
    elif not (str(value).startswith("data:image/") or str(value)[:4] in {"iVBO", "/9j/", "UklG"}):
        raise RequestError(
            "mask_image",
            "must be an s3:// URI (under the mask prefix) or, on the console, a base64 PNG, JPEG or WebP "
            "(data:image/png;base64,...)",
        )


#: What may happen where two garments' masks overlap (docs/workflow.md, "Outfits").
OVERLAP_RULES = ("later-wins", "refuse")
#: Longest ``mask_image``: a base64 mask on the console (the execution input is capped at 256 KiB).
MAX_MASK_IMAGE_CHARS = 190_000


def _check_overlap(value: Any) -> None:
    if value not in OVERLAP_RULES:
        raise RequestError("mask_overlap", f"must be one of {', '.join(OVERLAP_RULES)}, got {value!r}")


def _check_adapter(value: Any) -> None:
    contract.check_adapter_spec(value)


def _check_s3_image(value: Any) -> None:
    parse_versioned_s3_uri(value, field="garment_image")


def _check_keep_body(value: Any) -> None:
    contract.parse_keep_body(value)


def _canonical_keep_body(value: str) -> str:
    return contract.keep_body_name(contract.parse_keep_body(value))


_CONTROL_SETTINGS = {
    "scale": "Weight of keep_body's {control} control (controlnet_conditioning_scale; 0 ignores it)",
    "start": "Fraction of the denoising schedule at which keep_body's {control} control starts",
    "end": "Fraction of the denoising schedule at which keep_body's {control} control ends",
}


def _control_rows() -> tuple[Param, ...]:
    """Each body control's scale, start and end: sent only with a ``keep_body`` that names the control."""
    rows = []
    for control in contract.BODY_CONTROLS:
        for what, help_ in _CONTROL_SETTINGS.items():
            name = contract.control_field(control, what)
            rows.append(
                Param(
                    name,
                    help_.format(control=control),
                    _INP[name],
                    (("sd_inpaint", name),),
                    send="when_set",
                    with_choice=("keep_body", control),
                    default=None,
                    optional=True,
                    template=False,  # per job: the stack's default is keep_body's alone
                    note=f"`{control}_start` < `{control}_end`" if what == "start" else "",
                )
            )
    return tuple(rows)


_SEG, _INP, _UP = contract.CLIPSEG, contract.SD_INPAINT, contract.SD_UPSCALE

#: Every job parameter, in the order the docs, the template and the CLI list them.
PARAMS: tuple[Param, ...] = (
    # -- Segment (CLIPSeg)
    Param(
        "query",
        "What to mask, e.g. 'a skirt'",
        _SEG["query"],
        (("clipseg", "query"),),
        default="a shirt",
        policy="query",
        template_max_length=64,
    ),
    Param(
        "negative_queries",
        "Regions kept out of the mask, comma-separated (e.g. face,hands)",
        _SEG["negative_queries"],
        (("clipseg", "negative_queries"),),
        default=("face", "hands"),
        policy="exempt: keep-regions only take parts out of the mask",
        template_max_length=100,
    ),
    Param(
        "threshold",
        "Mask threshold",
        _SEG["threshold"],
        (("clipseg", "threshold"),),
        note="1 selects nothing",
    ),
    Param("dilate", "Grow the mask by this many pixels", _SEG["dilate"], (("clipseg", "dilate"),), default=8),
    Param(
        "feather",
        "Soften the mask's edge over this many pixels",
        _SEG["feather"],
        (("clipseg", "feather"),),
        default=4,
    ),
    Param(
        "min_coverage",
        "Mask coverage at or below which the job ends as no-garment-found",
        type="float",
        limits={"minimum": 0.0, "maximum": 1.0},
        default=0.001,
    ),
    # -- Where the garment goes: mask modes (docs/workflow.md); the workflow, not an endpoint, reads them
    Param(
        "mask_mode",
        "How the mask is made: text (a CLIPSeg query), class (a garment class), image (a painted mask), box",
        type="str",
        limits={"max_length": 16},
        default=None,
        optional=True,
        check=mask_modes.check_mode,
        template=False,
        cli=None,  # tryon run/submit --mask-mode [CLASS=]MODE[:ARG]
        unset="implied: image with a mask_image, text with a query, class with a garment_class, else text",
        note="[mask modes](#where-the-garment-goes-mask-modes)",
        policy="exempt: a choice from a closed list of mask modes",
    ),
    Param(
        "garment_class",
        f"The garment's class: {', '.join(mask_modes.CLASS_NAMES)}; its query, keep-regions and pass order",
        type="str",
        limits={"max_length": 32},
        default=None,
        optional=True,
        check=mask_modes.check_class,
        canonical=mask_modes.canonical_class,
        template=False,
        cli=None,  # --mask-mode class:CLASS, or the CLASS= of --garment
        unset="none",
        note="or a short name: `upper`, `lower`, `full`, `outer`, `shoes` ([classes](#garment-classes))",
        policy="exempt: a garment class from a closed list (its query is the policy's own)",
    ),
    Param(
        "mask_box",
        "A box x0,y0,x1,y1: the mask (box mode) or where CLIPSeg's mask may be (text, class)",
        type="str",
        limits={"max_length": 100},
        default=None,
        optional=True,
        check=mask_modes.parse_box,
        canonical=mask_modes.box_text,
        template=False,
        cli=None,  # --mask-mode box:x0,y0,x1,y1
        unset="none",
        note="fractions when all four lie in 0..1, else whole pixels inside the photo",
        policy="exempt: four numbers",
    ),
    Param(
        "mask_image",
        "A painted mask (white paints): s3://<input-bucket>/<MaskPrefix>..., or base64 on the console",
        type="str",
        limits={"max_length": MAX_MASK_IMAGE_CHARS},
        default=None,
        optional=True,
        check=_check_mask_image,
        template=False,
        cli=None,  # --mask-mode image:FILE uploads it
        unset="none",
        note="Prepare checks it like an upload (format, size, bombs, aspect ratio, not all black or white) "
        "and pins its version",
        policy="exempt: an s3:// URI or a base64 image, checked as an image (moderation sees the photo)",
    ),
    Param(
        "mask_overlap",
        "Where two garments' masks overlap: later-wins (the garment worn on top keeps it) or refuse",
        type="str",
        limits={"max_length": 16},
        default=None,
        optional=True,
        check=_check_overlap,
        template=False,
        garment=False,
        unset="later-wins",
        policy="exempt: a choice from a closed list",
    ),
    # -- Inpaint (Stable Diffusion inpainting)
    Param(
        "prompt",
        "What to paint into the mask",
        _INP["prompt"],
        (("sd_inpaint", "prompt"), ("sd_upscale", "prompt")),
        default="a photo of a person wearing the garment",
        policy="prompt",
        template_max_length=200,
    ),
    Param(
        "negative_prompt",
        "What to keep out of the painting",
        _INP["negative_prompt"],
        (("sd_inpaint", "negative_prompt"), ("sd_upscale", "negative_prompt")),
        default="blurry, low quality, deformed",
        policy="negative_prompt",
        template_max_length=100,
    ),
    Param("steps", "Diffusion steps", _INP["steps"], (("sd_inpaint", "steps"),)),
    Param(
        "guidance_scale",
        "Classifier-free guidance scale; <= 1 turns it off",
        _INP["guidance_scale"],
        (("sd_inpaint", "guidance_scale"),),
        note="SDXL models take 0..35",
    ),
    Param(
        "strength",
        "How much of the masked region is repainted",
        _INP["strength"],
        (("sd_inpaint", "strength"),),
    ),
    Param(
        "num_images", "Images to paint", _INP["num_images"], (("sd_inpaint", "num_images"),), garment=False
    ),
    Param(
        "padding",
        "Context around the mask's bounding box the inpainting crop keeps, in pixels",
        _INP["padding"],
        (("sd_inpaint", "padding"),),
        send="when_set",
        default=None,
        optional=True,
    ),
    Param(
        "sampler",
        "Sampler: a Stability name (e.g. DPMPP2MSampler) or a diffusers scheduler class",
        _INP["sampler"],
        (("sd_inpaint", "sampler"),),
        send="when_set",
        optional=True,
        policy="exempt: a scheduler name from a closed list",
        template_max_length=40,
    ),
    Param(
        "seed",
        "Seed",
        _INP["seed"],
        (("sd_inpaint", "seed"), ("sd_upscale", "seed")),
        optional=True,
        template=False,
        unset="derived from the job id",
        note="each upscaled image uses its inpainting's seed",
    ),
    Param(
        "adapter",
        "LoRA adapter: a name on the endpoint (adapters/<name>/) or s3://bucket/prefix/",
        _INP["adapter"],
        (("sd_inpaint", "adapter"),),
        send="when_set",
        optional=True,
        check=_check_adapter,
        unset="the endpoint's default adapter (adapter/ in its model folder), if any",
        note="an s3:// adapter must lie under the stack's `AdapterBucket`/`AdapterPrefix`",
        pattern=contract.ADAPTER_SPEC_PATTERN.pattern,
        policy="adapter",
        template_max_length=100,
    ),
    Param(
        "adapter_scale",
        "Weight of the LoRA adapter",
        _INP["adapter_scale"],
        (("sd_inpaint", "adapter_scale"),),
        with_param="adapter",
    ),
    Param(
        "garment_image",
        "The garment's packshot, s3://<input-bucket>/<GarmentPrefix>... (needs an IP-Adapter)",
        type="str",
        limits={"max_length": 1100},
        default=None,
        optional=True,
        sends=(("sd_inpaint", "garment_image"),),
        send="when_set",
        check=_check_s3_image,
        template=False,
        cli=None,  # tryon run/submit --garment FILE uploads the packshot and sets it
        unset="no garment image",
        note="in the input bucket under `GarmentPrefix`; Prepare checks it and pins the version it read "
        "([Garment reference images](#garment-reference-images))",
        policy="exempt: an s3:// URI; ModerateInputs checks the packshot itself",
    ),
    Param(
        "garment_scale",
        "Weight of the garment image (IP-Adapter scale; 0 ignores it)",
        _INP["garment_scale"],
        (("sd_inpaint", "garment_scale"),),
        with_param="garment_image",
    ),
    # -- the SDXL refiner (SDXL endpoints packaged with one): unset is not sent, the endpoint decides
    Param(
        "use_refiner",
        "SDXL refiner pass (SDXL endpoints packaged with a refiner)",
        _INP["use_refiner"],
        (("sd_inpaint", "use_refiner"),),
        send="when_set",
        optional=True,
        cli="--refiner/--no-refiner",
        garment=False,
        unset="the endpoint refines whenever its model has a refiner",
        note="[SDXL refiner](#sdxl-refiner)",
    ),
    Param(
        "refiner_steps",
        "SDXL refiner steps; it runs steps x strength of them",
        _INP["refiner_steps"],
        (("sd_inpaint", "refiner_steps"),),
        send="when_set",
        unless=("use_refiner", False),
        default=None,
        optional=True,
        note="`refiner_steps` x `refiner_strength` >= 1",
        garment=False,
    ),
    Param(
        "refiner_strength",
        "SDXL refiner strength",
        _INP["refiner_strength"],
        (("sd_inpaint", "refiner_strength"),),
        send="when_set",
        unless=("use_refiner", False),
        default=None,
        optional=True,
        garment=False,
    ),
    # -- keep the body (SD 1.5 / SDXL endpoints packaged with ControlNets): unset is not sent
    Param(
        "keep_body",
        "Keep the body under the garment: none, depth, pose or depth+pose (needs an SD 1.5 or SDXL endpoint "
        "packaged with ControlNets)",
        _INP["keep_body"],
        (("sd_inpaint", "keep_body"),),
        send="when_set",
        default=None,
        optional=True,
        check=_check_keep_body,
        canonical=_canonical_keep_body,
        pattern=contract.KEEP_BODY_PATTERN.pattern,
        unset="not kept; nothing is sent, so an SD 2 endpoint is never asked",
        note="`none`, `depth`, `pose`, `depth+pose` (or `pose+depth`); [Keep the body](#keep-the-body)",
        policy="exempt: a choice from a closed list of body controls",
    ),
    *_control_rows(),
    # -- Upscale (x4 upscaler)
    Param(
        "upscale",
        "Upscale x4 (needs an upscaler endpoint, UpscaleEndpointName)",
        type="bool",
        default=False,
        note="the photo must be at most 2048 px per side (`TRYON_UPSCALE_MAX_TILED_SIDE`, the upscaler's "
        "own limit) and its upscale must fit the upscaler's time limit in its mode "
        "([Upscaler time budget](#upscaler-time-budget)), else Prepare refuses it before any model runs",
        garment=False,
    ),
    Param(
        "upscale_steps", "Upscaler diffusion steps", _UP["steps"], (("sd_upscale", "steps"),), garment=False
    ),
    Param(
        "noise_level",
        "Noise the upscaler adds to its input (more: more new detail)",
        _UP["noise_level"],
        (("sd_upscale", "noise_level"),),
        garment=False,
    ),
)
PARAM_NAMES: frozenset[str] = frozenset(p.name for p in PARAMS)
#: The parameters a garment of an outfit may set for itself (``garment``); the others are the job's.
GARMENT_PARAMS: frozenset[str] = frozenset(p.name for p in PARAMS if p.garment)
_PARAMS_BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}


def param(name: str) -> Param:
    """The row of a job parameter; KeyError naming the known ones."""
    try:
        return _PARAMS_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown job parameter {name!r}; known: {', '.join(sorted(PARAM_NAMES))}") from None


def _is_set(value: Any) -> bool:
    return value is not None and value != ""


def is_sent(row: Param, params: Mapping[str, Any]) -> bool:
    """Whether a job with these parameters sends ``row`` to its endpoint fields."""
    if row.send == "when_set" and not _is_set(params.get(row.name)):
        return False
    if row.with_param is not None and not _is_set(params.get(row.with_param)):
        return False
    if row.with_choice is not None:
        other, choice = row.with_choice
        if not _is_set(params.get(other)) or choice not in str(params[other]).split("+"):
            return False
    return not (row.unless is not None and params.get(row.unless[0]) is row.unless[1])


def request_fields(kind: EndpointKind, params: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a ``kind`` request that the job's parameters fill, by the rows' send rules.

    Images, outputs and values the workflow computes (the mask, the upscaler's per-image seed) are
    the step's own; everything a job parameter sets comes from here.
    """
    fields: dict[str, Any] = {}
    for row in PARAMS:
        for target_kind, target in row.sends:
            if target_kind == kind and is_sent(row, params):
                fields[target] = params[row.name]
    return fields
