"""SDXL inpainting goes through the same handler path (the tiny random SDXL checkpoint)."""

from __future__ import annotations

import numpy as np
import pytest
from support.images import pixels

from tryon.core.errors import RequestError
from tryon.local.samples import box_mask, inpaint_request, noise_image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sdxl(inpaint_handler, sdxl_model):
    return inpaint_handler, sdxl_model


PHOTO = noise_image((300, 200), seed=3)
MASK = box_mask(PHOTO.size, (100, 50, 180, 120))
REQUEST = inpaint_request(PHOTO, MASK, seed=5)


def test_sdxl_loads_through_the_same_path(sdxl):
    from diffusers import StableDiffusionXLInpaintPipeline

    _, model = sdxl
    assert isinstance(model.pipe, StableDiffusionXLInpaintPipeline)
    assert model.is_sdxl and model.working_resolution == 1024
    assert model.default_adapter is None and model.adapters.loaded() == []


def test_sdxl_inpaints_at_an_sdxl_size_and_keeps_outside_pixels(sdxl):
    handler, model = sdxl
    response = handler.predict_fn(
        {**REQUEST, "width": 1216, "height": 832, "sampler": "EulerEDMSampler"}, model
    )
    assert response["working_size"] == [1216, 832]
    assert response["adapter"] is None and response["sampler"] == "EulerEDMSampler"
    out = pixels(response["images"][0])
    assert out.shape == (200, 300, 3)
    outside = np.asarray(MASK) == 0
    np.testing.assert_array_equal(out[outside], np.asarray(PHOTO)[outside])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"width": 512, "height": 512}, r"^width: 512x512 is not an SDXL size; allowed: .*1024x1024"),
        ({"height": 1001}, r"^height: must be a multiple of 8"),
        ({"height": 896}, r"^height: 1024x896 is not an SDXL size"),
        ({"cfg_scale": 36, "guidance_scale": None}, r"^cfg_scale: must be <= 35"),
    ],
)
def test_sdxl_rules(sdxl, fields, message):
    handler, model = sdxl
    with pytest.raises(RequestError, match=message):
        handler.predict_fn({**REQUEST, **fields}, model)


def test_a_lora_for_another_unet_is_a_client_error_and_leaves_the_pipeline_intact(sdxl):
    handler, model = sdxl
    before = handler.predict_fn(REQUEST, model)["images"]
    message = r"^adapter: 'sd2-lora' could not be loaded as a LoRA: .*size mismatch"
    with pytest.raises(RequestError, match=message):
        handler.predict_fn({**REQUEST, "adapter": "sd2-lora"}, model)
    assert model.adapters.loaded() == [] and model.pipe.get_list_adapters() == {"unet": []}
    assert handler.predict_fn(REQUEST, model)["images"] == before
