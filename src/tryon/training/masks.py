"""Inpainting masks for training: random shapes and garment-shaped masks, mixed by a ratio.

- Random masks are the classic DreamBooth-inpainting recipe: a rectangle or an ellipse of
  random size and place, and now and then the whole image.
- Garment masks come from mask files next to the photos (see :mod:`tryon.training.data`)
  or from the CLIPSeg endpoint handler run in-process on a text query (``--mask-query``).
- :class:`MaskSampler` picks, per sample, the garment mask with probability
  ``garment_mask_ratio`` (when the image has one) and a random mask otherwise.

Masks are PIL mode ``L`` images, 255 inside (the region to paint), 0 outside.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from tryon.core import imaging

logger = logging.getLogger(__name__)

#: Probability that a random mask covers the whole image (the text-to-image case).
FULL_MASK_PROBABILITY = 0.25
#: A garment mask covering less than this fraction of the image is treated as missing.
MIN_GARMENT_COVERAGE = 0.005


def random_mask(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A random rectangle or ellipse (25 % of the time the whole image), mode L at ``size``."""
    width, height = size
    mask = Image.new("L", size, 0)
    if rng.random() < FULL_MASK_PROBABILITY:
        mask.paste(255, (0, 0, width, height))
        return mask
    box_w = max(1, round(width * rng.uniform(0.25, 0.9)))
    box_h = max(1, round(height * rng.uniform(0.25, 0.9)))
    left = rng.randint(0, width - box_w)
    top = rng.randint(0, height - box_h)
    box = (left, top, left + box_w - 1, top + box_h - 1)
    draw = ImageDraw.Draw(mask)
    if rng.random() < 0.5:
        draw.rectangle(box, fill=255)
    else:
        draw.ellipse(box, fill=255)
    return mask


def coverage(mask: Image.Image) -> float:
    """Fraction of pixels inside a mode-L mask (value >= 128)."""
    histogram = mask.convert("L").histogram()
    return sum(histogram[128:]) / float(mask.width * mask.height)


def binarize(mask: Image.Image) -> Image.Image:
    """Mode L, 0 or 255 (threshold 128)."""
    return mask.convert("L").point(lambda v: 255 if v >= 128 else 0)


def clipseg_masks(
    images: Sequence[Image.Image],
    query: str,
    model_dir: str | Path,
    *,
    threshold: float = 0.4,
) -> list[Image.Image]:
    """Garment masks for ``images`` from the CLIPSeg endpoint handler (loaded once, in-process).

    Each mask is mode L at its image's own size, exactly what the endpoint would return
    for ``{"image": ..., "queries": [query], "threshold": threshold}``.
    """
    from tryon.handlers import clipseg

    model = clipseg.model_fn(str(model_dir))
    result = []
    for image in images:
        body = json.dumps(
            {
                "image": imaging.b64encode(imaging.encode_png(image)),
                "queries": [query],
                "threshold": threshold,
            }
        )
        prediction = clipseg.predict_fn(clipseg.input_fn(body, "application/json"), model)
        mask = imaging.decode_image(imaging.b64decode(prediction["mask"], field="mask"), field="mask")
        result.append(mask.convert("L"))
    return result


class MaskSampler:
    """Per-sample mask choice: the garment mask (probability ``ratio``) or a random shape."""

    def __init__(self, garment_masks: Sequence[Image.Image | None], ratio: float) -> None:
        self.garment_masks = [
            m if m is not None and coverage(m) >= MIN_GARMENT_COVERAGE else None for m in garment_masks
        ]
        self.ratio = ratio

    @property
    def has_garment_masks(self) -> bool:
        """True if at least one sample has a usable garment mask."""
        return any(m is not None for m in self.garment_masks)

    def sample(self, index: int, size: tuple[int, int], rng: random.Random) -> tuple[Image.Image, bool]:
        """(mask, from_garment) for sample ``index``; draws from ``rng`` either way."""
        use_garment = rng.random() < self.ratio
        garment = self.garment_masks[index]
        if use_garment and garment is not None:
            return garment, True
        return random_mask(size, rng), False
