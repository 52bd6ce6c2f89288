"""An image named by s3:// URI may weigh what a PNG of the pixel limit weighs: the workflow's own lossless
PNGs (an outfit's earlier pass, an inpainted image to upscale) of an accepted photo must be readable."""

from __future__ import annotations

import pytest
from support.images import encode, noise_image

from tryon.core import imaging
from tryon.core.errors import RequestError
from tryon.handlers.common import load_image

BUCKET = "results-bucket"


def _noisy_png(width: int, height: int) -> bytes:
    return encode(noise_image((width, height)), compress_level=1)


@pytest.fixture(scope="module")
def big_png() -> bytes:
    data = _noisy_png(1800, 1700)  # 3 MP of noise: about 9 MiB however it is compressed
    assert len(data) > imaging.DEFAULT_MAX_BYTES
    return data


def test_a_stored_png_over_the_upload_limit_is_read(moto_s3, big_png):
    s3 = moto_s3(BUCKET)
    s3.put_object(Bucket=BUCKET, Key="results/p/job/inpainted-lower-body-0.png", Body=big_png)
    image = load_image({"image": f"s3://{BUCKET}/results/p/job/inpainted-lower-body-0.png"}, "image")
    assert image.size == (1800, 1700)


def test_inline_images_keep_the_upload_limit(big_png):
    with pytest.raises(RequestError, match=f"the limit is {imaging.DEFAULT_MAX_BYTES} bytes") as caught:
        load_image({"image": imaging.b64encode(big_png)}, "image")
    assert caught.value.field == "image"


def test_the_stored_limit_covers_any_png_of_the_pixel_limit():
    # uncompressed RGBA at 4 bytes a pixel, a filter byte a row (1-pixel-wide worst case), zlib's overhead
    assert imaging.MAX_STORED_IMAGE_BYTES >= 5 * imaging.DEFAULT_MAX_PIXELS
    small = _noisy_png(64, 48)
    assert len(small) < imaging.stored_png_bound(64 * 48)
