"""SDXL inpainting goes through the same handler path (a tiny random SDXL checkpoint built here)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tryon.errors import RequestError
from tryon.imaging import b64encode, encode_png

pytestmark = pytest.mark.slow


def _build_tiny_sdxl_inpaint(out: Path) -> None:
    """StableDiffusionXLInpaintPipeline: two text encoders, text_time embeddings, 1024 px working size."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLInpaintPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from tryon.tiny_models import build_clip_tokenizer

    tokenizer = build_clip_tokenizer()
    vocab = len(tokenizer)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=128,  # x vae factor 8 = 1024 px, as SDXL
        in_channels=9,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,  # 6 size/crop ids + pooled text (32)
        cross_attention_dim=64,  # both text encoders' hidden states side by side
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        block_out_channels=[4, 4, 4, 4],
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        norm_num_groups=2,
        sample_size=1024,
    )
    text_config = CLIPTextConfig(
        bos_token_id=vocab - 2,
        eos_token_id=vocab - 1,
        pad_token_id=vocab - 1,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=vocab,
        projection_dim=32,
    )
    pipe = StableDiffusionXLInpaintPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(text_config),
        text_encoder_2=CLIPTextModelWithProjection(text_config),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
        ),
        requires_aesthetics_score=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every test here runs on one intra-op thread (see conftest)."""


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory, tiny_models):
    from tryon.handlers import sd_inpaint

    folder = tmp_path_factory.mktemp("tiny-sdxl-inpaint")
    _build_tiny_sdxl_inpaint(folder)
    (folder / "adapters").mkdir()
    (folder / "adapters" / "sd2-lora").symlink_to(tiny_models["lora-a"])  # made for the SD UNet
    return sd_inpaint, sd_inpaint.model_fn(str(folder))


PHOTO = Image.fromarray(np.random.default_rng(3).integers(0, 256, (200, 300, 3), dtype=np.uint8), "RGB")
MASK = Image.new("L", PHOTO.size, 0)
MASK.paste(255, (100, 50, 180, 120))
REQUEST = {
    "image": b64encode(encode_png(PHOTO)),
    "mask": b64encode(encode_png(MASK)),
    "prompt": "a denim jacket",
    "steps": 1,
    "guidance_scale": 1.0,
    "seed": 5,
}


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
    out = np.asarray(Image.open(io.BytesIO(base64.b64decode(response["images"][0]))))
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
