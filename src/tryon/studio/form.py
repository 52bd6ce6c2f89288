"""The page's form: its fields from the schema's rows, and what the page sends as a job.

Which parameters each part of the page shows is the studio's choice (:data:`GARMENT_FIELDS`,
:data:`JOB_FIELDS`); their type, limits, default and help are the rows' (:mod:`tryon.core.schema`),
as are the garment classes and mask modes (:mod:`tryon.core.mask_modes`). What the page sends
becomes the job overrides ``tryon run`` builds from ``--garment``/``--mask-mode``/``--set``: plain
names for a lone garment, ``<class>.<name>`` for each garment of an outfit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tryon.core import mask_modes, schema
from tryon.core.errors import RequestError
from tryon.studio.backend import FileUpload, JobRequest, StackBackend

#: What a garment card shows (besides its class, mask mode and painted mask or packshot upload).
GARMENT_FIELDS = (
    "query",
    "mask_box",
    "negative_queries",
    "adapter",
    "adapter_scale",
    "garment_scale",
    "prompt",
)
#: Mask modes whose mask the user drew (painted, a box): taken as drawn, so the stack's default
#: keep-regions (``negative_queries``) are not applied unless the garment names its own.
DRAWN_MODES = frozenset({"image", "box"})
#: The job's "how" fields.
JOB_FIELDS = (
    "negative_prompt",
    "steps",
    "guidance_scale",
    "seed",
    "num_images",
    "strength",
    "use_refiner",
    "upscale",
)
#: What Compare may vary, row by row.
VARIED = ("adapter", "adapter_scale", "seed", "garment_scale", "guidance_scale", "prompt")
#: The photos the page offers as samples (the repository's assets).
SAMPLES_DIR = Path(__file__).resolve().parents[3] / "assets"


def samples() -> list[str]:
    """The sample photos' names."""
    if not SAMPLES_DIR.is_dir():
        return []
    return sorted(
        p.name for p in SAMPLES_DIR.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"}
    )


def sample_path(name: str) -> Path:
    """The sample photo ``name`` (one of :func:`samples`)."""
    if name not in samples():
        raise RequestError("sample", f"unknown sample {name!r}; known: {', '.join(samples())}")
    return SAMPLES_DIR / name


