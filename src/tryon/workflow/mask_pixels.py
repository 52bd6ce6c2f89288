"""Mask pixels for the mask modes and outfits: painted masks, boxes, keep-regions, overlaps (Pillow only).

Every mask here is a binary mode-``L`` image of the photo's own (EXIF-oriented) size:
255 = paint, 0 = keep. That is exactly what the inpainting endpoint repaints (it binarises
at > 127 and pastes back everything else unchanged), so the masks written to the result
folder are the pixels a pass may change. No numpy: the Lambda layer ships Pillow only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageChops

from tryon.core import imaging
from tryon.core.errors import RequestError

#: A painted mask's aspect ratio may differ from the photo's by this much (rounding of a
#: mask painted at another resolution); more means it was painted on another photo.
ASPECT_TOLERANCE = 0.02
#: Above this value (0..255) a mask pixel is painted: the inpainting endpoint's own cut.
PAINT_ABOVE = 127
_BINARY = [0] * (PAINT_ABOVE + 1) + [255] * (255 - PAINT_ABOVE)


def binarize(mask: Image.Image) -> Image.Image:
    """Mode ``L``, 255 where the mask is > 127 and 0 elsewhere (any mode; alpha counts as black)."""
    return _paint_channel(mask).point(_BINARY)


def _paint_channel(mask: Image.Image) -> Image.Image:
    """The mask's gray level, transparent pixels black (a stroke on a transparent canvas paints)."""
    if mask.mode in {"RGBA", "LA", "PA"} or (mask.mode == "P" and "transparency" in mask.info):
        rgba = mask.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("L")
    return mask if mask.mode == "L" else mask.convert("L")


def painted_pixels(mask: Image.Image) -> int:
    """How many pixels of a binary mask are painted."""
    return mask.histogram()[255]


def coverage(mask: Image.Image) -> float:
    """Fraction of a binary mask's pixels that are painted."""
    total = mask.width * mask.height
    return painted_pixels(mask) / total if total else 0.0


def painted_mask(
    data: bytes,
    *,
    photo_size: tuple[int, int],
    field: str = "mask_image",
    max_bytes: int = imaging.DEFAULT_MAX_BYTES,
    max_pixels: int = imaging.DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """A caller's painted mask, checked like any input, as a binary mask of the photo's size.

    Refused (RequestError naming ``field``): too many bytes or pixels, a decompression bomb,
    not a PNG/JPEG/WebP, truncated, another aspect ratio than the photo's (beyond
    :data:`ASPECT_TOLERANCE`), all black (paints nothing) or all white (the whole photo).
    White (> 127) paints; transparency counts as black. Any size: resized to the photo.
    """
    image = imaging.decode_image(data, field=field, max_bytes=max_bytes, max_pixels=max_pixels)
    width, height = photo_size
    ratio, photo_ratio = image.width / image.height, width / height
    if abs(ratio / photo_ratio - 1.0) > ASPECT_TOLERANCE:
        raise RequestError(
            field,
            f"is {image.width}x{image.height} but the photo is {width}x{height}: a mask must have "
            "the photo's aspect ratio (paint it on this photo; any size of it is resized)",
        )
    gray = _paint_channel(image)
    if gray.size != photo_size:
        gray = gray.resize(photo_size, Image.Resampling.BILINEAR)
    mask = gray.point(_BINARY)
    painted = painted_pixels(mask)
    if painted == 0:
        raise RequestError(field, "is all black: it paints nothing (white, > 127, marks where to paint)")
    if painted == width * height:
        raise RequestError(
            field,
            "is all white: it would repaint the whole photo (white marks where to paint, black what to keep: "
            "is it inverted?)",
        )
    return mask


def box_mask(box: Sequence[int], size: tuple[int, int]) -> Image.Image:
    """A binary mask of ``size`` painted inside the pixel box (left, top, right, bottom; exclusive)."""
    mask = Image.new("L", size, 0)
    mask.paste(255, tuple(box))
    return mask


def subtract(mask: Image.Image, keep: Image.Image) -> Image.Image:
    """``mask`` without the pixels of ``keep`` (both binary, same size)."""
    return ImageChops.subtract(mask, keep)


def intersect(mask: Image.Image, other: Image.Image) -> Image.Image:
    """The pixels in both binary masks."""
    return ImageChops.darker(mask, other)


def union(masks: Sequence[Image.Image]) -> Image.Image:
    """The pixels in any of the binary masks (at least one)."""
    out = masks[0]
    for mask in masks[1:]:
        out = ImageChops.lighter(out, mask)
    return out


@dataclass(frozen=True)
class Overlap:
    """Two garments' masks share ``pixels`` pixels (``earlier`` is painted first)."""

    earlier: int
    later: int
    pixels: int


def overlaps(masks: Sequence[Image.Image]) -> list[Overlap]:
    """Every pair of masks (in pass order) that shares pixels."""
    found = []
    for i, earlier in enumerate(masks):
        for j in range(i + 1, len(masks)):
            shared = painted_pixels(intersect(earlier, masks[j]))
            if shared:
                found.append(Overlap(i, j, shared))
    return found


def later_wins(masks: Sequence[Image.Image]) -> list[Image.Image]:
    """Masks in pass order with each pixel left only in the last mask that paints it.

    The garment painted later is worn on top, so it owns the overlap; every pixel is painted
    at most once and the union is unchanged.
    """
    out = list(masks)
    covered: Image.Image | None = None
    for index in range(len(out) - 1, -1, -1):
        if covered is not None:
            out[index] = subtract(out[index], covered)
        covered = masks[index] if covered is None else ImageChops.lighter(covered, masks[index])
    return out
