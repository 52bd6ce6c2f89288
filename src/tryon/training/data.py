"""Instance and class image folders: safe decoding, captions, mask files, clear reports.

A data folder holds JPEG/PNG/WebP photos of any size (EXIF orientation is applied by
:func:`tryon.core.imaging.decode_image`), optional captions ``<stem>.txt`` and optional garment
masks ``<stem>.mask.png`` next to them (or ``<stem>.png`` / ``<stem>.mask.png`` in a
separate mask folder). Files that cannot be used are skipped and listed with the reason;
a folder with no usable image is an error that lists them; fewer than
:data:`MIN_RECOMMENDED_IMAGES` images is a warning. Light: Pillow only.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from tryon.core import imaging
from tryon.core.errors import RequestError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
MASK_SUFFIX = ".mask.png"
CAPTION_SUFFIX = ".txt"
MIN_RECOMMENDED_IMAGES = 5
#: Training photos may be large camera images; 8 MiB per file is too tight for them.
MAX_IMAGE_BYTES = 40 * 1024 * 1024


class FewImagesWarning(UserWarning):
    """Fewer instance images than DreamBooth needs to generalise."""


@dataclass
class Sample:
    """One usable training image with its optional caption and garment mask (mode L)."""

    path: Path
    image: Image.Image
    caption: str | None = None
    mask: Image.Image | None = None
    mask_path: Path | None = None


@dataclass
class FolderReport:
    """What a folder scan kept and what it skipped (``(file name, reason)``)."""

    folder: Path
    samples: list[Sample] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def skipped_text(self) -> str:
        """One ``name: reason`` line per skipped file."""
        return "\n".join(f"  - {name}: {reason}" for name, reason in self.skipped)


def _is_mask_file(path: Path) -> bool:
    return path.name.lower().endswith(MASK_SUFFIX)


def _decode(path: Path, field_name: str) -> Image.Image:
    return imaging.decode_image(path.read_bytes(), field=field_name, max_bytes=MAX_IMAGE_BYTES)


def _find_mask(image_path: Path, mask_dir: Path | None) -> Path | None:
    stem = image_path.stem
    candidates = [image_path.with_name(stem + MASK_SUFFIX)]
    if mask_dir is not None:
        candidates += [mask_dir / (stem + MASK_SUFFIX), mask_dir / (stem + ".png")]
    return next((c for c in candidates if c.is_file()), None)


def load_mask_file(mask_path: Path, image: Image.Image) -> Image.Image:
    """Decode a garment mask and check it matches its (EXIF-oriented) image size.

    Any non-zero pixel is inside the mask. Raises RequestError naming the mask file.
    """
    mask = _decode(mask_path, f"mask {mask_path.name}")
    if mask.size != image.size:
        raise RequestError(
            "mask_dir",
            f"mask {mask_path.name} is {mask.width}x{mask.height} but its image is "
            f"{image.width}x{image.height} (after EXIF orientation); masks must match their image size",
        )
    return mask.convert("L").point(lambda v: 255 if v > 0 else 0)


def scan_folder(
    folder: str | Path,
    *,
    field_name: str,
    mask_dir: str | Path | None = None,
    with_masks: bool = False,
) -> FolderReport:
    """Load every usable image in ``folder`` (not recursive, sorted by name).

    Unsupported or undecodable files are skipped and recorded with the reason. Mask files
    that do not match their image raise RequestError (a silent skip would train on a wrong
    mask). Raises RequestError if the folder is missing or has no usable image.
    """
    root = Path(folder)
    if not root.is_dir():
        raise RequestError(field_name, f"{root} is not a folder")
    masks_root = Path(mask_dir) if mask_dir else None
    if masks_root is not None and not masks_root.is_dir():
        raise RequestError("mask_dir", f"{masks_root} is not a folder")
    report = FolderReport(root)
    for path in sorted(p for p in root.iterdir() if not p.name.startswith(".")):
        if path.is_dir():
            report.skipped.append((path.name, "is a folder (folders are not searched)"))
            continue
        suffix = path.suffix.lower()
        if suffix == CAPTION_SUFFIX or _is_mask_file(path):
            continue  # captions and masks belong to an image
        if suffix not in IMAGE_SUFFIXES:
            report.skipped.append(
                (path.name, f"unsupported extension {suffix or '(none)'}; use JPEG/PNG/WebP")
            )
            continue
        try:
            image = imaging.to_rgb(_decode(path, path.name))
        except RequestError as exc:
            report.skipped.append((path.name, exc.detail))
            continue
        except OSError as exc:
            report.skipped.append((path.name, f"could not be read: {exc}"))
            continue
        caption_path = path.with_suffix(CAPTION_SUFFIX)
        caption = caption_path.read_text(encoding="utf-8").strip() if caption_path.is_file() else None
        sample = Sample(path=path, image=image, caption=caption or None)
        if with_masks:
            mask_path = _find_mask(path, masks_root)
            if mask_path is not None:
                sample.mask = load_mask_file(mask_path, image)
                sample.mask_path = mask_path
        report.samples.append(sample)
    for name, reason in report.skipped:
        logger.warning("skipped %s: %s", name, reason)
    if not report.samples:
        detail = f"no usable images in {root}"
        if report.skipped:
            detail += f"; skipped {len(report.skipped)} file(s):\n{report.skipped_text()}"
        else:
            detail += " (the folder is empty; add JPEG, PNG or WebP photos)"
        raise RequestError(field_name, detail)
    return report


def load_instance_images(
    folder: str | Path, *, mask_dir: str | Path | None = None, min_recommended: int = MIN_RECOMMENDED_IMAGES
) -> FolderReport:
    """Scan the instance folder (with masks); warn below ``min_recommended`` images."""
    report = scan_folder(folder, field_name="instance_data_dir", mask_dir=mask_dir, with_masks=True)
    count = len(report.samples)
    if count < min_recommended:
        warnings.warn(
            f"instance_data_dir: only {count} usable image(s) in {report.folder}; DreamBooth needs at "
            f"least {min_recommended} (about 12 is typical) to learn the garment rather than the photos",
            FewImagesWarning,
            stacklevel=2,
        )
    return report


def list_image_files(folder: str | Path) -> list[Path]:
    """Image files (by extension) in a folder, sorted; empty if the folder does not exist."""
    root = Path(folder)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not _is_mask_file(p))


def fit_square(
    img: Image.Image, resolution: int, *, center_crop: bool = True, resample: int = Image.Resampling.BICUBIC
) -> Image.Image:
    """Resize to ``resolution`` x ``resolution``: shorter side then a centre crop, or a plain resize."""
    if not center_crop:
        return img.resize((resolution, resolution), resample=resample)
    width, height = _scaled_size(img.size, resolution)
    top, left = square_crop_origin(img.size, resolution, center_crop=True)
    resized = img.resize((width, height), resample=resample)
    return resized.crop((left, top, left + resolution, top + resolution))


def _scaled_size(size: tuple[int, int], resolution: int) -> tuple[int, int]:
    scale = resolution / min(size)
    return max(resolution, round(size[0] * scale)), max(resolution, round(size[1] * scale))


def square_crop_origin(
    size: tuple[int, int], resolution: int, *, center_crop: bool = True
) -> tuple[int, int]:
    """(top, left) of the square :func:`fit_square` cuts from an image of ``size`` (after its resize).

    SDXL is conditioned on it (with the original size); (0, 0) when the image is only resized.
    """
    if not center_crop:
        return 0, 0
    width, height = _scaled_size(size, resolution)
    return (height - resolution) // 2, (width - resolution) // 2
