"""Prepare's logic: read the trigger, inspect the upload, resolve parameters, derive the job id."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import unquote_plus

from tryon.core import aws_events, content_policy, imaging, upscale_budget, validation
from tryon.core.contract import upscale_max_side
from tryon.core.errors import RequestError
from tryon.core.kinds import KINDS
from tryon.core.s3uri import parse_versioned_s3_uri, s3_uri, version_or_none
from tryon.workflow import async_calls, garment, garment_plan, layout, outfit, params, storage
from tryon.workflow.jobid import job_id_for
from tryon.workflow.settings import IMAGE_SUFFIXES, Settings
from tryon.workflow.state import Job

#: Bytes fetched with a ranged GET to read the image header before anything else.
HEADER_BYTES = 64 * 1024
#: Fields a console input may carry besides the parameters (``garments``: an outfit, tryon.workflow.outfit).
CONSOLE_FIELDS = frozenset({"image", "preset", "garments"})


@dataclass(frozen=True)
class Trigger:
    """What started the execution: the object and the overrides the input itself carries."""

    source: str  # "s3-event" | "console"
    bucket: str
    key: str
    version_id: str | None
    overrides: dict[str, Any]
    preset: str | None
    garments: list[dict[str, Any]] | None = None  # a console input's outfit, validated


def parse_trigger(event: Any) -> Trigger:
    """Accept an EventBridge S3 "Object Created" event or a console input ``{"image": "s3://..."}``."""
    event = validation.require_mapping(event, field="input")
    if aws_events.is_s3_event(event):
        created = aws_events.object_created(event)
        return Trigger("s3-event", created.bucket, created.key, created.version_id, {}, None)
    if "image" in event:
        validation.reject_unknown(event, set(params.PARAM_NAMES | CONSOLE_FIELDS), field="input")
        bucket, key, version = parse_versioned_s3_uri(event["image"], field="image")
        preset = validation.get_str(event, "preset", None, max_length=64)
        overrides = {k: v for k, v in event.items() if k in params.PARAM_NAMES}
        garments = outfit.console_garments(event["garments"]) if "garments" in event else None
        return Trigger(
            "console", bucket, key, version, params.validate_layer(overrides, "input"), preset, garments
        )
    raise RequestError(
        "input",
        'must be an EventBridge S3 "Object Created" event or a console input like '
        '{"image": "s3://<input-bucket>/inputs/photo.jpg"}',
    )


def _locate(settings: Settings, trigger: Trigger) -> tuple[str, dict[str, Any]]:
    """(key, HeadObject response) of the upload, checking bucket, prefix and suffix first."""
    where = s3_uri(trigger.bucket, trigger.key)
    if trigger.bucket != settings.input_bucket:
        raise RequestError("image", f"{where} is not in the input bucket {settings.input_bucket}")
    candidates = [trigger.key]
    if unquote_plus(trigger.key) != trigger.key:  # S3 notification keys may arrive URL-encoded
        candidates.append(unquote_plus(trigger.key))
    for key in candidates:
        if not key.startswith(settings.input_prefix):
            raise RequestError("image", f"{where} is not under the input prefix {settings.input_prefix}")
        if not key.lower().endswith(IMAGE_SUFFIXES):
            raise RequestError("image", f"{where} must end with one of {', '.join(IMAGE_SUFFIXES)}")
        head = storage.head(trigger.bucket, key, trigger.version_id, field="image")
        if head is not None:
            return key, head
    raise RequestError("image", f"{where} does not exist (or the version is gone)")


def inspect_image(
    settings: Settings, bucket: str, key: str, head: Mapping[str, Any], field: str = "image"
) -> imaging.ImageHeader:
    """Check size and header with a ranged GET, then decode fully (truncated files fail here).

    ``field`` names the input in errors (``image``, or ``garment_image`` for a garment's packshot).
    """
    size = int(head.get("ContentLength", 0))
    if size == 0:  # a ranged GET of an empty object is answered 416 InvalidRange
        raise RequestError(field, f"{s3_uri(bucket, key)} is empty (0 bytes): upload the image again")
    if size > settings.max_input_bytes:
        raise RequestError(field, f"is {size} bytes; the limit is {settings.max_input_bytes} bytes")
    version = version_or_none(head.get("VersionId"))
    limits = {
        "field": field,
        "max_bytes": settings.max_input_bytes,
        "max_pixels": settings.max_input_pixels,
    }
    start = storage.get_bytes(
        bucket,
        key,
        max_bytes=HEADER_BYTES,
        field=field,
        version_id=version,
        byte_range=(0, HEADER_BYTES - 1),
    )
    try:
        imaging.read_header(start, **limits)
    except RequestError:
        if size <= HEADER_BYTES:
            raise
        # Some headers (large EXIF blocks) lie beyond the first bytes: decide on the whole object.
    data = (
        start
        if size <= HEADER_BYTES
        else storage.get_bytes(
            bucket, key, max_bytes=settings.max_input_bytes, field=field, version_id=version
        )
    )
    header = imaging.read_header(data, **limits)
    imaging.decode_image(data, **limits)
    return header


def check_upscalable(
    settings: Settings, header: imaging.ImageHeader, effective: Mapping[str, Any]
) -> dict[str, Any]:
    """The upscale plan of a photo, or RequestError when the upscaler endpoint would refuse or not finish it.

    The inpainted images keep the photo's size. The x4 upscaler takes at most
    :func:`tryon.core.contract.upscale_max_side` px per side (the same variable configures both),
    and its endpoint must finish within its mode's time limit: :func:`tryon.core.upscale_budget.plan`
    estimates the call from its tiles and steps and refuses what would not fit, naming the numbers
    and what to change. Checked here, before any model runs.
    """
    limit = upscale_max_side()
    if max(header.width, header.height) > limit:
        raise RequestError(
            "upscale",
            f"the photo is {header.width}x{header.height}; the x4 upscaler takes at most {limit} px per side "
            "(TRYON_UPSCALE_MAX_TILED_SIDE): upload a smaller photo or set upscale to false",
        )
    return upscale_budget.plan(
        header.width,
        header.height,
        steps=int(effective["upscale_steps"]),
        mode=settings.mode("sd_upscale"),  # type: ignore[arg-type]
        seconds_per_tile_step=settings.upscale_tile_step_seconds,
        async_invocation_seconds=settings.async_invocation_seconds,
    )


#: Reads and checks an image object (the photo, a garment's packshot): :func:`inspect_image`, or a
#: caching wrapper of it (a batch reads each object once however many rows name it).
Inspector = garment.Inspect


def build_job(settings: Settings, event: Any, *, inspect: Inspector | None = None) -> Job:
    """The validated job (a small JSON-able dict) for an event or console input.

    ``inspect`` replaces :func:`inspect_image` for the photo and the garment image (a batch
    validates many rows naming one photo or one packshot and reads and decodes each once).
    """
    trigger = parse_trigger(event)
    moderation = settings.moderation()  # a misconfigured stack refuses every job, naming the parameter
    key, head = _locate(settings, trigger)
    inspect = inspect or inspect_image
    header = inspect(settings, trigger.bucket, key, head, "image")
    metadata = head.get("Metadata", {})
    meta_values, meta_preset, ignored = params.metadata_overrides(metadata)
    resolved = outfit.resolve_outfit(
        defaults=params.template_defaults(),
        preset_table=params.presets(),
        preset=trigger.preset or meta_preset,
        metadata=meta_values,
        console=trigger.overrides,
        metadata_garments=outfit.metadata_garments(metadata),
        console_garments=trigger.garments,
    )
    for item in resolved.garments:  # every garment's text, before any image is read further or any model runs
        content_policy.check_job_text(
            {**resolved.params, **item.params}, label=item.label, mask_mode=item.mode
        )
    size = header.oriented_size
    # each garment's adapter, packshot, painted mask and box, checked; objects pinned to the version read
    checked = [garment_plan.check_garment(settings, item, size, inspect) for item in resolved.garments]
    effective = dict(resolved.params) if resolved.outfit else {**resolved.params, **checked[0].params}
    id_params = dict(effective)
    if resolved.outfit:
        id_params["garments"] = [dict(c.params, garment_class=c.garment.garment_class) for c in checked]
    version_id = version_or_none(head.get("VersionId"))
    etag = str(head.get("ETag", "")).strip('"')
    job_id = job_id_for(trigger.bucket, key, version_id or etag, id_params)
    if effective["seed"] is None:  # deterministic, so a re-delivered event gives the same images
        effective["seed"] = int(job_id[:8], 16)
    for item in checked:  # a garment without its own seed takes the job's
        if item.params["seed"] is None:
            item.params["seed"] = effective["seed"]
    upscale = bool(effective["upscale"]) and settings.upscaler_configured
    upscale_plan = check_upscalable(settings, header, effective) if upscale else None
    name = layout.result_name(key, settings.input_prefix)
    prefix = layout.result_prefix(settings.results_prefix, name, job_id)
    # every image of the job is written under its pending prefix first; Finalize publishes it to
    # ``prefix`` once moderation passed it (tryon.workflow.publish)
    pending = layout.pending_prefix(settings.pending_prefix, job_id)
    garments = garment_plan.plan(settings, resolved, checked, pending)
    segment_requests = sum(1 for g in garments if g["segment"])
    return {
        "job_id": job_id,
        "source": trigger.source,
        "preset": trigger.preset or meta_preset,
        "input": {
            "bucket": trigger.bucket,
            "key": key,
            "uri": s3_uri(trigger.bucket, key),
            "version_id": version_id,
            "etag": etag,
            "size": int(head.get("ContentLength", 0)),
            "image": asdict(header),
        },
        "params": effective,
        "garment": None if resolved.outfit else checked[0].packshot,
        "upscale": upscale,
        "upscale_plan": upscale_plan,
        "ignored_metadata": ignored,
        "output": {"bucket": settings.output_bucket, "prefix": prefix, "pending_prefix": pending},
        "endpoints": {
            kind: settings.endpoint(kind) if kind != "sd_upscale" or upscale else None for kind in KINDS
        },
        "components": {kind: settings.component(kind) for kind in KINDS},
        "modes": {kind: settings.mode(kind) for kind in KINDS},
        "async_waits": async_calls.waits(
            settings, effective["num_images"], segment_requests=segment_requests, passes=len(garments)
        ),
        "moderation": moderation.as_dict(),
        "garments": garments,
        "outfit": resolved.outfit,
        "size": list(size),
        "needs_segment": segment_requests > 0,
        "compose_masks": any(garment_plan.compose_needed(item, resolved.outfit) for item in checked),
    }
