"""Prepare's part for each garment: its packshot, painted mask, box, CLIPSeg request and files (Pillow).

Everything a garment names is checked before any model runs, each refusal naming the
garment and the field (``upper-body.mask_box: ...``): the adapter's location, the packshot
(:mod:`tryon.workflow.garment`), the painted mask (like any input: where it lives, exists,
size, header, decompression bombs, full decode, aspect ratio, not all black or white) and
the box (inside the photo). Objects are pinned to the version read, so the job id names
them. A console's base64 mask is stored in the result folder (``painted[-<name>].png``,
binary, the photo's size) and named by its SHA-256.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from tryon.core import imaging, mask_modes
from tryon.core.errors import RequestError
from tryon.core.s3uri import parse_versioned_s3_uri, s3_uri, version_or_none
from tryon.workflow import garment, layout, mask_pixels, storage
from tryon.workflow.outfit import Resolved, ResolvedGarment
from tryon.workflow.settings import IMAGE_SUFFIXES, Settings
from tryon.workflow.state import GarmentFiles, JobGarment, JobPaintedMask, OutfitGarment, SegmentAsk

#: ``mask_image`` of a console mask in the job's parameters: its SHA-256, never its pixels.
CONSOLE_MASK_PREFIX = "sha256:"


@dataclass(frozen=True)
class Checked:
    """One garment after Prepare's checks: its parameters with pinned objects, and what it names."""

    garment: ResolvedGarment
    params: dict[str, Any]
    packshot: JobGarment | None
    painted: JobPaintedMask | None
    console_mask: bytes | None  # a base64 mask's binary PNG, stored once the result folder is known
    box: list[int] | None


def _relabeled(label: str, check: Callable[[], Any]) -> Any:
    try:
        return check()
    except RequestError as exc:
        raise RequestError(f"{label}{exc.field}", exc.detail) from None


