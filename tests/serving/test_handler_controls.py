"""Keep the body (keep_body): depth and pose ControlNets on the tiny SD inpainting model.

The tiny model folder ``sd-inpaint-controls`` carries tiny random ControlNets (depth, pose), a
Depth Anything depth estimator, a ViTPose pose estimator and an RT-DETR person detector, all
built offline (``tryon.weights.tiny``). Each control alone and both change the masked pixels
only; scale 0 is no conditioning; the estimators run once per request; LoRA (one trained by
the fine-tune, without conditioning), the IP-Adapter and S3 outputs compose with it; every
refusal is a 400 naming the field; layout mistakes stop the endpoint at start-up.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import boto3
import numpy as np
import pytest
from moto import mock_aws

from tryon.core.errors import RequestError
from tryon.core.imaging import b64decode, b64encode, decode_image, encode_png
from tryon.local.samples import box_mask, noise_image

pytestmark = pytest.mark.slow

PHOTO = noise_image((120, 90), seed=4)
MASK_BOX = (30, 20, 90, 70)
MASK = box_mask(PHOTO.size, MASK_BOX)
BASE = {
    "image": b64encode(encode_png(PHOTO)),
    "mask": b64encode(encode_png(MASK)),
    "prompt": "a red linen shirt",
    "steps": 2,
    "seed": 21,
    "adapter": "none",
}
OUTSIDE = np.asarray(MASK) == 0


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every test here runs on one intra-op thread (see conftest)."""


def _linked(root: Path, base: Path, **extra: Path) -> Path:
    """A model folder: ``base``'s entries symlinked, plus ``extra`` (relative name -> target)."""
    root.mkdir(parents=True)
    for entry in base.iterdir():
        (root / entry.name).symlink_to(entry)
    for name, target in extra.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(target)
    return root


@pytest.fixture(scope="module")
def trained_lora(tiny_models, tmp_path_factory) -> Path:
    """A LoRA made by the fine-tune itself (tryon.training, 2 steps), which knows nothing of ControlNets."""
    from support.training import quick_config

    from tryon.training.loop import train

    photos = tmp_path_factory.mktemp("photos")
    for i in range(5):  # the fine-tune's minimum
        noise_image((72, 96), seed=30 + i).save(photos / f"skirt{i}.png")
    out = tmp_path_factory.mktemp("lora")
    # no TensorBoard: the adapter is what this needs, not the training logs
    config = quick_config(tiny_models["sd-inpaint"], photos, out, max_train_steps=2, seed=3, report_to="none")
    result = train(config, progress=False)
    assert (result.adapter_dir / "pytorch_lora_weights.safetensors").is_file()
    return result.adapter_dir


@pytest.fixture(scope="module")
def model_dir(tiny_models, trained_lora, tmp_path_factory) -> Path:
    """The tiny model with every control folder, its IP-Adapter, lora-a and the trained LoRA."""
    return _linked(
        tmp_path_factory.mktemp("controls") / "model",
        tiny_models["sd-inpaint-controls"],
        **{"adapters/lora-a": tiny_models["lora-a"], "adapters/trained": trained_lora},
    )


@pytest.fixture(scope="module")
def model(model_dir):
    from tryon.handlers import sd_inpaint

    return sd_inpaint.model_fn(str(model_dir))


@pytest.fixture(scope="module")
def plain(tiny_models):
    """The tiny model without any control folder."""
    from tryon.handlers import sd_inpaint

    return sd_inpaint.model_fn(str(tiny_models["sd-inpaint"]))


def _run(model, **fields) -> tuple[dict, list[np.ndarray]]:
    from tryon.handlers import sd_inpaint

    body = json.dumps({**BASE, **fields})
    response = sd_inpaint.predict_fn(sd_inpaint.input_fn(body, "application/json"), model)
    images = [np.asarray(decode_image(b64decode(b, field="images"))) for b in response.get("images", [])]
    return response, images


def _image(b64: str) -> np.ndarray:
    return np.asarray(decode_image(b64decode(b64, field="image")))


# --- loading -----------------------------------------------------------------------------------


