"""Garment reference images (IP-Adapter) on the tiny inpainting model: conditioning, LoRA, limits."""

from __future__ import annotations

import boto3
import numpy as np
import pytest
from moto import mock_aws
from PIL import Image
from support.handlers import invoke
from support.images import box_mask, encode, noise_image, pixels

from tryon.core.errors import RequestError
from tryon.core.imaging import b64encode, encode_jpeg, encode_png
from tryon.handlers import ip_adapter
from tryon.local.samples import assemble_inpaint_model

pytestmark = pytest.mark.slow

PHOTO_SIZE = (120, 90)
MASK_BOX = (30, 20, 90, 70)


GARMENT = noise_image((48, 64), 7)
BASE = {
    "image": b64encode(encode_png(noise_image(PHOTO_SIZE, 1))),
    "mask": b64encode(encode_png(box_mask(PHOTO_SIZE, MASK_BOX))),
    "prompt": "a red linen shirt",
    "steps": 2,
    "seed": 99,
    "adapter": "none",
}
WITH_GARMENT = {**BASE, "garment_image": b64encode(encode_png(GARMENT)), "garment_scale": 1.0}


@pytest.fixture(scope="module")
def handler(inpaint_handler):
    return inpaint_handler


@pytest.fixture(scope="module")
def with_ip(handler, tiny_models, tmp_path_factory):
    """The tiny model with the tiny IP-Adapter and a named LoRA adapter (lora-a)."""
    root = tmp_path_factory.mktemp("with-ip") / "model"
    folder = assemble_inpaint_model(tiny_models["sd-inpaint-ip"], {"lora-a": tiny_models["lora-a"]}, root)
    return handler.model_fn(str(folder))


@pytest.fixture(scope="module")
def without_ip(inpaint_model):
    return inpaint_model


def _run(handler, model, request: dict) -> dict:
    return invoke(handler, model, request)


def _pixels(response: dict) -> np.ndarray:
    return pixels(response["images"][0], "RGB")


def test_garment_image_conditions_the_masked_region_only(handler, with_ip):
    plain = _run(handler, with_ip, BASE)
    dressed = _run(handler, with_ip, WITH_GARMENT)
    a, b = _pixels(plain), _pixels(dressed)
    left, top, right, bottom = MASK_BOX
    inside = np.zeros(a.shape[:2], bool)
    inside[top:bottom, left:right] = True
    assert np.abs(a.astype(int) - b.astype(int))[inside].max() > 0, "the garment image changed nothing"
    assert np.array_equal(a[~inside], b[~inside]), "pixels outside the mask must stay the photo's"
    assert plain["garment"] is None
    assert dressed["garment"] == {"ip_adapter": "ip-adapter.safetensors", "scale": 1.0, "size": [48, 64]}


def test_scale_zero_equals_no_garment_equals_a_model_without_ip_adapter(handler, with_ip, without_ip):
    """Scale 0 skips the image tokens: the IP-Adapter costs a request without a garment nothing in output."""
    plain = _pixels(_run(handler, with_ip, BASE))
    assert np.array_equal(_pixels(_run(handler, with_ip, {**WITH_GARMENT, "garment_scale": 0.0})), plain)
    assert np.array_equal(_pixels(_run(handler, without_ip, BASE)), plain)
    # without classifier-free guidance the zero embeddings take the other shape
    unguided = {**BASE, "guidance_scale": 1.0}
    assert np.array_equal(
        _pixels(_run(handler, with_ip, unguided)), _pixels(_run(handler, without_ip, unguided))
    )


def test_garment_composes_with_a_lora_adapter(handler, with_ip):
    lora = {"adapter": "lora-a", "adapter_scale": 1.0}
    both = _run(handler, with_ip, {**WITH_GARMENT, **lora})
    lora_only = _pixels(_run(handler, with_ip, {**BASE, **lora}))
    garment_only = _pixels(_run(handler, with_ip, WITH_GARMENT))
    assert both["adapter"] == {"name": "lora-a", "scale": 1.0} and both["garment"]["scale"] == 1.0
    assert not np.array_equal(_pixels(both), lora_only)
    assert not np.array_equal(_pixels(both), garment_only)
    # and the LoRA is off again for the next request: same as before it was used
    assert np.array_equal(_pixels(_run(handler, with_ip, WITH_GARMENT)), garment_only)


