"""The SD inpainting handler on the tiny checkpoint: contract, crop-to-mask, samplers, LoRA adapters."""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.handlers import invoke
from support.images import b64, box_mask, decode, noise_image

from tryon.core.errors import RequestError
from tryon.core.imaging import b64encode, encode_png, to_rgb
from tryon.local.samples import assemble_inpaint_model

pytestmark = pytest.mark.slow

STEPS = 2
PHOTO_SIZE = (300, 200)  # non-square and larger than the tiny model's 64 px working size
MASK_BOX = (100, 50, 180, 120)


PHOTO = noise_image(PHOTO_SIZE)
BASE_REQUEST = {
    "image": b64(PHOTO),
    "mask": b64(box_mask(PHOTO_SIZE, MASK_BOX)),
    "prompt": "a red linen shirt",
    "steps": STEPS,
    "seed": 1234,
}


def _decode(data: str) -> Image.Image:
    return decode(data, "PNG")


def _pixels(response: dict, i: int = 0) -> np.ndarray:
    return np.asarray(_decode(response["images"][i]))


@pytest.fixture(scope="module")
def model_dir(tiny_models, tmp_path_factory) -> Path:
    """Base weights (symlinked) + default adapter (lora-a) + named adapters lora-a and lora-b."""
    adapters = {"lora-a": tiny_models["lora-a"], "lora-b": tiny_models["lora-b"]}
    adapters["lora.b"] = tiny_models["lora-b"]  # dotted: a peft-safe key is derived
    root = assemble_inpaint_model(
        tiny_models["sd-inpaint"], adapters, tmp_path_factory.mktemp("sd-inpaint-model")
    )
    (root / "adapter").symlink_to(tiny_models["lora-a"])
    return root


@pytest.fixture(scope="module")
def handler(inpaint_handler):
    return inpaint_handler


@pytest.fixture(scope="module")
def model(handler, model_dir):
    return handler.model_fn(str(model_dir))


def _run(handler, model, **fields) -> dict:
    request = {**BASE_REQUEST, **fields}
    return invoke(handler, model, {k: v for k, v in request.items() if v is not None})


# --- loading -----------------------------------------------------------------------------------


def test_model_fn_loads_pipeline_and_default_adapter(model, model_dir):
    from diffusers import StableDiffusionInpaintPipeline

    assert isinstance(model.pipe, StableDiffusionInpaintPipeline)
    assert model.working_resolution == 64  # unet sample_size 32 x vae factor 2
    assert model.is_sdxl is False
    assert model.model_id == str(model_dir)
    assert model.default_adapter is not None and model.default_adapter.name == "default"
    assert model.adapters.loaded() == ["default"]
    assert model.pipe.unet.dtype.is_floating_point and str(model.pipe.unet.dtype) == "torch.float32"
    assert isinstance(model.lock, type(threading.Lock()))


# --- happy path --------------------------------------------------------------------------------


def test_happy_path_contract(handler, model):
    response = _run(handler, model, num_images=2)
    assert set(response) == {
        "images",
        "seeds",
        "timings_ms",
        "model",
        "adapter",
        "sampler",
        "working_size",
        "crop_box",
        "garment",
        "compute_seconds",
        "refiner",
        "controls",
    }
    assert response["refiner"] is None  # an SD 2 model has no refiner
    assert response["controls"] is None  # keep_body none: no ControlNet ran
    assert len(response["images"]) == 2
    for encoded in response["images"]:
        img = _decode(encoded)
        assert img.size == PHOTO_SIZE and img.mode == "RGB"
    assert response["seeds"] == [1234, 1235]
    phases = {"decode", "preprocess", "queue", "inference", "postprocess", "encode"}
    assert set(response["timings_ms"]) == phases
    assert all(v >= 0 for v in response["timings_ms"].values())
    work = sum(v for k, v in response["timings_ms"].items() if k != "queue") / 1000
    assert response["compute_seconds"] == pytest.approx(work, abs=0.002) and work > 0
    assert response["adapter"] == {"name": "default", "scale": 1.0}
    assert response["sampler"] == "PNDMScheduler"
    assert response["working_size"] == [64, 64]
    assert response["crop_box"] == [68, 13, 212, 157]
    assert not np.array_equal(_pixels(response, 0), _pixels(response, 1))