def test_controls_load_at_start_and_share_the_base_pipeline(model):
    from diffusers import ControlNetModel, MultiControlNetModel, StableDiffusionControlNetInpaintPipeline

    controls = model.controls
    assert model.family == "sd15" and controls.available == ("depth", "pose")
    assert set(controls.pipelines) == {("depth",), ("pose",), ("depth", "pose")}
    for names, pipe in controls.pipelines.items():
        assert isinstance(pipe, StableDiffusionControlNetInpaintPipeline)
        # one copy of the base's modules (and the IP-Adapter's image encoder) for every pipeline
        for part in ("unet", "vae", "text_encoder", "image_encoder"):
            assert getattr(pipe, part) is getattr(model.pipe, part), (names, part)
        assert isinstance(pipe.controlnet, MultiControlNetModel if len(names) == 2 else ControlNetModel)
        assert pipe.unet.dtype == model.pipe.unet.dtype
    assert controls.pipelines[("depth",)].controlnet is controls.controlnets["depth"]
    assert type(controls.estimators["depth"].model).__name__ == "DepthAnythingForDepthEstimation"
    assert type(controls.estimators["pose"].detector.model).__name__ == "RTDetrForObjectDetection"


# --- what each control does --------------------------------------------------------------------


@pytest.mark.parametrize("keep_body", ["depth", "pose", "depth+pose"])
def test_each_control_changes_the_masked_pixels_only(model, keep_body):
    _, plain_images = _run(model, num_images=2)
    response, kept = _run(model, keep_body=keep_body, num_images=2)
    for before, after in zip(plain_images, kept, strict=True):
        assert np.abs(before.astype(int) - after.astype(int))[~OUTSIDE].max() > 0, (
            "the control changed nothing"
        )
        assert np.array_equal(before[OUTSIDE], after[OUTSIDE]), (
            "pixels outside the mask must stay the photo's"
        )
    controls = response["controls"]
    names = keep_body.split("+")
    assert controls["keep_body"] == keep_body and set(controls) == {"keep_body", *names}
    for name in names:
        assert {k: controls[name][k] for k in ("scale", "start", "end")} == {
            "scale": 0.5,
            "start": 0.0,
            "end": 1.0,
        }
        control_image = _image(controls[name]["image"])
        assert control_image.shape == (64, 64, 3)  # the working size: what the ControlNet was given
    assert "estimate" in response["timings_ms"]


def test_the_control_images_are_a_depth_map_and_an_openpose_drawing(model):
    from tryon.handlers.control_images import COLORS

    response, _ = _run(model, keep_body="depth+pose")
    depth = _image(response["controls"]["depth"]["image"])
    assert np.array_equal(depth[..., 0], depth[..., 1]) and np.array_equal(depth[..., 0], depth[..., 2])
    assert depth.min() == 0 and depth.max() == 255  # min-max scaled
    pose = response["controls"]["pose"]
    assert pose["estimator"] == "VitPoseForPoseEstimation"
    assert pose["person_detector"] == "RTDetrForObjectDetection" and pose["person_boxes"] == "detected"
    assert pose["people"] >= 1 and pose["joints"] > 0
    drawing = _image(pose["image"])
    colors = {tuple(int(v) for v in px) for px in drawing.reshape(-1, 3)}
    assert (0, 0, 0) in colors and colors & set(COLORS), "joints are drawn in OpenPose's colours on black"


def test_scale_zero_is_no_conditioning(model, plain):
    _, reference = _run(plain)
    for fields in ({"keep_body": "depth", "depth_scale": 0}, {"keep_body": "pose", "pose_scale": 0.0}):
        assert np.array_equal(_run(model, **fields)[1][0], reference[0]), fields
    both = {"keep_body": "depth+pose", "depth_scale": 0, "pose_scale": 0}
    assert np.array_equal(_run(model, **both)[1][0], reference[0])
    # and without classifier-free guidance (one UNet pass per step)
    unguided = {"guidance_scale": 1.0}
    assert np.array_equal(_run(model, **both, **unguided)[1][0], _run(plain, **unguided)[1][0])
    # the same model without keep_body is the plain model
    assert np.array_equal(_run(model)[1][0], reference[0])


def test_scale_and_schedule_window_each_change_the_result(model):
    _, (full,) = _run(model, keep_body="pose", pose_scale=1.0)
    _, (weaker,) = _run(model, keep_body="pose", pose_scale=0.3)
    _, (late,) = _run(model, keep_body="pose", pose_scale=1.0, pose_start=0.5)
    _, (early,) = _run(model, keep_body="pose", pose_scale=1.0, pose_end=0.5)
    for other in (weaker, late, early):
        assert not np.array_equal(full, other)
    assert not np.array_equal(late, early)


