"""x4 upscaler endpoint handler through its four functions on the tiny random pipeline."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from PIL import Image
from support.handlers import invoke
from support.images import b64, decode, noise_image

from tryon.core import imaging, upscale_budget
from tryon.core.errors import RequestError
from tryon.handlers import sd_upscale

CT = "application/json"
FAST = {"steps": 2}


@pytest.fixture(scope="module")
def model(upscale_model):
    return upscale_model


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    return noise_image((width, height), seed)


def run(model, body: dict) -> dict:
    return invoke(sd_upscale, model, body)


def image_of(response: dict) -> Image.Image:
    return decode(response["image"])


def test_output_is_exactly_four_times_the_input(model):
    # 21 x 13 is not a multiple of 8: the handler pads, upscales and crops.
    out = run(model, {"image": b64(photo(21, 13)), "seed": 7, **FAST})
    img = image_of(out)
    assert img.format == "PNG" and img.mode == "RGB" and img.size == (84, 52)
    assert out["size"] == [84, 52] and out["tiles"] == 1 and out["seed"] == 7
    assert set(out["timings_ms"]) == {"decode", "queue", "preprocess", "inference", "postprocess", "encode"}
    assert out["model"] == model.model_id


def test_same_seed_same_image_and_other_seed_differs(model):
    body = {"image": b64(photo(16, 8)), "seed": 123, "prompt": "a red dress", **FAST}
    first, second = run(model, body), run(model, body)
    other = run(model, {**body, "seed": 124})
    assert first["image"] == second["image"]
    assert other["image"] != first["image"]


def test_drawn_seed_is_reported_and_reproduces(model):
    body = {"image": b64(photo(8, 8)), **FAST}
    drawn = run(model, body)
    assert isinstance(drawn["seed"], int) and 0 <= drawn["seed"] < 2**32
    assert run(model, {**body, "seed": drawn["seed"]})["image"] == drawn["image"]


def test_guidance_off_and_negative_prompt_paths(model):
    body = {"image": b64(photo(8, 8)), "seed": 1, "prompt": "silk", **FAST}
    no_cfg = run(model, {**body, "guidance_scale": 1.0})
    cfg = run(model, {**body, "guidance_scale": 9.0, "negative_prompt": "blurry"})
    assert image_of(no_cfg).size == image_of(cfg).size == (32, 32)
    assert no_cfg["image"] != cfg["image"]


def test_tiled_path_is_exact_size_and_deterministic(model):
    body = {"image": b64(photo(44, 37)), "seed": 5, "tile_size": 32, "tile_overlap": 8, **FAST}
    first = run(model, body)
    assert first["tiles"] == 2 * 2
    assert image_of(first).size == (176, 148)
    assert run(model, body)["image"] == first["image"]


def test_tiles_run_in_batches_that_equal_one_call_per_tile(model, monkeypatch):
    """4 tiles of 32 px fit one pass's pixel budget: one batched call, as if each tile ran alone."""
    from tryon.handlers import threads

    assert sd_upscale.tiles_per_call(32, 32) == 512**2 // 32**2 and sd_upscale.tiles_per_call(512, 512) == 1
    assert sd_upscale.tiles_per_call(32, 32, model) == 1  # the tiny model on a CPU: one tile per call
    monkeypatch.setattr(threads, "SMALL_MODEL_PARAMS", 0)  # treat the tiny model as a large one
    body = {"image": b64(photo(44, 37, seed=3)), "seed": 9, "tile_size": 32, "tile_overlap": 8, **FAST}
    batches: list[int] = []
    hook = model.pipe.unet.register_forward_pre_hook(lambda _m, args: batches.append(args[0].shape[0]))
    try:
        batched = np.asarray(image_of(run(model, body))).astype(int)
        assert set(batches) == {4 * 2}  # 4 tiles x (cond, uncond) in every UNet call
        batches.clear()
        monkeypatch.setenv("TRYON_UPSCALE_MAX_INPUT_SIDE", "32")  # budget of one 32 px tile per call
        assert sd_upscale.tiles_per_call(32, 32, model) == 1
        alone = np.asarray(image_of(run(model, body))).astype(int)
        assert set(batches) == {1 * 2}
    finally:
        hook.remove()
    diff = np.abs(batched - alone)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.001, (diff.max(), (diff > 0).mean())


