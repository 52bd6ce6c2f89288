"""Pictures for tests, made by code, and the encodings requests and uploads carry them in.

The photos and masks the CLI and the benchmarks use come from :mod:`tryon.local.samples`
(``sample_photo``, ``noise_image``, ``box_mask``, re-exported here); this module adds what only
tests need: flat and structured pictures, files on disk, base64 both ways.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image

from tryon.local.samples import box_mask, noise_image, sample_photo

__all__ = [
    "b64",
    "box_mask",
    "decode",
    "encode",
    "flat_png",
    "gradient_photo",
    "noise_image",
    "pixels",
    "sample_photo",
    "save_photo",
    "structured_photo",
]


def encode(img: Image.Image, fmt: str = "PNG", **save: object) -> bytes:
    """``img`` encoded as ``fmt`` (Pillow's ``save`` options in ``save``)."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def b64(img: Image.Image, fmt: str = "PNG", **save: object) -> str:
    """Base64 text of ``img`` encoded as ``fmt``: an image field of an endpoint request."""
    return base64.b64encode(encode(img, fmt, **save)).decode()


def flat_png(
    size: tuple[int, int] = (40, 30), color: int | tuple[int, ...] = 128, mode: str = "RGB"
) -> bytes:
    """PNG bytes of a one-colour picture: an upload whose pixels do not matter."""
    return encode(Image.new(mode, size, color))


def gradient_photo(size: tuple[int, int] = (64, 48), angle: int = 0) -> Image.Image:
    """A radial-gradient RGB "photo" of ``size`` (width, height), turned by ``angle`` degrees
    (another photo with the same size)."""
    return Image.radial_gradient("L").rotate(angle).resize(size).convert("RGB")


def save_photo(
    path: Path, size: tuple[int, int] = (64, 48), fmt: str | None = None, *, angle: int = 0
) -> Path:
    """Write :func:`gradient_photo` to ``path`` (format from the suffix unless ``fmt``); returns it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    gradient_photo(size, angle).save(path, format=fmt)
    return path


def structured_photo(width: int, height: int, *, block: bool = False) -> Image.Image:
    """A deterministic non-flat RGB picture: x and y gradients and their product, and with ``block``
    a red rectangle in the upper middle (something for a segmenter to find)."""
    yy, xx = np.mgrid[0:height, 0:width]
    arr = np.stack([xx * 255 // max(1, width - 1), yy * 255 // max(1, height - 1), (xx * yy) % 256], axis=-1)
    if block:
        arr[height // 4 : height // 2, width // 3 : width // 2] = (250, 30, 30)
    return Image.fromarray(arr.astype(np.uint8))


def decode(data: bytes | str, fmt: str | None = None) -> Image.Image:
    """The image in ``data`` (bytes, or base64 text as endpoints answer), fully loaded; with ``fmt``
    it must be in that format."""
    raw = base64.b64decode(data) if isinstance(data, str) else data
    img = Image.open(io.BytesIO(raw))
    if fmt is not None:
        assert img.format == fmt, f"expected {fmt}, got {img.format}"
    img.load()
    return img


def pixels(data: bytes | str, mode: str | None = None) -> np.ndarray:
    """The pixels of the image in ``data`` (see :func:`decode`), converted to ``mode`` if given."""
    img = decode(data)
    return np.asarray(img.convert(mode) if mode else img)