def test_the_estimators_run_once_for_four_images_each_replaying_alone(model):
    controls = model.controls
    modules = {
        "depth": controls.estimators["depth"].model,
        "pose": controls.estimators["pose"].model,
        "person": controls.estimators["pose"].detector.model,
        "controlnet-depth": controls.controlnets["depth"],
        "unet": model.pipe.unet,
    }
    calls = dict.fromkeys(modules, 0)
    hooks = [
        module.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
        for name, module in modules.items()
    ]
    try:
        response, images = _run(model, keep_body="depth+pose", num_images=4, seed=5)
    finally:
        for hook in hooks:
            hook.remove()
    assert {name: calls[name] for name in ("depth", "pose", "person")} == {"depth": 1, "pose": 1, "person": 1}
    # one ControlNet pass per UNet pass (a step, or two for PNDM's first), all 4 images in one batch
    assert calls["controlnet-depth"] == calls["unet"] <= 3
    assert response["seeds"] == [5, 6, 7, 8] and len(images) == 4
    _, (third,) = _run(model, keep_body="depth+pose", seed=7)
    differing = np.abs(third.astype(int) - images[2].astype(int)) > 1
    assert differing.mean() < 0.001  # image 2 replays alone from its seed (to float rounding)


# --- composition -------------------------------------------------------------------------------


def test_a_lora_trained_without_conditioning_runs_with_the_controls(model):
    _, (pose_only,) = _run(model, keep_body="pose")
    _, (lora_only,) = _run(model, adapter="trained")
    response, (both,) = _run(model, keep_body="pose", adapter="trained")
    assert (
        response["adapter"] == {"name": "trained", "scale": 1.0}
        and response["controls"]["keep_body"] == "pose"
    )
    assert not np.array_equal(both, pose_only) and not np.array_equal(both, lora_only)
    assert np.array_equal(both[OUTSIDE], pose_only[OUTSIDE])
    _, (random_lora,) = _run(model, keep_body="depth", adapter="lora-a", adapter_scale=0.7)
    assert not np.array_equal(random_lora, _run(model, keep_body="depth")[1][0])
    # the adapter is off again for the next request
    assert np.array_equal(_run(model, keep_body="pose")[1][0], pose_only)


def test_the_garment_image_composes_with_the_controls(model):
    garment = {"garment_image": b64encode(encode_png(noise_image((48, 64), seed=7))), "garment_scale": 1.0}
    _, (pose_only,) = _run(model, keep_body="pose")
    _, (garment_only,) = _run(model, **garment)
    response, (both,) = _run(model, keep_body="pose", **garment)
    assert response["garment"]["scale"] == 1.0 and response["controls"]["pose"]["scale"] == 0.5
    assert not np.array_equal(both, pose_only) and not np.array_equal(both, garment_only)
    assert np.array_equal(both[OUTSIDE], garment_only[OUTSIDE])


def test_control_images_are_written_to_s3_beside_the_results(model):
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="out")
        response, _ = _run(
            model, keep_body="depth+pose", num_images=2, output="s3://out/job/", output_name="inpainted"
        )
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="out")["Contents"])
        assert keys == [
            "job/inpainted-0.png",
            "job/inpainted-1.png",
            "job/inpainted-depth.png",
            "job/inpainted-pose.png",
        ]
        assert [o["key"] for o in response["outputs"]] == keys[:2] and "images" not in response
        for name in ("depth", "pose"):
            written = response["controls"][name]["output"]
            assert written["uri"] == f"s3://out/job/inpainted-{name}.png" and written["size"] == [64, 64]
            assert "image" not in response["controls"][name]


def test_inline_control_images_count_towards_the_response_limit(model, monkeypatch):
    from tryon.handlers import common

    response, _ = _run(model, keep_body="depth+pose")
    images_only = sum(len(b) for b in response["images"])
    monkeypatch.setattr(common, "max_response_bytes", lambda: images_only + 10)
    with pytest.raises(RequestError) as info:
        _run(model, keep_body="depth+pose")
    assert info.value.field == "output"


# --- refusals ----------------------------------------------------------------------------------


def test_a_model_without_the_folders_refuses_keep_body_naming_them(plain):
    for keep_body, folders in (
        ("depth", "controlnet_depth/ and depth_estimator/"),
        ("pose", "controlnet_pose/ and pose_estimator/"),
    ):
        with pytest.raises(RequestError) as info:
            _run(plain, keep_body=keep_body)
        assert info.value.field == "keep_body" and folders in str(info.value)
        assert "keep_body none only" in str(info.value)
    _run(plain, keep_body="none")  # none is always fine