def test_model_without_ip_adapter_refuses_garment_naming_the_models_that_take_it(handler, without_ip):
    with pytest.raises(RequestError) as info:
        _run(handler, without_ip, WITH_GARMENT)
    assert info.value.field == "garment_image"
    assert "no IP-Adapter" in str(info.value) and "SD 1.5 and SDXL" in str(info.value)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"garment_scale": 0.5}, "garment_scale", "needs garment_image"),
        ({**WITH_GARMENT, "garment_scale": 2.5}, "garment_scale", "must be <= 2.0"),
        ({**WITH_GARMENT, "garment_scale": "high"}, "garment_scale", "must be a number"),
        ({"garment_image": "not base64!"}, "garment_image", "neither valid base64 nor an s3:// URI"),
        ({"garment_image": 12}, "garment_image", "must be a base64 string"),
    ],
)
def test_bad_garment_fields(handler, with_ip, fields, field, message):
    with pytest.raises(RequestError) as info:
        _run(handler, with_ip, {**BASE, **fields})
    assert info.value.field == field and message in str(info.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (encode_png(Image.new("L", (10000, 10000))), "10000x10000 = 100000000 pixels; the limit is"),
        (
            encode_jpeg(GARMENT)[: len(encode_jpeg(GARMENT)) // 2],
            "could not be decoded (truncated or corrupt)",
        ),
        (encode(GARMENT, "GIF"), "has format GIF; allowed: JPEG, PNG, WEBP"),
        (b"%PDF-1.7 not an image", "is not a decodable PNG, JPEG or WebP image"),
    ],
    ids=["bomb", "truncated", "gif", "pdf"],
)
def test_bad_garment_images_are_refused_before_inference(handler, with_ip, data, message):
    request = {**BASE, "garment_image": b64encode(data)}
    with pytest.raises(RequestError) as info:
        _run(handler, with_ip, request)
    assert info.value.field == "garment_image" and message in str(info.value)


def test_transparent_packshot_and_versioned_s3_garment(handler, with_ip):
    """A PNG with alpha is composited on white; an s3:// garment is read at the version named, untouched."""
    cutout = GARMENT.convert("RGBA")
    cutout.putalpha(Image.new("L", GARMENT.size, 0))  # fully transparent: the garment is plain white
    white = Image.new("RGB", GARMENT.size, (255, 255, 255))
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="packshots")
        s3.put_bucket_versioning(Bucket="packshots", VersioningConfiguration={"Status": "Enabled"})
        first = s3.put_object(Bucket="packshots", Key="skirt.png", Body=encode_png(cutout))["VersionId"]
        s3.put_object(Bucket="packshots", Key="skirt.png", Body=encode_png(GARMENT))
        uri = f"s3://packshots/skirt.png?versionId={first}"
        from_s3 = _run(handler, with_ip, {**WITH_GARMENT, "garment_image": uri})
        versions = s3.list_object_versions(Bucket="packshots")["Versions"]
        assert len(versions) == 2  # nothing written or deleted
    assert from_s3["garment"]["size"] == [48, 64]
    on_white = _run(handler, with_ip, {**WITH_GARMENT, "garment_image": b64encode(encode_png(white))})
    assert np.array_equal(_pixels(from_s3), _pixels(on_white))


def test_ip_adapter_folder_layout_errors(tmp_path, tiny_models):
    folder = tmp_path / "ip_adapter"
    folder.mkdir()
    with pytest.raises(
        ip_adapter.IPAdapterLayoutError, match=r"exactly one IP-Adapter weight file.*found: none"
    ):
        ip_adapter.weight_file(folder)
    for name in ("a.safetensors", "b.bin"):
        (folder / name).write_bytes(b"x")
    with pytest.raises(ip_adapter.IPAdapterLayoutError, match=r"found: a\.safetensors, b\.bin"):
        ip_adapter.weight_file(folder)
    (folder / "b.bin").unlink()
    with pytest.raises(ip_adapter.IPAdapterLayoutError, match="no image_encoder/"):
        ip_adapter.weight_file(folder)
    assert ip_adapter.weight_file(tiny_models["ip-adapter"]).name == "ip-adapter.safetensors"
    assert ip_adapter.find(tmp_path) == folder and ip_adapter.find(tmp_path / "nothing") is None


def test_sdxl_takes_an_ip_adapter_made_for_it_and_refuses_one_made_for_another_unet(
    handler, tiny_models, tmp_path
):
    """IP-Adapters are made per base: SDXL's fits SDXL; the SD one (another cross-attention width) cannot."""
    import shutil

    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    from tryon.weights.tiny import ip_adapter_weights

    sdxl_ip = tmp_path / "sdxl-ip-adapter"
    shutil.copytree(tiny_models["ip-adapter"] / "image_encoder", sdxl_ip / "image_encoder")
    torch.manual_seed(5)
    unet = UNet2DConditionModel.from_pretrained(tiny_models["sdxl-inpaint"] / "unet")
    save_file(ip_adapter_weights(unet, 32), str(sdxl_ip / "ip-adapter_sdxl.safetensors"))
    model = handler.model_fn(
        str(assemble_inpaint_model(tiny_models["sdxl-inpaint"], {}, tmp_path / "sdxl", ip_adapter=sdxl_ip))
    )
    request = {**BASE, "steps": 1, "guidance_scale": 1.0, "width": 1024, "height": 1024}
    plain = _pixels(_run(handler, model, request))
    dressed = _run(handler, model, {**request, "garment_image": WITH_GARMENT["garment_image"]})
    assert dressed["garment"]["ip_adapter"] == "ip-adapter_sdxl.safetensors"
    assert not np.array_equal(_pixels(dressed), plain)
    zero = {**request, "garment_image": WITH_GARMENT["garment_image"], "garment_scale": 0.0}
    assert np.array_equal(_pixels(_run(handler, model, zero)), plain)

    wrong = assemble_inpaint_model(
        tiny_models["sdxl-inpaint"], {}, tmp_path / "sdxl-with-sd-ip", ip_adapter=tiny_models["ip-adapter"]
    )
    with pytest.raises(ip_adapter.IPAdapterLayoutError, match="could not be loaded into this model's UNet"):
        handler.model_fn(str(wrong))