def _painted_object(settings: Settings, uri: str, size: tuple[int, int]) -> JobPaintedMask:
    """A painted mask in the input bucket under the mask prefix, checked and pinned."""
    field = "mask_image"
    bucket, key, version = parse_versioned_s3_uri(uri, field=field)
    where = layout.s3_uri(settings.input_bucket, settings.mask_prefix)
    if bucket != settings.input_bucket or not key.startswith(settings.mask_prefix):
        raise RequestError(field, f"{uri} is not under {where} (painted masks live there)")
    if not key.lower().endswith(IMAGE_SUFFIXES):
        raise RequestError(field, f"{uri} must end with one of {', '.join(IMAGE_SUFFIXES)}")
    head = storage.head(bucket, key, version)
    if head is None:
        raise RequestError(field, f"{uri} does not exist (or the version is gone)")
    length = int(head.get("ContentLength", 0))
    if length == 0:
        raise RequestError(field, f"{uri} is empty (0 bytes): upload the mask again")
    if length > settings.max_input_bytes:
        raise RequestError(field, f"is {length} bytes; the limit is {settings.max_input_bytes} bytes")
    read = version_or_none(head.get("VersionId"))
    data = storage.get_bytes(bucket, key, max_bytes=settings.max_input_bytes, field=field, version_id=read)
    header = _check_pixels(settings, data, size)
    return {
        "source": "s3",
        "bucket": bucket,
        "key": key,
        "version_id": read,
        "uri": s3_uri(bucket, key, read),
        "size": length,
        "image": asdict(header),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def _check_pixels(settings: Settings, data: bytes, size: tuple[int, int]) -> imaging.ImageHeader:
    limits = {"max_bytes": settings.max_input_bytes, "max_pixels": settings.max_input_pixels}
    header = imaging.read_header(data, field="mask_image", **limits)
    mask_pixels.painted_mask(data, photo_size=size, field="mask_image", **limits)
    return header


def _console_mask(settings: Settings, text: str, size: tuple[int, int]) -> tuple[JobPaintedMask, bytes]:
    """A base64 mask from the console, checked; (its record without a location yet, its binary PNG)."""
    data = imaging.b64decode(text, field="mask_image")
    limits = {"max_bytes": settings.max_input_bytes, "max_pixels": settings.max_input_pixels}
    header = imaging.read_header(data, field="mask_image", **limits)
    binary = mask_pixels.painted_mask(data, photo_size=size, field="mask_image", **limits)
    record: JobPaintedMask = {
        "source": "console",
        "bucket": "",
        "key": "",
        "version_id": None,
        "uri": "",
        "size": len(data),
        "image": asdict(header),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    return record, imaging.encode_png(binary)


def check_garment(
    settings: Settings, item: ResolvedGarment, size: tuple[int, int], inspect: garment.Inspect
) -> Checked:
    """Check what one garment names (RequestError naming ``<garment>.<field>``); pin its objects."""
    label = item.label
    values = dict(item.params)
    _relabeled(label, lambda: check_adapter_location(settings, values["adapter"]))
    packshot = None
    if values["garment_image"]:  # pinned, so the job id names that version
        packshot = _relabeled(label, lambda: garment.check(settings, values["garment_image"], inspect))
        values["garment_image"] = packshot["uri"]
    painted, console_mask = None, None
    if values["mask_image"]:
        text = values["mask_image"]
        if text.startswith("s3://"):
            painted = _relabeled(label, lambda: _painted_object(settings, text, size))
            values["mask_image"] = painted["uri"]
        else:
            painted, console_mask = _relabeled(label, lambda: _console_mask(settings, text, size))
            values["mask_image"] = CONSOLE_MASK_PREFIX + painted["sha256"]
    box = None
    if values["mask_box"]:
        box = list(_relabeled(label, lambda: mask_modes.parse_box(values["mask_box"]).pixels(*size)))
    return Checked(item, values, packshot, painted, console_mask, box)


def check_adapter_location(settings: Settings, adapter: str | None) -> None:
    """An ``s3://`` adapter must lie under the stack's adapter location, which the endpoints may read.

    Refused here, before any model runs, rather than as an access error from the endpoint.
    """
    if not adapter or not adapter.startswith("s3://"):
        return
    bucket = settings.adapter_bucket or settings.output_bucket
    allowed = f"s3://{bucket}/{settings.adapter_prefix}"
    if bucket and not adapter.startswith(allowed):
        raise RequestError(
            "adapter",
            f"{adapter} is outside {allowed}, the only place the endpoints may read adapters from "
            "(template parameters AdapterBucket and AdapterPrefix)",
        )


def compose_needed(item: Checked, outfit: bool) -> bool:
    """Whether the Masks state composes this garment's mask (anything but a lone CLIPSeg mask)."""
    return outfit or item.garment.mode not in mask_modes.SEGMENTED_MODES or item.box is not None


def _segment_ask(item: Checked) -> SegmentAsk | None:
    ask = mask_modes.segment_ask(item.params, item.garment.mode)
    if ask is None:
        return None
    return {"role": ask.role, "queries": list(ask.queries), "negative_queries": list(ask.negative_queries)}


def _files(item: Checked, prefix: str, composed: bool, last: bool) -> GarmentFiles:
    name = item.garment.name
    ask = mask_modes.segment_ask(item.params, item.garment.mode)
    clipseg = None
    if ask is not None and composed:
        stem = layout.CLIPSEG_STEM if ask.role == "garment" else layout.KEEP_STEM
        clipseg = layout.png(prefix, layout.garment_stem(stem, name))
    output_stem = layout.INPAINTED_STEM if last else layout.garment_stem(layout.INPAINTED_STEM, name)
    return {
        "mask": layout.png(prefix, layout.garment_stem(layout.MASK_STEM, name)),
        "clipseg": clipseg,
        "output_stem": output_stem,
    }


def plan(settings: Settings, resolved: Resolved, checked: list[Checked], prefix: str) -> list[OutfitGarment]:
    """The job's garments (in pass order) with their files under ``prefix``; stores console masks there."""
    composed = any(compose_needed(item, resolved.outfit) for item in checked)
    garments: list[OutfitGarment] = []
    for item in checked:
        painted = item.painted
        if painted is not None and item.console_mask is not None:
            # Written by this job only, with content its id names: no version to pin.
            key = layout.png(prefix, layout.garment_stem(layout.PAINTED_STEM, item.garment.name))
            storage.put_bytes(settings.output_bucket, key, item.console_mask, "image/png")
            painted = {
                **painted,
                "bucket": settings.output_bucket,
                "key": key,
                "uri": layout.s3_uri(settings.output_bucket, key),
            }
        garments.append(
            {
                "index": item.garment.index,
                "name": item.garment.name,
                "garment_class": item.garment.garment_class,
                "mask_mode": item.garment.mode,
                "params": item.params,
                "packshot": item.packshot,
                "painted": painted,
                "box": item.box,
                "box_role": mask_modes.box_role(item.garment.mode, item.box),
                "segment": _segment_ask(item),
                "files": _files(item, prefix, composed, item is checked[-1]),
            }
        )
    return garments