def test_tiling_follows_the_configured_single_pass_limit(model, monkeypatch):
    monkeypatch.setenv("TRYON_UPSCALE_MAX_INPUT_SIDE", "32")
    out = run(model, {"image": b64(photo(40, 20)), "seed": 2, **FAST})
    assert out["tiles"] == 2 and image_of(out).size == (160, 80)
    assert upscale_budget.tile_grid(40, 20).tiles == out["tiles"]  # Prepare's estimate counts the same tiles


@pytest.mark.parametrize(
    ("length", "tile", "overlap"), [(45, 32, 8), (70, 32, 8), (33, 32, 16), (512, 128, 0), (300, 128, 0)]
)
def test_tiles_cover_the_axis_with_positive_blend_weights(length, tile, overlap):
    starts = sd_upscale.tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile == length
    assert all(b - a <= tile - overlap for a, b in itertools.pairwise(starts))
    total = np.zeros(length * 4, dtype=np.float32)
    for i, start in enumerate(starts):
        weights = sd_upscale._ramp_weights(starts, tile, i, 4)
        assert ((weights > 0) & (weights <= 1)).all()
        total[start * 4 : (start + tile) * 4] += weights
    assert (total > 0).all()


def test_inputs_over_the_tiled_limit_are_refused_naming_it(monkeypatch):
    wide = b64(Image.new("RGB", (2049, 8)))
    with pytest.raises(RequestError, match=r"^image: is 2049x8; the limit is 2048 px per side"):
        sd_upscale.input_fn(json.dumps({"image": wide}), CT)
    monkeypatch.setenv("TRYON_UPSCALE_MAX_TILED_SIDE", "64")
    with pytest.raises(RequestError, match=r"the limit is 64 px per side \(TRYON_UPSCALE_MAX_TILED_SIDE"):
        sd_upscale.input_fn(json.dumps({"image": b64(Image.new("RGB", (65, 10)))}), CT)
    # Whatever is configured, outputs stay <= 8192 px per side.
    monkeypatch.setenv("TRYON_UPSCALE_MAX_TILED_SIDE", "4096")
    assert sd_upscale.max_tiled_side() == 2048


@pytest.mark.parametrize(
    ("extra", "field", "detail"),
    [
        ({"steps": 0}, "steps", ">= 1"),
        ({"steps": 151}, "steps", "<= 150"),
        ({"steps": "many"}, "steps", "must be an integer"),
        ({"guidance_scale": 51}, "guidance_scale", "<= 50.0"),
        ({"noise_level": 351}, "noise_level", "<= 350"),
        ({"noise_level": -1}, "noise_level", ">= 0"),
        ({"seed": -1}, "seed", ">= 0"),
        ({"seed": 2**32}, "seed", "<= 4294967295"),
        ({"prompt": 5}, "prompt", "must be a string"),
        ({"tile_size": 36}, "tile_size", "multiple of 8"),
        ({"tile_size": 1024}, "tile_size", "<= 512"),
        ({"tile_size": 16}, "tile_size", ">= 32"),
        ({"tile_size": 64, "tile_overlap": 40}, "tile_overlap", "<= tile_size / 2 = 32"),
        ({"scale": 2}, "body", "unknown field(s) scale"),
        ({"image": None}, "image", "is required"),
        ({"image": imaging.b64encode(b"garbage")}, "image", "not a decodable"),
    ],
)
def test_bad_parameters_name_the_field(extra, field, detail):
    body = {"image": b64(photo(8, 8)), **extra}
    with pytest.raises(RequestError) as info:
        sd_upscale.input_fn(json.dumps(body), CT)
    assert info.value.field == field and detail in str(info.value)


def test_wrong_content_type_and_body():
    with pytest.raises(RequestError, match=r"^content_type: "):
        sd_upscale.input_fn("{}", "image/png")
    with pytest.raises(RequestError, match=r"^body: is not valid JSON"):
        sd_upscale.input_fn("{", CT)


def test_sagemaker_entry_point_reexports_the_handler(repo_root):
    import importlib.util

    path = repo_root / "models/sd_upscale/code/inference.py"
    spec = importlib.util.spec_from_file_location("sd_upscale_entry", path)
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    assert sorted(entry.__all__) == ["input_fn", "model_fn", "output_fn", "predict_fn"]
    assert entry.predict_fn is sd_upscale.predict_fn and entry.input_fn is sd_upscale.input_fn