def field_spec(name: str, stack_parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One parameter as the page renders it: type, limits, default, help (the row's); the default is the
    stack's own job default where its template parameters set one (``DefaultSteps``), else the row's."""
    row = schema.param(name)
    default = row.default
    if row.template_parameter and str((stack_parameters or {}).get(row.template_parameter, "")) != "":
        default = (stack_parameters or {})[row.template_parameter]
    if isinstance(default, tuple):
        default = ",".join(default)
    return {
        "name": name,
        "type": row.type,
        "limits": dict(row.limits),
        "default": default,
        "optional": row.optional,
        "help": row.help_text(),
        "label": name.replace("_", " "),
    }


def page_config(backend: StackBackend) -> dict[str, Any]:
    """What the page needs to draw itself: the back end, the fields, classes, modes, adapters, samples."""
    from tryon.workflow.outfit import MAX_GARMENTS

    return {
        "backend": backend.label,
        "stack": backend.stack.name,
        "local": backend.local,
        "batches": backend.has_batches,
        "adapters": backend.adapters(),
        "classes": [
            {"name": c.name, "query": c.query, "about": c.about, "aliases": list(c.aliases)}
            for c in mask_modes.CLASSES
        ],
        "mask_modes": list(mask_modes.MASK_MODES),
        "mode_help": schema.param("mask_mode").help_text(),
        "class_help": schema.param("garment_class").help_text(),
        "garment_fields": [field_spec(n, backend.parameters) for n in GARMENT_FIELDS],
        "job_fields": [field_spec(n, backend.parameters) for n in JOB_FIELDS],
        "varied": [field_spec(n, backend.parameters) for n in VARIED],
        "max_garments": MAX_GARMENTS,
        "max_upload_bytes": _max_bytes(),
        "samples": samples(),
    }


def _max_bytes() -> int:
    from tryon.core import imaging

    return imaging.DEFAULT_MAX_BYTES


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def job_request(body: Mapping[str, Any], save: Callable[..., Path]) -> JobRequest:
    """The page's ``{"photo", "garments", "job", "preset"}`` as a :class:`JobRequest`.

    ``save(value, what)`` stores an uploaded file (checked for size) and returns its path. Blank
    fields are left out (the stack's defaults apply). Each garment: ``class`` (blank for a lone
    garment without one), ``mode`` (text, class, image, box), ``mask`` (the painted mask, a PNG),
    ``packshot`` (an upload), and :data:`GARMENT_FIELDS`.
    """
    photo = save(body.get("photo"), "photo", default_name="photo.png")
    garments = body.get("garments") or [{}]
    if not isinstance(garments, list) or not all(isinstance(g, dict) for g in garments):
        raise RequestError("garments", "must be a list of garments")
    outfit = len(garments) > 1
    overrides: dict[str, Any] = {}
    uploads: list[FileUpload] = []
    for number, garment in enumerate(garments, start=1):
        what = f"garment {number}"
        cls_name = _text(garment.get("class"))
        cls = mask_modes.canonical_class(cls_name, field=f"{what} class") if cls_name else None
        if outfit and cls is None:
            raise RequestError(f"{what} class", "an outfit's every garment needs a class (upper-body, ...)")

        def key(name: str, cls: str | None = cls) -> str:
            return f"{cls}.{name}" if outfit and cls else name

        mode = _text(garment.get("mode")) or ("class" if cls else "text")
        mode = mask_modes.check_mode(mode, field=f"{what} mask mode")
        overrides[key("mask_mode")] = mode
        if cls and not outfit:
            overrides["garment_class"] = cls
        for name in GARMENT_FIELDS:
            value = _text(garment.get(name))
            if value:
                overrides[key(name)] = value
        if mode in DRAWN_MODES and not _text(garment.get("negative_queries")):
            overrides[key("negative_queries")] = ""  # as drawn: no keep-regions, no CLIPSeg call
        if mode == "image":
            if not garment.get("mask"):
                raise RequestError(f"{what} mask", "paint the mask on the photo first (image mode)")
            path = save(garment["mask"], f"{what} mask", default_name="mask.png")
            uploads.append(FileUpload(key("mask_image"), path, "mask", f"{what} mask"))
        if garment.get("packshot"):
            path = save(garment["packshot"], f"{what} packshot", default_name="packshot.png")
            uploads.append(FileUpload(key("garment_image"), path, "garment", f"{what} packshot"))
    job = body.get("job") or {}
    if not isinstance(job, dict):
        raise RequestError("job", "must be an object")
    for name in JOB_FIELDS:
        value = job.get(name)
        if isinstance(value, bool):
            overrides[name] = value
        elif _text(value):
            overrides[name] = _text(value)
    preset = _text(body.get("preset")) or None
    return JobRequest(photo=photo, overrides=overrides, uploads=uploads, preset=preset)


def variants(value: Any) -> list[dict[str, Any]]:
    """Compare's variants: 2-4 objects of :data:`VARIED` parameters (blank values left out)."""
    if not isinstance(value, list):
        raise RequestError("variants", "must be a list of 2 to 4 variants")
    out = []
    for number, variant in enumerate(value, start=1):
        if not isinstance(variant, dict):
            raise RequestError(f"variant {number}", "must be an object")
        unknown = sorted(set(variant) - set(VARIED))
        if unknown:
            raise RequestError(f"variant {number}", f"may vary {', '.join(VARIED)}, not {', '.join(unknown)}")
        out.append({k: _text(v) for k, v in variant.items() if _text(v)})
    if not 2 <= len(out) <= 4:
        raise RequestError("variants", f"compare 2 to 4 variants, got {len(out)}")
    return out
