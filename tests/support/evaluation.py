"""Shared by the evaluation and training-validation tests: tiny metric networks and test images."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw


def metric_models(root: Path) -> Path:
    """Tiny random CLIP, DINOv2 and Inception networks in the ``--metric-models`` layout (built once)."""
    from tryon.evaluation.tiny_metrics import build_metric_models

    if not (root / "inception").is_dir():
        build_metric_models(root)
    return root


def person(size=(64, 96), shade=0, box=(16, 30, 48, 70)) -> tuple[Image.Image, Image.Image]:
    """A synthetic photo with a red 'garment' rectangle, and its mask."""
    photo = Image.new("RGB", size, (90 + shade, 120, 140))
    ImageDraw.Draw(photo).rectangle(box, fill=(200, 30, 30 + shade))
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return photo, mask
