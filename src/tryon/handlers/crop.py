"""Crop-to-mask geometry and feathered paste-back (Pillow and numpy only).

Inpainting models work at one resolution (512 px for SD2, 1024 px for SDXL). Photos come
in any size and aspect, and a garment mask usually covers a part of them. So the handler
inpaints only a window around the mask:

1. :func:`binarize` the mask (``> 127`` is repainted) and take its bounding box;
2. :func:`crop_box_for_mask` pads that box with context, grows it to the working aspect
   ratio and keeps it inside the photo;
3. the window is resized to the working size, inpainted, and :func:`paste_back` (or
   :class:`PasteBack`, for several images) resizes the result to the window and blends it in
   with 8-bit weights that are zero wherever the mask is zero, so every pixel outside the mask
   is byte-identical to the input.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageChops, ImageFilter

Box = tuple[int, int, int, int]
#: Mask values above this are repainted.
MASK_THRESHOLD = 127
#: Default feather radius in pixels of the photo (inward only).
DEFAULT_FEATHER = 4


def binarize(mask: Image.Image) -> Image.Image:
    """Mode-L mask with 255 where ``mask > 127`` (any input mode; alpha ignored) and 0 elsewhere."""
    gray = mask.convert("L") if mask.mode != "L" else mask
    return gray.point(lambda v: 255 if v > MASK_THRESHOLD else 0)


def mask_bbox(mask: Image.Image) -> Box | None:
    """Bounding box (left, top, right, bottom; right/bottom exclusive) of a binary mask, or None if empty."""
    return mask.getbbox()


def _grow_span(lo: int, hi: int, target: int, limit: int) -> tuple[int, int]:
    """Grow [lo, hi) symmetrically to ``target`` length, shifted (not shrunk) to fit [0, limit)."""
    target = min(max(target, hi - lo), limit)
    extra = target - (hi - lo)
    lo -= extra // 2
    hi = lo + target
    if lo < 0:
        lo, hi = 0, target
    if hi > limit:
        lo, hi = limit - target, limit
    return lo, hi


def crop_box_for_mask(
    bbox: Box,
    image_size: tuple[int, int],
    working_size: tuple[int, int],
    padding: int,
) -> Box:
    """The photo window to inpaint: ``bbox`` plus ``padding``, grown to the working aspect, clamped.

    The window always contains the padded bbox (clamped to the photo). It has the working
    aspect ratio unless the photo is too small in one direction, in which case it spans the
    photo in that direction (the resize to the working size then stretches it slightly).
    """
    img_w, img_h = image_size
    work_w, work_h = working_size
    if padding < 0:
        raise ValueError("padding must be >= 0")
    left, top, right, bottom = bbox
    left, top = max(0, left - padding), max(0, top - padding)
    right, bottom = min(img_w, right + padding), min(img_h, bottom + padding)
    box_w, box_h = right - left, bottom - top
    aspect = work_w / work_h
    # Grow the short side (relative to the working aspect) so the window matches it.
    if box_w / box_h < aspect:
        want_w, want_h = round(box_h * aspect), box_h
    else:
        want_w, want_h = box_w, round(box_w / aspect)
    left, right = _grow_span(left, right, want_w, img_w)
    top, bottom = _grow_span(top, bottom, want_h, img_h)
    return left, top, right, bottom


def feather_weights(mask: Image.Image, radius: int) -> np.ndarray:
    """Blend weights in [0, 1] from a binary mask: soft inside the edge, exactly 0 where the mask is 0."""
    inside = np.asarray(mask, dtype=np.float32) / 255.0
    if radius <= 0:
        return inside
    blurred = np.asarray(mask.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0
    return np.minimum(blurred, inside)


def blend_mask(mask: Image.Image, radius: int) -> Image.Image:
    """:func:`feather_weights` x 255 as a mode-L image: 0 exactly where the mask is 0, >= 1 inside it.

    All in Pillow's 8-bit operations: the blur of an L image is already whole levels, so
    ``min(blur, mask)`` is the float version's ``rint(255 * min(blur / 255, inside))`` exactly.
    """
    if radius <= 0:
        return mask
    weights = ImageChops.darker(mask.filter(ImageFilter.GaussianBlur(radius)), mask)
    return ImageChops.lighter(weights, mask.point(lambda v: 1 if v else 0))


class PasteBack:
    """One photo, window and mask, ready to take any number of generated images.

    What every image shares (the window of the photo, the feathered blend weights) is
    computed once; each image then costs a resize and one blend in Pillow's C code.
    ``original`` must be RGB; ``mask`` is the binary mask of the whole photo (:func:`binarize`).
    Pixels where the mask is 0 are copied from ``original`` unchanged.
    """

    def __init__(
        self, original: Image.Image, box: Box, mask: Image.Image, *, feather: int = DEFAULT_FEATHER
    ) -> None:
        if original.mode != "RGB":
            raise ValueError("original must be RGB")
        if mask.size != original.size:
            raise ValueError(f"mask size {mask.size} != image size {original.size}")
        self.original = original
        self.box = box
        left, top, right, bottom = box
        self.region_size = (right - left, bottom - top)
        self.window = original.crop(box)
        self.weights = blend_mask(mask.crop(box), feather)

    def region(self, generated: Image.Image) -> Image.Image:
        """The photo's window with ``generated`` (any size) resized into it, blended where the mask is set."""
        patch = generated.convert("RGB").resize(self.region_size, Image.Resampling.LANCZOS)
        return Image.composite(patch, self.window, self.weights)

    def image(self, generated: Image.Image) -> Image.Image:
        """The whole photo with the blended window pasted in (a new image; the original is untouched)."""
        result = self.original.copy()
        result.paste(self.region(generated), self.box[:2])
        return result


def paste_back(
    original: Image.Image,
    generated: Image.Image,
    box: Box,
    mask: Image.Image,
    *,
    feather: int = DEFAULT_FEATHER,
) -> Image.Image:
    """A new photo: ``generated`` (any size) resized into ``box`` and blended where ``mask`` is set.

    One image; :class:`PasteBack` does the shared work once for several.
    """
    return PasteBack(original, box, mask, feather=feather).image(generated)
