"""The endpoints' PNG writer: standard files any decoder reads, shared parts compressed once."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tryon.handlers import png_writer


@pytest.fixture(autouse=True)
def _small_fragments(monkeypatch):
    """Small images still split into several fragments (and spans) per image."""
    monkeypatch.setattr(png_writer, "FRAGMENT_BYTES", 600)


def _chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk, each CRC checked."""
    assert png[:8] == png_writer.PNG_SIGNATURE
    pos, out = 8, []
    while pos < len(png):
        (size,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + size]
        (crc,) = struct.unpack(">I", png[pos + 8 + size : pos + 12 + size])
        assert zlib.crc32(data, zlib.crc32(kind)) == crc, kind
        out.append((kind, data))
        pos += 12 + size
    return out


def _decoded(png: bytes) -> np.ndarray:
    """Pixels as Pillow decodes them, after zlib itself checked the whole stream (Adler-32 included)."""
    chunks = _chunks(png)
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    zlib.decompress(b"".join(data for kind, data in chunks if kind == b"IDAT"))
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return np.asarray(image)


def _noise(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("shape", [(1, 1, 3), (5, 7), (61, 40, 3), (33, 64, 4), (200, 150, 3)])
def test_encode_png_round_trips_every_mode(shape):
    pixels = _noise(shape, 1)
    assert np.array_equal(_decoded(png_writer.encode_png(pixels)), pixels)
    image = Image.fromarray(pixels)
    assert np.array_equal(_decoded(png_writer.encode_png(image)), pixels)


def test_encode_png_converts_other_modes():
    palette = Image.fromarray(_noise((20, 30, 3), 2)).convert("P")
    assert np.array_equal(_decoded(png_writer.encode_png(palette)), np.asarray(palette.convert("RGB")))


def test_smooth_images_compress():
    ramp = np.tile(np.arange(256, dtype=np.uint8), (300, 4)).reshape(300, 256, 4)[..., :3]
    png = png_writer.encode_png(ramp)
    assert np.array_equal(_decoded(png), ramp)
    assert len(png) < ramp.nbytes / 20


def test_adler32_combine_matches_zlib():
    a, b = b"the first part" * 1000, b"and the second" * 777
    combined = png_writer.adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b))
    assert combined == zlib.adler32(a + b)


@pytest.mark.parametrize(
    "box",
    [
        (0, 0, 120, 90),  # the whole image
        (0, 0, 60, 1),  # the first row's left half
        (115, 80, 120, 90),  # the bottom-right corner
        (10, 30, 111, 70),  # in the middle
        (1, 1, 119, 89),  # all but a one-pixel frame
        (40, 0, 41, 90),  # one column, every row
    ],
)
@pytest.mark.parametrize("channels", [3, 1, 4])
def test_window_encoder_writes_each_image_exactly(box, channels):
    shape = (90, 120, channels) if channels > 1 else (90, 120)
    base = _noise(shape, 3)
    left, top, right, bottom = box
    encoder = png_writer.WindowEncoder(base, box)
    for seed in (4, 5):
        image = base.copy()
        image[top:bottom, left:right] = _noise(image[top:bottom, left:right].shape, seed)
        assert np.array_equal(_decoded(encoder.encode(image[top:bottom, left:right])), image)
    assert np.array_equal(_decoded(encoder.encode(base[top:bottom, left:right])), base)


def test_window_encoder_compresses_the_shared_parts_once(monkeypatch):
    calls: list[int] = []
    deflate = png_writer._deflate

    def counting(data):
        calls.append(len(data))
        return deflate(data)

    monkeypatch.setattr(png_writer, "_deflate", counting)
    height, width = 80, 100
    base = _noise((height, width, 3), 6)
    box = (20, 30, 50, 60)  # 30 x 30 pixels of 100 x 80
    encoder = png_writer.WindowEncoder(base, box)
    pngs = [encoder.start(_noise((30, 30, 3), 7 + i)) for i in range(4)]
    for png in pngs:
        png.result()
    compressed = sum(calls)
    scanlines = height * (width * 3 + 1)
    window = 30 * 30 * 3
    # the photo's bytes once, then each image's window: not four whole images
    assert compressed == scanlines + 3 * window
    assert compressed < 2 * scanlines


def test_window_encoder_refuses_what_does_not_fit():
    base = _noise((40, 50, 3), 8)
    with pytest.raises(ValueError, match="is not a window"):
        png_writer.WindowEncoder(base, (10, 10, 60, 20))
    encoder = png_writer.WindowEncoder(base, (10, 10, 20, 20))
    with pytest.raises(ValueError, match="does not fit box"):
        encoder.start(_noise((10, 11, 3), 9))
    with pytest.raises(ValueError, match="does not fit box"):
        encoder.start(_noise((10, 10), 9))
