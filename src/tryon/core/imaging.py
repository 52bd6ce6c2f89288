"""Safe image decoding and encoding (Pillow only: used by Lambda functions and handlers).

Every image that enters the system goes through :func:`decode_image`, which enforces a
byte limit, a pixel limit checked *before* decoding (decompression bombs), an allow-list
of formats, a full decode (truncated files fail here, not later) and EXIF orientation.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from tryon.core.errors import RequestError
from tryon.core.s3uri import parse_s3_uri as parse_s3_uri  # where the handlers' tests find it

ALLOWED_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})
#: 8 MiB of encoded bytes per image.
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
#: 36 megapixels (e.g. 6000 x 6000); larger images are refused before decoding.
DEFAULT_MAX_PIXELS = 36_000_000


def stored_png_bound(pixels: int) -> int:
    """The most bytes a PNG of ``pixels`` pixels can take: stored without compression, 4 bytes a
    pixel (RGBA), a filter byte a row (at most one a pixel), zlib's and the chunks' overhead."""
    return 5 * pixels + pixels // 100 + 1024 * 1024


#: Byte limit of an image named by ``s3://`` URI: a PNG of the pixel limit, whatever it holds. The
#: workflow's own images (an outfit's earlier pass, an inpainted image to upscale) are lossless
#: PNGs of the photo's size and may weigh far more than the JPEG upload (a 12 MP photo with sensor
#: noise: about 21 MiB); the pixel limit, checked from the header before decoding, bounds memory.
#: Uploads (Prepare) and inline base64 images keep :data:`DEFAULT_MAX_BYTES`.
MAX_STORED_IMAGE_BYTES = stored_png_bound(DEFAULT_MAX_PIXELS)


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says, read without decoding the pixels."""

    format: str
    width: int
    height: int
    mode: str
    #: EXIF orientation (1..8; 1 when absent): 5..8 turn the image a quarter, so
    #: :func:`decode_image` answers ``height`` x ``width``.
    orientation: int = 1

    @property
    def oriented_size(self) -> tuple[int, int]:
        """(width, height) as decoded and shown: after the EXIF orientation."""
        return (self.height, self.width) if self.orientation in _QUARTER_TURNS else (self.width, self.height)


#: EXIF orientations that swap width and height (transpose, rotate 90/270, transverse).
_QUARTER_TURNS = frozenset({5, 6, 7, 8})
#: The EXIF tag holding the orientation.
_ORIENTATION_TAG = 0x0112


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # a broken EXIF block: decode_image's exif_transpose ignores it too
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def read_header(
    data: bytes,
    *,
    field: str = "image",
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ImageHeader:
    """Check size, format and pixel count from the header alone; raise RequestError."""
    if not data:
        raise RequestError(field, "is empty")
    if len(data) > max_bytes:
        raise RequestError(field, f"is {len(data)} bytes; the limit is {max_bytes} bytes")
    try:
        with Image.open(io.BytesIO(data)) as img:
            header = ImageHeader(img.format or "", img.width, img.height, img.mode, _orientation(img))
    except Image.DecompressionBombError as exc:
        raise RequestError(field, f"refused as a decompression bomb ({exc})") from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise RequestError(field, "is not a decodable PNG, JPEG or WebP image") from exc
    if header.format not in ALLOWED_FORMATS:
        raise RequestError(
            field, f"has format {header.format or 'unknown'}; allowed: {', '.join(sorted(ALLOWED_FORMATS))}"
        )
    pixels = header.width * header.height
    if pixels > max_pixels:
        raise RequestError(
            field,
            f"is {header.width}x{header.height} = {pixels} pixels; the limit is {max_pixels} pixels",
        )
    return header


def decode_image(
    data: bytes,
    *,
    field: str = "image",
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Decode fully, apply EXIF orientation, and return the image in its own mode.

    Raises RequestError naming ``field`` for oversized, unknown, truncated or bomb inputs.
    """
    read_header(data, field=field, max_bytes=max_bytes, max_pixels=max_pixels)
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            oriented = ImageOps.exif_transpose(img)
            oriented.load()
    except Image.DecompressionBombError as exc:
        raise RequestError(field, f"refused as a decompression bomb ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise RequestError(field, f"could not be decoded (truncated or corrupt): {exc}") from exc
    return oriented


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any mode (L, LA, P, RGBA, I;16, CMYK ...) to RGB; alpha is composited on white."""
    if img.mode == "RGB":
        return img
    if img.mode in {"RGBA", "LA", "PA"} or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def encode_png(img: Image.Image, *, compress_level: int = 6) -> bytes:
    """PNG bytes of an image (zlib ``compress_level`` 0..9; 1 is several times faster than 6)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def encode_jpeg(img: Image.Image, quality: int = 90) -> bytes:
    """JPEG bytes of an image (converted to RGB)."""
    buf = io.BytesIO()
    to_rgb(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def b64encode(data: bytes) -> str:
    """Base64 text of bytes."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, *, field: str) -> bytes:
    """Bytes of base64 text (a ``data:`` URL prefix is accepted); RequestError if malformed."""
    if not isinstance(text, str):
        raise RequestError(field, f"must be a base64 string or an s3:// URI, not {type(text).__name__}")
    if text.startswith("data:"):
        _, _, text = text.partition(",")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(field, "is neither valid base64 nor an s3:// URI") from exc
