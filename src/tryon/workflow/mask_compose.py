"""The Masks state: every garment's final mask, composed on the original photo's masks (Pillow).

It runs when anything but a lone CLIPSeg mask makes a job's mask (``job.compose_masks``):
a box, a painted mask, keep-regions taken out of either, a box restricting CLIPSeg, or an
outfit's overlap rule. For each garment, in pass order:

- ``text`` / ``class``: CLIPSeg's mask (``clipseg[-<name>].png``), cut to the box if one restricts it;
- ``box``: the box; ``image``: the painted mask, resized to the photo; either minus the
  keep-regions CLIPSeg found (``keep[-<name>].png``);

then ``mask_overlap``: ``later-wins`` takes a pixel out of every mask but the last one that
paints it; ``refuse`` fails the job naming both garments. Each mask is written binary as
``mask[-<name>].png`` (an outfit's union as ``mask.png``), and the answer replaces ``$.segment``
with the final masks (:class:`tryon.workflow.state.SegmentResult`, ``composed``).
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping
from typing import Any

from PIL import Image

from tryon.core import imaging
from tryon.core.errors import RequestError
from tryon.workflow import layout, mask_pixels, storage
from tryon.workflow.settings import Settings
from tryon.workflow.state import GarmentMask, MasksInput, OutfitGarment, SegmentResult
from tryon.workflow.step_errors import EndpointUnavailable, as_step_errors

#: Largest mask read back (CLIPSeg's PNGs of the photo's size: mode L compresses well).
MAX_MASK_BYTES = 64 * 1024 * 1024


def _read_mask(bucket: str, key: str, size: tuple[int, int]) -> Image.Image:
    """A mask the workflow wrote (CLIPSeg's), binarised; it must have the photo's size."""
    data = storage.get_bytes(bucket, key, max_bytes=MAX_MASK_BYTES, field=key)
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        mask = mask_pixels.binarize(img)
    if mask.size != size:
        raise EndpointUnavailable(
            f"s3://{bucket}/{key} is {mask.size[0]}x{mask.size[1]}, not the photo's {size}"
        )
    return mask


def _painted(settings: Settings, garment: OutfitGarment, size: tuple[int, int]) -> Image.Image:
    """The garment's painted mask as Prepare checked it (that version), binary, the photo's size."""
    painted = garment["painted"]
    assert painted is not None
    field = f"{garment['name']}.mask_image" if garment["name"] else "mask_image"
    data = storage.get_bytes(
        painted["bucket"],
        painted["key"],
        max_bytes=settings.max_input_bytes,
        field=field,
        version_id=painted["version_id"],
    )
    return mask_pixels.painted_mask(
        data,
        photo_size=size,
        field=field,
        max_bytes=settings.max_input_bytes,
        max_pixels=settings.max_input_pixels,
    )


def _clipseg_answers(segment: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    """Garment name -> its CLIPSeg answer in ``$.segment`` (none when no garment asked CLIPSeg)."""
    return {answer["name"]: answer for answer in (segment or {}).get("garments", [])}


def _clipseg_record(answer: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not answer:
        return None
    return {"mask_key": answer["mask_key"], "coverage": answer["coverage"], **(answer.get("clipseg") or {})}


def garment_mask(
    settings: Settings,
    garment: OutfitGarment,
    answer: Mapping[str, Any] | None,
    bucket: str,
    size: tuple[int, int],
) -> Image.Image:
    """One garment's mask before the overlap rule (binary, the photo's size)."""
    mode = garment["mask_mode"]
    clipseg = _read_mask(bucket, answer["mask_key"], size) if answer else None
    if mode in ("text", "class"):
        if clipseg is None:
            raise EndpointUnavailable(f"garment {garment['name'] or 'of the job'} has no CLIPSeg mask")
        mask = clipseg
        if garment["box"]:  # the box restricts CLIPSeg's mask
            mask = mask_pixels.intersect(mask, mask_pixels.box_mask(garment["box"], size))
        return mask
    base = (
        mask_pixels.box_mask(garment["box"] or [], size)
        if mode == "box"
        else _painted(settings, garment, size)
    )
    return mask_pixels.subtract(base, clipseg) if clipseg is not None else base  # minus its keep-regions


def _refuse_overlaps(garments: list[OutfitGarment], masks: list[Image.Image], size: tuple[int, int]) -> None:
    found = mask_pixels.overlaps(masks)
    if found:
        total = size[0] * size[1]
        pairs = "; ".join(
            f"{garments[o.earlier]['name']} and {garments[o.later]['name']} share {o.pixels} pixels "
            f"({100 * o.pixels / total:.2f}% of the photo)"
            for o in found
        )
        raise RequestError(
            "mask_overlap",
            f"is refuse and the masks overlap: {pairs}; draw disjoint masks, or leave mask_overlap unset "
            "(later-wins: the garment painted later keeps the overlap)",
        )


@as_step_errors
def compose(payload: MasksInput) -> SegmentResult:
    """Every garment's final mask, written with the job's images (its pending prefix, published by
    Finalize); the answer replaces ``$.segment``."""
    start = time.perf_counter()
    settings = Settings.from_env()
    state = payload["state"]
    job = state["job"]
    segment = state.get("segment")
    # every mask goes with the job's images under its pending prefix (Finalize publishes them)
    bucket, prefix = job["output"]["bucket"], job["output"]["pending_prefix"]
    size = (job["size"][0], job["size"][1])
    garments = job["garments"]
    answers = _clipseg_answers(segment)
    masks = [garment_mask(settings, g, answers.get(g["name"]), bucket, size) for g in garments]
    if job["params"].get("mask_overlap") == "refuse":
        _refuse_overlaps(garments, masks, size)
    final = mask_pixels.later_wins(masks)
    results: list[GarmentMask] = []
    for garment, before, mask in zip(garments, masks, final, strict=True):
        storage.put_bytes(bucket, garment["files"]["mask"], imaging.encode_png(mask), "image/png")
        coverage = round(mask_pixels.coverage(mask), 6)
        answer = answers.get(garment["name"])
        results.append(
            {
                "name": garment["name"],
                "mask_key": garment["files"]["mask"],
                "coverage": coverage,
                "empty": coverage <= garment["params"]["min_coverage"],
                # CLIPSeg's own mask (before the box, keep-regions and overlaps) and what it said
                "clipseg": _clipseg_record(answer),
                "given_up": mask_pixels.painted_pixels(before) - mask_pixels.painted_pixels(mask),
            }
        )
    union = mask_pixels.union(final)
    mask_key = results[0]["mask_key"]
    if job["outfit"]:
        mask_key = prefix + layout.MASK
        storage.put_bytes(bucket, mask_key, imaging.encode_png(union), "image/png")
    segment = segment or {}
    return {
        "mask_key": mask_key,
        "coverage": round(mask_pixels.coverage(union), 6),
        "empty": all(r["empty"] for r in results),
        "garments": results,
        "composed": True,
        "scores": segment.get("scores", {}),
        "model": segment.get("model"),
        "timings_ms": segment.get("timings_ms", {}),
        "elapsed_ms": round(segment.get("elapsed_ms", 0.0) + (time.perf_counter() - start) * 1000.0, 1),
        "compute_seconds": segment.get("compute_seconds", 0.0),
    }
