"""The SDXL refiner option of the inpainting endpoint, on the tiny SDXL base and refiner.

The refiner shares the base's second text encoder and VAE; each of use_refiner, refiner_steps
and refiner_strength is applied and checked against its limits; models without a refiner
(SDXL or SD 2) refuse it by name, over HTTP too.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from support.serving_venv import run_script, serving_python

from tryon.core.errors import RequestError
from tryon.core.imaging import b64decode, decode_image
from tryon.local.samples import assemble_inpaint_model, box_mask, inpaint_request, noise_image

pytestmark = pytest.mark.slow

PHOTO = noise_image((120, 90), seed=4)
MASK = box_mask(PHOTO.size, (30, 20, 90, 70))
REQUEST = inpaint_request(PHOTO, MASK, seed=11)
FAST = {"refiner_steps": 2, "refiner_strength": 0.5}  # one refining step


@pytest.fixture(scope="module")
def with_refiner(inpaint_handler, tiny_models, tmp_path_factory):
    folder = assemble_inpaint_model(
        tiny_models["sdxl-inpaint"],
        {},
        tmp_path_factory.mktemp("sdxl") / "model",
        refiner=tiny_models["sdxl-refiner"],
    )
    return inpaint_handler.model_fn(str(folder))


@pytest.fixture(scope="module")
def without_refiner(sdxl_model):
    return sdxl_model


def _run(model, **fields):
    from tryon.handlers import sd_inpaint

    response = sd_inpaint.predict_fn({**REQUEST, **fields}, model)
    images = [np.asarray(decode_image(b64decode(b, field="images"))) for b in response["images"]]
    return response, images


def test_the_refiner_shares_the_bases_text_encoder_and_vae(with_refiner):
    refiner = with_refiner.refiner
    assert refiner is not None and type(refiner.pipe).__name__ == "StableDiffusionXLImg2ImgPipeline"
    assert refiner.pipe.vae is with_refiner.pipe.vae
    assert refiner.pipe.text_encoder_2 is with_refiner.pipe.text_encoder_2
    assert refiner.pipe.text_encoder is None and refiner.pipe.unet is not with_refiner.pipe.unet


def test_a_model_with_a_refiner_refines_by_default_and_keeps_outside_pixels(with_refiner):
    default, (refined,) = _run(with_refiner)
    off, (plain,) = _run(with_refiner, use_refiner=False)
    assert default["refiner"] == {"steps": 30, "strength": 0.3} and "refine" in default["timings_ms"]
    assert off["refiner"] is None and "refine" not in off["timings_ms"]
    outside = np.asarray(MASK) == 0
    for image in (refined, plain):
        np.testing.assert_array_equal(image[outside], np.asarray(PHOTO)[outside])
    assert np.abs(refined.astype(int) - plain.astype(int)).max() > 0, "the refiner changed nothing"
    assert np.array_equal(_run(with_refiner)[1][0], refined)  # same seed, same image


def test_refiner_steps_and_strength_each_change_the_result(with_refiner):
    response, (base,) = _run(with_refiner, use_refiner=True, **FAST)
    assert response["refiner"] == {"steps": 2, "strength": 0.5}
    _, (more_steps,) = _run(with_refiner, refiner_steps=4, refiner_strength=0.5)
    _, (stronger,) = _run(with_refiner, refiner_steps=2, refiner_strength=1.0)
    assert not np.array_equal(more_steps, base) and not np.array_equal(stronger, base)


def test_each_image_of_a_batch_is_refined_with_its_own_seed(with_refiner):
    response, images = _run(with_refiner, num_images=2, **FAST)
    assert response["seeds"] == [11, 12] and len(images) == 2
    assert not np.array_equal(images[0], images[1])
    _, (alone,) = _run(with_refiner, seed=12, **FAST)
    differing = np.abs(alone.astype(int) - images[1].astype(int)) > 1
    assert differing.mean() < 0.001  # the batched image replays alone (docs: within 1/255)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"refiner_steps": 0}, r"^refiner_steps: must be >= 1"),
        ({"refiner_steps": 151}, r"^refiner_steps: must be <= 150"),
        ({"refiner_steps": 2.5}, r"^refiner_steps: "),
        ({"refiner_strength": 0}, r"^refiner_strength: must be > 0"),
        ({"refiner_strength": 1.01}, r"^refiner_strength: must be <= 1"),
        ({"refiner_strength": "strong"}, r"^refiner_strength: "),
        ({"use_refiner": "maybe"}, r"^use_refiner: "),
        (
            {"refiner_steps": 3, "refiner_strength": 0.3},
            r"^refiner_strength: 0.3 x refiner_steps 3 leaves no",
        ),
        ({"use_refiner": False, "refiner_steps": 10}, r"^refiner_steps: applies only when the refiner runs"),
        ({"use_refiner": False, "refiner_strength": 0.5}, r"^refiner_strength: applies only when"),
    ],
)
def test_refiner_limits(with_refiner, fields, message):
    from tryon.handlers import sd_inpaint

    with pytest.raises(RequestError, match=message):
        sd_inpaint.predict_fn({**REQUEST, **fields}, with_refiner)


@pytest.mark.parametrize("fields", [{"use_refiner": True}, {"refiner_steps": 10}, {"refiner_strength": 0.5}])
def test_a_model_without_a_refiner_refuses_it_by_name(without_refiner, inpaint_model, fields):
    from tryon.handlers import sd_inpaint

    name = next(iter(fields))
    for model in (without_refiner, inpaint_model):
        with pytest.raises(RequestError, match=rf"^{name}: this model has no refiner; .*SDXL"):
            sd_inpaint.predict_fn({**REQUEST, **fields}, model)
    response, _ = _run(without_refiner, use_refiner=False)
    assert response["refiner"] is None


def test_a_refiner_beside_a_base_that_is_not_sdxl_fails_at_start(tiny_models, tmp_path):
    from tryon.handlers import refiner, sd_inpaint

    folder = assemble_inpaint_model(
        tiny_models["sd-inpaint"], {}, tmp_path / "sd2", refiner=tiny_models["sdxl-refiner"]
    )
    with pytest.raises(refiner.RefinerLayoutError, match="needs an SDXL base"):
        sd_inpaint.model_fn(str(folder))


def _incomplete_refiner(tiny_models, tmp_path, *missing):
    """A copy of the tiny refiner without ``missing`` files, in a model folder beside the SDXL base."""
    import shutil

    refiner_copy = tmp_path / "refiner-copy"
    shutil.copytree(tiny_models["sdxl-refiner"], refiner_copy, symlinks=False)
    for name in missing:
        (refiner_copy / name).unlink()
    return assemble_inpaint_model(tiny_models["sdxl-inpaint"], {}, tmp_path / "model", refiner=refiner_copy)


def test_a_refiner_folder_missing_files_is_refused_in_one_line_naming_them(tiny_models, tmp_path):
    from tryon.aws.packaging import PackagingError, plan_archive
    from tryon.handlers import refiner, sd_inpaint
    from tryon.weights.hub import check_model_source

    folder = _incomplete_refiner(tiny_models, tmp_path, "unet/diffusion_pytorch_model.safetensors")
    expected = (
        f"{folder}/refiner is not a complete SDXL refiner folder: it has no "
        "unet/diffusion_pytorch_model.safetensors (a refiner needs model_index.json, "
        "scheduler/scheduler_config.json, unet/config.json and unet/diffusion_pytorch_model.safetensors "
        "or .bin, as save_pretrained writes them)"
    )
    with pytest.raises(refiner.RefinerLayoutError) as at_load:  # not diffusers' "Error no file named ..."
        sd_inpaint.model_fn(str(folder))
    assert str(at_load.value) == expected
    with pytest.raises(RequestError) as before_load:  # tryon run --models / tryon serve -e: exit 2
        check_model_source(str(folder), "--models sd_inpaint")
    assert str(before_load.value) == f"--models sd_inpaint: {expected}"
    with pytest.raises(PackagingError, match=r"it has no unet/diffusion_pytorch_model\.safetensors"):
        plan_archive("sd_inpaint", model_dir=tiny_models["sdxl-inpaint"], refiner_dir=folder / "refiner")
    folder2 = _incomplete_refiner(
        tiny_models, tmp_path / "b", "model_index.json", "scheduler/scheduler_config.json"
    )
    with pytest.raises(
        refiner.RefinerLayoutError, match=r"it has no model_index\.json, scheduler/scheduler_config\.json \("
    ):
        sd_inpaint.model_fn(str(folder2))  # a refiner/ without model_index.json is not silently ignored


def test_an_out_of_range_refiner_field_is_a_400_over_http(tiny_models):
    from starlette.testclient import TestClient

    from tryon.server import EndpointConfig, create_app

    app = create_app([EndpointConfig("inpaint", "sd_inpaint", str(tiny_models["sdxl-inpaint"]))])
    with TestClient(app) as client:
        deadline = time.monotonic() + 120
        while client.get("/ping").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        for fields, name in (
            ({"refiner_strength": 2}, "refiner_strength"),
            ({"use_refiner": True}, "use_refiner"),
        ):
            answer = client.post("/invocations", json={**REQUEST, **fields})
            assert answer.status_code == 400, answer.text
            assert name in answer.text and "Traceback" not in answer.text and "Error" not in answer.text


#: The same request through the handler under another interpreter (the serving image's libraries).
_SERVING_SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
from tryon.handlers import sd_inpaint
from tryon.local.samples import assemble_inpaint_model, box_mask, inpaint_request, noise_image
request = json.loads(sys.stdin.read())
print(json.dumps(sd_inpaint.predict_fn(request, sd_inpaint.model_fn(sys.argv[1]))["images"]))
"""


def test_the_refiner_paints_the_same_on_the_serving_image_libraries(with_refiner, repo_root):
    serving_python(repo_root)
    request = {**REQUEST, "guidance_scale": 3.0, **FAST}
    _, (ours,) = _run(with_refiner, **request)
    (theirs,) = [
        np.asarray(decode_image(b64decode(b, field="images")))
        for b in run_script(repo_root, _SERVING_SCRIPT, with_refiner.model_dir, request=request)
    ]
    differing = np.abs(theirs.astype(int) - ours.astype(int)) > 1
    assert differing.mean() < 0.001  # within 1/255 in < 0.1% of values, as the container-compat test