def test_pixels_outside_mask_are_byte_identical(handler, model):
    mask = Image.new("L", PHOTO_SIZE, 0)
    mask.paste(255, (20, 30, 60, 170))  # tall region near the left border
    mask.paste(200, (250, 150, 290, 195))  # a second region: the crop spans both
    response = _run(handler, model, mask=b64(mask), padding=10)
    out = _pixels(response)
    outside = np.asarray(mask) <= 127
    np.testing.assert_array_equal(out[outside], np.asarray(PHOTO)[outside])
    assert np.any(out[~outside] != np.asarray(PHOTO)[~outside])
    # too wide for a square window in a 200 px high photo: the window spans the full height
    assert response["crop_box"] == [10, 0, 300, 200]


def test_working_size_override(handler, model):
    response = _run(handler, model, width=96, height=64)
    assert response["working_size"] == [96, 64]
    left, top, right, bottom = response["crop_box"]
    assert (right - left) / (bottom - top) == pytest.approx(1.5, abs=0.02)
    assert _decode(response["images"][0]).size == PHOTO_SIZE


def test_guidance_at_most_one_turns_cfg_off(handler, model):
    _run(handler, model, guidance_scale=1.0)
    assert model.pipe.do_classifier_free_guidance is False
    _run(handler, model, cfg_scale=5.0)
    assert model.pipe.do_classifier_free_guidance is True


def test_strength_below_one(handler, model):
    full = _pixels(_run(handler, model, steps=4))
    partial = _pixels(_run(handler, model, steps=4, strength=0.5))
    assert not np.array_equal(full, partial)


# --- seeds -------------------------------------------------------------------------------------


def test_seed_determinism_and_per_image_seeds(handler, model):
    first = _run(handler, model, num_images=2)
    again = _run(handler, model, num_images=2)
    assert first["images"] == again["images"]
    alone = _run(handler, model, seed=1235)  # image 1 of the batch, reproduced alone
    _assert_replays(_pixels(first, 1), _pixels(alone))
    assert _run(handler, model, seed=99)["images"][0] != first["images"][0]