def test_a_model_with_one_control_refuses_the_other(tiny_models, tmp_path):
    from tryon.handlers import sd_inpaint

    folder = _linked(
        tmp_path / "depth-only",
        tiny_models["sd-inpaint"],
        controlnet_depth=tiny_models["controlnet-depth"],
        depth_estimator=tiny_models["depth-estimator"],
    )
    model = sd_inpaint.model_fn(str(folder))
    assert model.controls.available == ("depth",) and set(model.controls.pipelines) == {("depth",)}
    with pytest.raises(RequestError) as info:
        _run(model, keep_body="depth+pose")
    message = str(info.value)
    assert info.value.field == "keep_body" and "controlnet_pose/ and pose_estimator/" in message
    assert "it takes keep_body none, depth " in message
    assert _run(model, keep_body="depth")[0]["controls"]["keep_body"] == "depth"


def test_an_sd2_base_refuses_keep_body_by_name(tiny_models):
    from tryon.handlers import sd_inpaint

    sd2 = sd_inpaint.model_fn(str(tiny_models["sd2-inpaint"]))
    assert sd2.family == "sd2" and sd2.controls is None
    for keep_body in ("depth", "pose", "depth+pose"):
        with pytest.raises(RequestError) as info:
            _run(sd2, keep_body=keep_body)
        assert info.value.field == "keep_body" and "SD 2 inpainting models cannot keep the body" in str(
            info.value
        )
    assert _run(sd2, keep_body="none")[0]["controls"] is None


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"keep_body": "skeleton"}, "keep_body", "must be one of none, depth, pose, depth+pose"),
        ({"keep_body": "depth+depth"}, "keep_body", "must be one of"),
        ({"keep_body": ""}, "keep_body", "must be one of"),
        ({"keep_body": "Pose"}, "keep_body", "must be one of"),
        ({"keep_body": 1}, "keep_body", "must be a string"),
        ({"keep_body": "depth", "depth_scale": 2.5}, "depth_scale", "must be <= 2.0"),
        ({"keep_body": "depth", "depth_scale": -0.1}, "depth_scale", "must be >= 0.0"),
        ({"keep_body": "pose", "pose_scale": "strong"}, "pose_scale", "must be a number"),
        ({"keep_body": "pose", "pose_start": 1.5}, "pose_start", "must be <= 1.0"),
        ({"keep_body": "pose", "pose_end": -1}, "pose_end", "must be >= 0.0"),
        ({"keep_body": "pose", "pose_start": 0.6, "pose_end": 0.4}, "pose_start", "must be < pose_end 0.4"),
        ({"keep_body": "depth", "depth_start": 0.5, "depth_end": 0.5}, "depth_start", "must be < depth_end"),
        (
            {"keep_body": "pose", "depth_scale": 0.5},
            "depth_scale",
            "applies only when keep_body includes depth",
        ),
        ({"pose_end": 0.5}, "pose_end", "applies only when keep_body includes pose"),
    ],
)
def test_bad_control_fields_name_the_field(model, fields, field, message):
    with pytest.raises(RequestError) as info:
        _run(model, **fields)
    assert info.value.field == field and message in str(info.value)


def test_refusals_are_400s_over_http_naming_the_field(model_dir, tiny_models):
    from starlette.testclient import TestClient

    from tryon.server import EndpointConfig, create_app

    app = create_app(
        [
            EndpointConfig("controls", "sd_inpaint", str(model_dir)),
            EndpointConfig("plain", "sd_inpaint", str(tiny_models["sd-inpaint"])),
        ]
    )
    with TestClient(app) as client:
        deadline = time.monotonic() + 120
        while client.get("/ping").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        for endpoint, fields, name in (
            ("controls", {"keep_body": "depth", "depth_scale": 3}, "depth_scale"),
            ("controls", {"keep_body": "pose", "pose_start": 0.9, "pose_end": 0.1}, "pose_start"),
            ("plain", {"keep_body": "pose"}, "keep_body"),
        ):
            # the runtime API route answers as SageMaker does: ModelError, the model's 400 inside
            answer = client.post(f"/endpoints/{endpoint}/invocations", json={**BASE, **fields})
            assert answer.status_code == 424 and answer.json()["OriginalStatusCode"] == 400, answer.text
            assert answer.json()["OriginalMessage"].startswith(f"{name}: ") and "Traceback" not in answer.text


