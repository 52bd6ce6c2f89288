"""The preview image: input | garment | mask overlay | control images | result, side by side (Pillow).

The garment panel is there when the job has a packshot, the control images (depth map, pose
skeleton) when it kept the body.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageOps

from tryon.core import imaging

#: Height of each panel of the preview (smaller inputs keep their own height).
PREVIEW_HEIGHT = 512
OVERLAY_COLOUR = (255, 0, 64)
OVERLAY_ALPHA = 0.5


def mask_overlay(image: Image.Image, mask: Image.Image) -> Image.Image:
    """The image with the mask drawn over it in a translucent colour."""
    rgb = imaging.to_rgb(image)
    mask_l = mask.convert("L").resize(rgb.size, Image.Resampling.NEAREST)
    tint = Image.new("RGB", rgb.size, OVERLAY_COLOUR)
    blended = Image.blend(rgb, tint, OVERLAY_ALPHA)
    return Image.composite(blended, rgb, mask_l)


def garment_panel(garment: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The garment image fitted into a panel of the photo's ``size`` on white: every panel has one width."""
    return ImageOps.pad(imaging.to_rgb(garment), size, color=(255, 255, 255))


def control_panel(control: Image.Image, crop_box: Sequence[int] | None, size: tuple[int, int]) -> Image.Image:
    """A control image (made at the working size from the photo's crop) on black, in the photo's ``size``,
    resized into ``crop_box`` (left, top, right, bottom) where it lines up with the photo."""
    panel = Image.new("RGB", size, (0, 0, 0))
    left, top, right, bottom = crop_box if crop_box else (0, 0, *size)
    window = (max(1, right - left), max(1, bottom - top))
    panel.paste(imaging.to_rgb(control).resize(window, Image.Resampling.BILINEAR), (left, top))
    return panel


def compose_preview(panels: Sequence[Image.Image], height: int = PREVIEW_HEIGHT) -> Image.Image:
    """Panels side by side (input | garment | mask overlay | controls | result), scaled to one height."""
    target = min(height, max(p.height for p in panels))
    scaled = [
        imaging.to_rgb(p).resize(
            (max(1, round(p.width * target / p.height)), target), Image.Resampling.LANCZOS
        )
        for p in panels
    ]
    sheet = Image.new("RGB", (sum(p.width for p in scaled), target), (255, 255, 255))
    x = 0
    for panel in scaled:
        sheet.paste(panel, (x, 0))
        x += panel.width
    return sheet