def _assert_replays(batched: np.ndarray, alone: np.ndarray) -> None:
    """The documented tolerance of a batched image against its seed alone: values differ by at
    most 1/255, in under 0.1% of them (a larger batch rounds matrix products differently)."""
    diff = np.abs(batched.astype(int) - alone.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.001, (diff.max(), (diff > 0).mean())


@pytest.mark.parametrize(
    "fields",
    [{}, {"strength": 0.6, "steps": 4}, {"sampler": "EulerAncestralSampler", "steps": 3}],
    ids=["strength-1", "strength-0.6", "ancestral"],
)
def test_images_are_one_batched_call_and_each_replays_alone(handler, model, fields):
    def unet_batches(num_images: int) -> tuple[dict, list[int]]:
        batches: list[int] = []
        hook = model.pipe.unet.register_forward_pre_hook(lambda _m, args: batches.append(args[0].shape[0]))
        try:
            return _run(handler, model, num_images=num_images, **fields), batches
        finally:
            hook.remove()

    batched, batches = unet_batches(3)
    _, single = unet_batches(1)
    # as many UNet calls as for one image, each on all 3 images x (cond, uncond)
    assert set(batches) == {3 * 2} and len(batches) == len(single) > 0
    for i, seed in enumerate(batched["seeds"]):
        _assert_replays(_pixels(batched, i), _pixels(_run(handler, model, seed=seed, **fields)))


def test_drawn_seed_is_reported_and_replays(handler, model):
    drawn = _run(handler, model, seed=None)
    (seed,) = drawn["seeds"]
    assert isinstance(seed, int) and 0 <= seed <= 2**32 - 1
    assert _run(handler, model, seed=seed)["images"] == drawn["images"]


def test_seeds_wrap_at_the_limit(handler, model):
    response = _run(handler, model, seed=2**32 - 1, num_images=2)
    assert response["seeds"] == [2**32 - 1, 0]


# --- samplers ----------------------------------------------------------------------------------

SAMPLERS = {
    "EulerEDMSampler": "EulerDiscreteScheduler",
    "HeunEDMSampler": "HeunDiscreteScheduler",
    "EulerAncestralSampler": "EulerAncestralDiscreteScheduler",
    "DPMPP2SAncestralSampler": "DPMSolverSinglestepScheduler",
    "DPMPP2MSampler": "DPMSolverMultistepScheduler",
    "LinearMultistepSampler": "LMSDiscreteScheduler",
    "DDIMScheduler": "DDIMScheduler",
    "UniPCMultistepScheduler": "UniPCMultistepScheduler",
    "EulerDiscreteScheduler": "EulerDiscreteScheduler",
    "DPMSolverMultistepScheduler": "DPMSolverMultistepScheduler",
    "PNDMScheduler": "PNDMScheduler",
}


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_every_sampler_runs(handler, model, sampler):
    response = _run(handler, model, sampler=sampler)
    assert response["sampler"] == sampler
    assert type(model.pipe.scheduler).__name__ == SAMPLERS[sampler]
    assert _decode(response["images"][0]).size == PHOTO_SIZE
    assert _run(handler, model, sampler=sampler)["images"] == response["images"]


def test_samplers_give_different_images_and_edm_uses_karras(handler, model):
    euler = _run(handler, model, sampler="EulerEDMSampler")
    assert model.pipe.scheduler.config.use_karras_sigmas is True
    lms = _run(handler, model, sampler="LinearMultistepSampler")
    assert euler["images"] != lms["images"]
    assert model.schedulers.get("EulerEDMSampler") is model.schedulers.get("EulerEDMSampler")  # cached


def test_sampler_needing_a_missing_package_is_a_client_error(handler, model):
    from diffusers.utils import is_torchsde_available

    if is_torchsde_available():
        pytest.skip("torchsde is installed: DPMSolverSDEScheduler is available")
    with pytest.raises(RequestError, match=r"^sampler: 'DPMSolverSDEScheduler' is not available.*torchsde"):
        _run(handler, model, sampler="DPMSolverSDEScheduler")
    assert _decode(_run(handler, model)["images"][0]).size == PHOTO_SIZE  # the model still serves


# --- adapters ----------------------------------------------------------------------------------


def test_lora_changes_output_and_scale_zero_is_base(handler, model):
    base = _run(handler, model, adapter="none")
    assert base["adapter"] is None
    default = _run(handler, model)
    assert default["adapter"] == {"name": "default", "scale": 1.0}
    assert default["images"] != base["images"]
    zero = _run(handler, model, adapter_scale=0.0)
    assert zero["adapter"] == {"name": "default", "scale": 0.0}
    assert zero["images"] == base["images"]
    half = _run(handler, model, adapter_scale=0.5)
    assert half["images"] not in (base["images"], default["images"])


def test_switching_adapters_never_reloads_the_base(handler, model):
    pipe, unet = model.pipe, model.pipe.unet
    a1 = _run(handler, model, adapter="lora-a")
    b = _run(handler, model, adapter="lora-b")
    none = _run(handler, model, adapter="none")
    a2 = _run(handler, model, adapter="lora-a")
    assert a1["images"] == a2["images"]
    assert b["images"] != a1["images"] and none["images"] not in (a1["images"], b["images"])
    # lora-a by name and the default adapter are the same weights
    assert _run(handler, model, adapter="default")["images"] == a1["images"]
    assert model.pipe is pipe and model.pipe.unet is unet
    assert set(model.adapters.loaded()) >= {"lora-a", "lora-b"}


def test_dotted_adapter_name(handler, model):
    dotted = _run(handler, model, adapter="lora.b")
    assert dotted["adapter"] == {"name": "lora.b", "scale": 1.0}
    assert dotted["images"] == _run(handler, model, adapter="lora-b")["images"]


def test_lru_bound_evicts_with_delete_adapters(handler, model_dir, monkeypatch):
    monkeypatch.setenv("TRYON_MAX_ADAPTERS", "1")
    small = handler.model_fn(str(model_dir))
    assert small.adapters.loaded() == ["default"]
    b = _run(handler, small, adapter="lora-b")
    assert small.adapters.loaded() == ["lora-b"]
    assert small.pipe.get_list_adapters() == {"unet": ["lora-b"]}
    a = _run(handler, small, adapter="lora-a")
    assert small.adapters.loaded() == ["lora-a"]
    assert small.pipe.get_list_adapters() == {"unet": ["lora-a"]}
    assert _run(handler, small, adapter="lora-b")["images"] == b["images"]  # reloaded, same result
    assert a["images"] != b["images"]


def test_adapter_from_s3_prefix(handler, model, tiny_models, tmp_path, monkeypatch):
    import boto3
    from moto import mock_aws

    monkeypatch.setenv("TRYON_ADAPTER_CACHE_DIR", str(tmp_path / "adapter-cache"))
    by_name = _run(handler, model, adapter="lora-b")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="garments")
        weights = tiny_models["lora-b"] / "pytorch_lora_weights.safetensors"
        s3.upload_file(str(weights), "garments", "loras/b/pytorch_lora_weights.safetensors")
        s3.put_object(Bucket="garments", Key="photos/p.png", Body=base64.b64decode(BASE_REQUEST["image"]))
        s3.put_object(Bucket="garments", Key="photos/m.png", Body=base64.b64decode(BASE_REQUEST["mask"]))
        response = _run(
            handler,
            model,
            adapter="s3://garments/loras/b/",
            image="s3://garments/photos/p.png",
            mask="s3://garments/photos/m.png",
        )
        with pytest.raises(RequestError, match=r"^adapter: no \.safetensors"):
            _run(handler, model, adapter="s3://garments/photos/")
    assert response["adapter"] == {"name": "s3://garments/loras/b/", "scale": 1.0}
    assert response["images"] == by_name["images"]