# --- layout mistakes stop the endpoint at start-up ---------------------------------------------


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ({"controlnet_depth": "controlnet-depth"}, "needs both controlnet_depth/ and depth_estimator/"),
        ({"pose_estimator": "pose-estimator"}, "needs both controlnet_pose/ and pose_estimator/"),
        (
            {
                "controlnet_depth": "controlnet-depth",
                "depth_estimator": "depth-estimator",
                "person_detector": "person-detector",
            },
            "person_detector/ serves the pose control",
        ),
        (
            {"controlnet_pose": "sdxl-controlnet-pose", "pose_estimator": "pose-estimator"},
            "ControlNet for another base",
        ),
        (
            {"controlnet_depth": "controlnet-depth", "depth_estimator": "pose-estimator"},
            "AutoModelForDepthEstimation",
        ),
        (
            {"controlnet_pose": "controlnet-pose", "pose_estimator": "depth-estimator"},
            "VitPoseForPoseEstimation",
        ),
        (
            {
                "controlnet_pose": "controlnet-pose",
                "pose_estimator": "pose-estimator",
                "person_detector": "depth-estimator",
            },
            "AutoModelForObjectDetection",
        ),
    ],
)
def test_layout_mistakes_fail_at_start_naming_the_folder(tiny_models, tmp_path, parts, message):
    from tryon.handlers import body_estimators, controls, sd_inpaint

    folder = _linked(
        tmp_path / "model", tiny_models["sd-inpaint"], **{k: tiny_models[v] for k, v in parts.items()}
    )
    with pytest.raises((controls.ControlLayoutError, body_estimators.EstimatorLayoutError)) as info:
        sd_inpaint.model_fn(str(folder))
    assert message in str(info.value) and str(folder) in str(info.value)


def test_control_folders_beside_an_sd2_base_fail_at_start(tiny_models, tmp_path):
    from tryon.handlers import controls, sd_inpaint

    folder = _linked(
        tmp_path / "sd2",
        tiny_models["sd2-inpaint"],
        controlnet_pose=tiny_models["controlnet-pose"],
        pose_estimator=tiny_models["pose-estimator"],
    )
    with pytest.raises(controls.ControlLayoutError, match="its base is SD 2 inpainting"):
        sd_inpaint.model_fn(str(folder))


def test_without_a_person_detector_the_whole_crop_is_the_person(tiny_models, tmp_path):
    from tryon.handlers import sd_inpaint

    folder = _linked(
        tmp_path / "no-detector",
        tiny_models["sd-inpaint"],
        controlnet_pose=tiny_models["controlnet-pose"],
        pose_estimator=tiny_models["pose-estimator"],
    )
    pose = _run(sd_inpaint.model_fn(str(folder)), keep_body="pose")[0]["controls"]["pose"]
    assert pose["person_detector"] is None and pose["person_boxes"] == "crop" and pose["people"] == 1


# --- asynchronous endpoints --------------------------------------------------------------------


def test_an_asynchronous_endpoint_keeps_the_body_and_writes_the_control_images(model_dir):
    from tryon.server import EndpointConfig, LocalEndpointServer
    from tryon.server.async_api import AsyncOutput

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="async")
        s3.put_object(Bucket="async", Key="in/photo.png", Body=encode_png(PHOTO))
        s3.put_object(Bucket="async", Key="in/mask.png", Body=encode_png(MASK))
        request = {
            **BASE,
            "image": "s3://async/in/photo.png",
            "mask": "s3://async/in/mask.png",
            "keep_body": "depth+pose",
            "num_images": 2,
            "output": "s3://async/results/job/",
        }
        s3.put_object(Bucket="async", Key="req/job.json", Body=json.dumps(request).encode())
        output = AsyncOutput("s3://async/answers/", "s3://async/errors/")
        config = EndpointConfig("inpaint-async", "sd_inpaint", str(model_dir), "async", async_output=output)
        with LocalEndpointServer([config]) as server:
            runtime = boto3.client("sagemaker-runtime", endpoint_url=server.url, region_name="us-east-1")
            runtime.invoke_endpoint_async(
                EndpointName="inpaint-async", InputLocation="s3://async/req/job.json", InferenceId="job-1"
            )
            deadline = time.monotonic() + 120
            while not s3.list_objects_v2(Bucket="async", Prefix="answers/").get("KeyCount"):
                assert not s3.list_objects_v2(Bucket="async", Prefix="errors/").get("KeyCount"), "failed"
                assert time.monotonic() < deadline, "no answer"
                time.sleep(0.1)
        answer = json.loads(s3.get_object(Bucket="async", Key="answers/job-1.out")["Body"].read())
        assert answer["controls"]["keep_body"] == "depth+pose" and len(answer["outputs"]) == 2
        for name in ("depth", "pose"):
            written = answer["controls"][name]["output"]
            assert written["key"] == f"results/job/inpainted-{name}.png"
            s3.head_object(Bucket="async", Key=written["key"])
