"""Keep the body on the tiny SDXL inpainting model: SDXL ControlNets, with the SDXL refiner, on both stacks.

The tiny SDXL base carries tiny SDXL ControlNets (its UNet's added conditioning, 8x control-image
downsampling) beside the shared tiny estimators, and the tiny SDXL refiner: the controls
condition the base, the refiner re-denoises its latents, and pixels outside the mask stay the
photo's. The same request paints the same pixels on the serving image's diffusers 0.33.1.
"""

from __future__ import annotations

import numpy as np
import pytest
from support.serving_venv import run_script, serving_python

from tryon.core.imaging import b64decode, decode_image
from tryon.local.samples import box_mask, inpaint_request, noise_image

pytestmark = pytest.mark.slow

PHOTO = noise_image((120, 90), seed=4)
MASK = box_mask(PHOTO.size, (30, 20, 90, 70))
REQUEST = inpaint_request(PHOTO, MASK, seed=11, use_refiner=False)
OUTSIDE = np.asarray(MASK) == 0


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every test here runs on one intra-op thread (see conftest)."""


@pytest.fixture(scope="module")
def sdxl(tiny_models, tmp_path_factory):
    """The tiny SDXL base with SDXL ControlNets, the estimators and the refiner, as a model folder."""
    from tryon.handlers import sd_inpaint
    from tryon.weights.tiny import control_parts

    folder = tmp_path_factory.mktemp("sdxl") / "model"
    folder.mkdir()
    for entry in tiny_models["sdxl-inpaint"].iterdir():
        (folder / entry.name).symlink_to(entry)
    for name, source in {
        **control_parts(tiny_models, sdxl=True),
        "refiner": tiny_models["sdxl-refiner"],
    }.items():
        (folder / name).symlink_to(source)
    return sd_inpaint.model_fn(str(folder))


@pytest.fixture(scope="module")
def plain(sdxl) -> np.ndarray:
    """The image without controls (and without the refiner)."""
    return _run(sdxl)[1][0]


def _run(model, **fields):
    from tryon.handlers import sd_inpaint

    response = sd_inpaint.predict_fn({**REQUEST, **fields}, model)
    return response, [np.asarray(decode_image(b64decode(b, field="images"))) for b in response["images"]]


def test_sdxl_controls_use_the_sdxl_controlnet_pipeline(sdxl):
    from diffusers import StableDiffusionXLControlNetInpaintPipeline

    assert sdxl.family == "sdxl" and sdxl.controls.available == ("depth", "pose")
    pipe = sdxl.controls.pipelines[("depth", "pose")]
    assert isinstance(pipe, StableDiffusionXLControlNetInpaintPipeline)
    assert pipe.unet is sdxl.pipe.unet and pipe.text_encoder_2 is sdxl.pipe.text_encoder_2


def test_sdxl_controls_change_the_masked_pixels_only_and_scale_zero_is_none(sdxl, plain):
    response, (kept,) = _run(sdxl, keep_body="depth+pose", depth_scale=1.0, pose_scale=1.0)
    assert np.abs(plain.astype(int) - kept.astype(int))[~OUTSIDE].max() > 0
    assert np.array_equal(plain[OUTSIDE], kept[OUTSIDE])
    assert response["controls"]["keep_body"] == "depth+pose"
    assert decode_image(b64decode(response["controls"]["depth"]["image"], field="x")).size == (1024, 1024)
    _, (zero,) = _run(sdxl, keep_body="depth+pose", depth_scale=0, pose_scale=0)
    assert np.array_equal(zero, plain)


def test_the_refiner_refines_what_the_controlled_base_painted(sdxl):
    refine = {"use_refiner": True, "refiner_steps": 2, "refiner_strength": 0.5}
    _, (controlled,) = _run(sdxl, keep_body="pose", pose_scale=1.0)
    response, (refined,) = _run(sdxl, keep_body="pose", pose_scale=1.0, **refine)
    _, (refined_plain,) = _run(sdxl, **refine)
    assert (
        response["refiner"] == {"steps": 2, "strength": 0.5} and response["controls"]["keep_body"] == "pose"
    )
    assert not np.array_equal(refined, controlled) and not np.array_equal(refined, refined_plain)
    assert np.array_equal(refined[OUTSIDE], controlled[OUTSIDE])


#: The same request through the handler under another interpreter (the serving image's libraries).
_SERVING_SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
from tryon.handlers import sd_inpaint
request = json.loads(sys.stdin.read())
answer = sd_inpaint.predict_fn(request, sd_inpaint.model_fn(sys.argv[1]))
controls = answer["controls"]
print(json.dumps([answer["images"][0], controls["depth"]["image"], controls["pose"]["image"]]))
"""


def test_sdxl_controls_paint_the_same_on_the_serving_image_libraries(sdxl, repo_root):
    serving_python(repo_root)  # before the run here: a missing serving venv says so first
    request = {**REQUEST, "keep_body": "depth+pose", "pose_scale": 1.0, "guidance_scale": 3.0}
    response, (ours,) = _run(
        sdxl, **{k: v for k, v in request.items() if k not in REQUEST or REQUEST[k] != v}
    )
    theirs = [
        np.asarray(decode_image(b64decode(b, field="x")))
        for b in run_script(repo_root, _SERVING_SCRIPT, sdxl.model_dir, request=request)
    ]
    mine = [ours] + [
        np.asarray(decode_image(b64decode(response["controls"][c]["image"], field="x")))
        for c in ("depth", "pose")
    ]
    for what, a, b in zip(("image", "depth", "pose"), mine, theirs, strict=True):
        differing = np.abs(a.astype(int) - b.astype(int)) > 1
        assert differing.mean() < 0.001, (
            what
        )  # within 1/255 in < 0.1% of values, as the container-compat test
