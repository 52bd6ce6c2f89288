"""Safe image decoding and request-field validation (the light shared layer)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tryon.core import imaging, validation
from tryon.core.errors import RequestError


def test_decode_applies_exif_orientation():
    img = Image.new("RGB", (40, 20), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    decoded = imaging.decode_image(buf.getvalue())
    assert decoded.size == (20, 40)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "I;16"])
def test_to_rgb_handles_modes(mode):
    img = Image.new(mode, (8, 6))
    assert imaging.to_rgb(img).mode == "RGB"
    assert imaging.to_rgb(img).size == (8, 6)


def test_truncated_image_is_refused_with_field_name():
    data = imaging.encode_jpeg(Image.effect_noise((64, 64), 50).convert("RGB"))
    with pytest.raises(RequestError, match=r"^photo: could not be decoded"):
        imaging.decode_image(data[: len(data) // 2], field="photo")


def test_decompression_bomb_refused_before_decoding():
    # A 10000 x 10000 single-colour PNG compresses to a few hundred KB but is 100 MP.
    bomb = imaging.encode_png(Image.new("L", (10000, 10000)))
    assert len(bomb) < 1_000_000
    with pytest.raises(RequestError, match=r"image: is 10000x10000 = 100000000 pixels; the limit is"):
        imaging.decode_image(bomb)


def test_oversized_bytes_and_unknown_format_refused():
    with pytest.raises(RequestError, match="the limit is 10 bytes"):
        imaging.read_header(imaging.encode_png(Image.new("L", (4, 4))), max_bytes=10)
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="BMP")
    with pytest.raises(RequestError, match="has format BMP; allowed: JPEG, PNG, WEBP"):
        imaging.read_header(buf.getvalue())
    with pytest.raises(RequestError, match="not a decodable"):
        imaging.read_header(b"definitely not an image")


def test_base64_and_s3_uri_parsing():
    assert imaging.b64decode(imaging.b64encode(b"abc"), field="x") == b"abc"
    assert imaging.b64decode("data:image/png;base64," + imaging.b64encode(b"abc"), field="x") == b"abc"
    with pytest.raises(RequestError, match="x: is neither valid base64"):
        imaging.b64decode("***", field="x")
    assert imaging.parse_s3_uri("s3://b/k/e.png", field="x") == ("b", "k/e.png")
    with pytest.raises(RequestError, match="s3://bucket/key"):
        imaging.parse_s3_uri("s3://bucket-only", field="x")


def test_validation_names_field_and_limit():
    with pytest.raises(RequestError, match=r"steps: must be <= 150, got 500"):
        validation.get_int({"steps": 500}, "steps", maximum=150)
    with pytest.raises(RequestError, match=r"width: must be a multiple of 8, got 100"):
        validation.get_int({"width": 100}, "width", multiple_of=8)
    with pytest.raises(RequestError, match=r"seed: must be an integer, got 1.5"):
        validation.get_int({"seed": 1.5}, "seed")
    with pytest.raises(RequestError, match=r"steps: must be an integer, got bool"):
        validation.get_int({"steps": True}, "steps")
    with pytest.raises(RequestError, match=r"strength: must be > 0.0, got 0.0"):
        validation.get_float({"strength": 0}, "strength", minimum=0.0, exclusive_minimum=True)
    with pytest.raises(RequestError, match=r"queries\[1\]: must be a non-empty string"):
        validation.get_str_list({"queries": ["a", ""]}, "queries")
    assert validation.get_str_list({"queries": "a skirt"}, "queries") == ["a skirt"]
    assert validation.get_bool({"upscale": "yes"}, "upscale") is True
    with pytest.raises(RequestError, match=r"body: unknown field\(s\) stpes"):
        validation.reject_unknown({"stpes": 1}, {"steps"})
