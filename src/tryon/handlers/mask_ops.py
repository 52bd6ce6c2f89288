"""Binary-mask post-processing for the segmentation endpoint: dilate, feather, coverage.

Masks are numpy arrays: ``bool`` while binary, ``uint8`` (0..255, PIL mode ``L``) once
feathered. Every operation is vectorised and its cost does not grow with the pixel radius.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter


def dilate(mask: np.ndarray, px: int) -> np.ndarray:
    """Grow a boolean mask by ``px`` pixels (Euclidean disk), in time independent of ``px``."""
    if px <= 0 or not mask.any() or mask.all():
        return mask
    from scipy import ndimage

    # Distance of every outside pixel to the nearest mask pixel; grow where it is within px.
    return ndimage.distance_transform_edt(~mask) <= px


def feather(mask: np.ndarray, px: int) -> np.ndarray:
    """Soften a boolean mask's edge over about ``px`` pixels each side; returns uint8 0..255.

    A Gaussian blur with sigma ``px / 2``: the 2.5 %..97.5 % ramp spans about ``px`` pixels
    on each side of the original edge, and pixels far from it keep 0 or 255.
    """
    as_l = mask.astype(np.uint8) * np.uint8(255)
    if px <= 0 or not mask.any() or mask.all():
        return as_l
    blurred = Image.fromarray(as_l).filter(ImageFilter.GaussianBlur(radius=px / 2.0))
    return np.asarray(blurred)


def coverage(mask: np.ndarray) -> float:
    """Fraction of pixels in the mask (uint8 masks: value > 127)."""
    if mask.size == 0:
        return 0.0
    inside = mask if mask.dtype == bool else mask > 127
    return float(np.count_nonzero(inside)) / float(mask.size)


def to_image(mask: np.ndarray) -> Image.Image:
    """A mode ``L`` image of a boolean or uint8 mask."""
    if mask.dtype == bool:
        mask = mask.astype(np.uint8) * np.uint8(255)
    return Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8))