def test_concurrent_requests_match_sequential(handler, model):
    expected = {name: _run(handler, model, adapter=name)["images"] for name in ("lora-a", "lora-b", "none")}
    results: dict[str, list] = {}
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            results[name] = _run(handler, model, adapter=name)["images"]
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in expected for _ in range(1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == expected


# --- image modes and orientation --------------------------------------------------------------


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_grayscale_rgba_and_palette_inputs(handler, model, mode):
    photo = PHOTO.convert(mode)
    if mode == "RGBA":
        alpha = Image.linear_gradient("L").resize(PHOTO_SIZE)
        photo.putalpha(alpha)
    response = _run(handler, model, image=b64(photo))
    out = _pixels(response)
    assert out.shape == (PHOTO_SIZE[1], PHOTO_SIZE[0], 3)
    outside = np.asarray(box_mask(PHOTO_SIZE, MASK_BOX)) == 0
    np.testing.assert_array_equal(out[outside], np.asarray(to_rgb(photo))[outside])


@pytest.mark.parametrize("mask_mode", ["1", "RGB", "LA"])
def test_mask_in_any_mode(handler, model, mask_mode):
    response = _run(handler, model, mask=b64(box_mask(PHOTO_SIZE, MASK_BOX).convert(mask_mode)))
    assert response["crop_box"] == [68, 13, 212, 157]


def test_exif_rotated_input(handler, model):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    jpeg = b64(PHOTO, "JPEG", exif=exif.tobytes(), quality=95)
    oriented = (PHOTO_SIZE[1], PHOTO_SIZE[0])
    mask = box_mask(oriented, (50, 100, 120, 180))
    response = _run(handler, model, image=jpeg, mask=b64(mask))
    assert _decode(response["images"][0]).size == oriented
    with pytest.raises(RequestError, match=r"^mask: is 300x200 but the image is 200x300"):
        _run(handler, model, image=jpeg)


# --- bad input ---------------------------------------------------------------------------------


def _truncated_png() -> str:
    data = encode_png(PHOTO)
    return base64.b64encode(data[: len(data) // 2]).decode()


def _bomb_png() -> str:
    return b64encode(encode_png(Image.new("1", (8000, 8000))))  # 64 MP, compresses to a few kB


BAD_REQUESTS = [
    ({"image": None}, "image"),
    ({"mask": None}, "mask"),
    ({"prompt": None}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": 5}, "prompt"),
    ({"steps": "many"}, "steps"),
    ({"steps": 0}, "steps"),
    ({"steps": 151}, "steps"),
    ({"steps": 2.5}, "steps"),
    ({"strength": 0}, "strength"),
    ({"strength": 1.5}, "strength"),
    ({"strength": 0.1}, "strength"),  # 2 steps x 0.1 leaves no step
    ({"guidance_scale": 51}, "guidance_scale"),
    ({"guidance_scale": -1}, "guidance_scale"),
    ({"cfg_scale": "high"}, "cfg_scale"),
    ({"cfg_scale": 5, "guidance_scale": 5}, "cfg_scale"),
    ({"width": 100}, "width"),
    ({"width": 4096}, "width"),
    ({"height": 32}, "height"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**32}, "seed"),
    ({"num_images": 5}, "num_images"),
    ({"padding": -1}, "padding"),
    ({"adapter_scale": 2.5}, "adapter_scale"),
    ({"sampler": "KarrasMagic"}, "sampler"),
    ({"adapter": "lora-z"}, "adapter"),
    ({"adapter": "../lora-a"}, "adapter"),
    ({"adapter": "adapters/lora-a"}, "adapter"),
    ({"adapter": ".."}, "adapter"),
    ({"adapter": 7}, "adapter"),
    ({"colour": "red"}, "body"),
    ({"image": "not base64!"}, "image"),
    ({"image": b64encode(b"hello, not an image")}, "image"),
    ({"image": _truncated_png()}, "image"),
    ({"image": _bomb_png()}, "image"),
    ({"mask": b64(box_mask((64, 64), (0, 0, 10, 10)))}, "mask"),
    ({"mask": b64(Image.new("L", PHOTO_SIZE, 127))}, "mask"),
]


@pytest.mark.parametrize(
    ("fields", "field"), BAD_REQUESTS, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD_REQUESTS)]
)
def test_bad_requests_name_the_field(handler, model, fields, field):
    with pytest.raises(RequestError) as info:
        _run(handler, model, **fields)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_error_messages_are_specific(handler, model):
    with pytest.raises(RequestError, match=r"^mask: is empty"):
        _run(handler, model, mask=b64(Image.new("L", PHOTO_SIZE, 0)))
    with pytest.raises(RequestError, match=r"^mask: is 64x64 but the image is 300x200"):
        _run(handler, model, mask=b64(box_mask((64, 64), (0, 0, 10, 10))))
    with pytest.raises(RequestError, match=r"EulerEDMSampler.*DDIMScheduler"):
        _run(handler, model, sampler="KarrasMagic")
    with pytest.raises(RequestError, match=r"available: none, default, lora-a, lora-b"):
        _run(handler, model, adapter="lora-z")
    with pytest.raises(RequestError, match=r"^image: .*limit is 36000000 pixels"):
        _run(handler, model, image=_bomb_png())
    with pytest.raises(RequestError, match=r"^steps: must be <= 150"):
        _run(handler, model, steps=151)


@pytest.mark.parametrize(
    ("body", "content_type", "field"),
    [
        (b"{not json", "application/json", "body"),
        (b"[1, 2]", "application/json", "body"),
        (b"{}", "text/plain", "content_type"),
    ],
)
def test_malformed_bodies(handler, body, content_type, field):
    with pytest.raises(RequestError) as info:
        handler.input_fn(body, content_type)
    assert info.value.field == field


def test_output_fn_refuses_other_accept(handler):
    with pytest.raises(RequestError, match=r"^accept"):
        handler.output_fn({"images": []}, "image/png")


def test_sdxl_rules(handler, model):
    sdxl = dataclasses.replace(model, is_sdxl=True, working_resolution=1024)
    params = handler.parse_params({**BASE_REQUEST}, sdxl)
    assert (params.width, params.height) == (1024, 1024)
    assert handler.parse_params({**BASE_REQUEST, "width": 1216, "height": 832}, sdxl).width == 1216
    with pytest.raises(RequestError, match=r"^width: 512x1024 is not an SDXL size; allowed: .*1216x832"):
        handler.parse_params({**BASE_REQUEST, "width": 512}, sdxl)
    with pytest.raises(RequestError, match=r"^cfg_scale: must be <= 35"):
        handler.parse_params({**BASE_REQUEST, "cfg_scale": 40}, sdxl)
    assert handler.parse_params({**BASE_REQUEST, "cfg_scale": 40}, model).guidance_scale == 40


def test_inputs_are_not_modified(handler, model):
    request = {**BASE_REQUEST, "num_images": 1}
    snapshot = json.dumps(request, sort_keys=True)
    handler.predict_fn(request, model)
    assert json.dumps(request, sort_keys=True) == snapshot
