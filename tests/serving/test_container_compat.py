"""Each packaged model.tar.gz, served the way the Hugging Face inference image serves it.

For every kind: ``tryon package`` builds the archive from the tiny checkpoints (sd_inpaint with
the tiny LoRA as its default adapter, a fine-tune's adapter as a named one, the tiny IP-Adapter
for garment reference images and the tiny depth/pose ControlNets, estimators and person detector
for ``keep_body``), it is extracted
like SageMaker does, and the same JSON requests go (a) to the local server (``tryon serve``'s
app, this venv: transformers 5 / diffusers 0.42) and (b) through the toolkit's own
``HuggingFaceHandlerService`` in a subprocess under ``.venv-serving`` (the image's library
versions, ``serving/image-requirements.txt``), which imports the handlers from the archive's
``code/``. The answers must agree: status codes, every field but timings, and images pixel for
pixel within ``PIXEL_TOLERANCE``. S3 (inputs, an ``s3://`` adapter, outputs) is a moto server
both sides reach through ``TRYON_S3_ENDPOINT_URL``.

``make test`` builds ``.venv-serving`` first (``make serving-venv``) and sets
``TRYON_REQUIRE_SERVING_VENV=1``, so there the test never skips.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from support.images import b64, box_mask, encode, pixels, structured_photo
from support.paths import REPO

REPO_ROOT = REPO
SERVING_PYTHON = REPO_ROOT / ".venv-serving" / "bin" / "python"
DRIVER = REPO / "tests" / "support" / "container_driver.py"
#: Images from the two stacks may differ by at most 1 (of 255) in at most this fraction of values:
#: diffusers 0.33 and 0.42 round one value in a few tens of thousands differently (measured: one
#: channel of one pixel in 23,040, in one of the six inpainted images; masks and upscales are equal).
PIXEL_TOLERANCE = 1
MAX_DIFFERING_FRACTION = 1e-3
#: Relative tolerance for floats in the answers (coverage, scores).
FLOAT_RTOL = 1e-5
#: The side-specific part of output prefixes, so each side writes its own objects.
SIDE = "{side}"
IN_BUCKET, OUT_BUCKET, ADAPTER_BUCKET = "compat-in", "compat-out", "compat-adapters"
WEIGHTS = {"clipseg": "clipseg", "sd_inpaint": "sd-inpaint", "sd_upscale": "sd-x4-upscaler"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def serving_python() -> Path:
    """The serving venv's interpreter; skips (or, under ``make test``, fails) without it."""
    if not SERVING_PYTHON.exists():
        message = f"{SERVING_PYTHON} is missing: build it with `make serving-venv`"
        if os.environ.get("TRYON_REQUIRE_SERVING_VENV"):
            pytest.fail(message)
        pytest.skip(message)
    return SERVING_PYTHON


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on a free port, with the buckets the requests name."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    for bucket in (IN_BUCKET, OUT_BUCKET, ADAPTER_BUCKET):
        client.create_bucket(Bucket=bucket)
    previous = os.environ.get("TRYON_S3_ENDPOINT_URL")
    os.environ["TRYON_S3_ENDPOINT_URL"] = url
    yield url
    if previous is None:
        os.environ.pop("TRYON_S3_ENDPOINT_URL", None)
    else:
        os.environ["TRYON_S3_ENDPOINT_URL"] = previous
    server.stop()


def _trained_adapter(base: Path, out: Path) -> Path:
    """A LoRA saved the way a fine-tune saves it: UNet and text encoder, alpha != rank."""
    import torch
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig
    from transformers import CLIPTextModel

    from tryon.training.outputs import save_lora_adapter

    unet = UNet2DConditionModel.from_pretrained(base / "unet")
    text_encoder = CLIPTextModel.from_pretrained(base / "text_encoder")
    torch.manual_seed(5)
    targets = ["to_q", "to_k", "to_v", "to_out.0"]
    unet.add_adapter(LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False))
    te_targets = ["q_proj", "k_proj", "v_proj", "out_proj"]
    text_encoder.add_adapter(
        LoraConfig(r=4, lora_alpha=2, target_modules=te_targets, init_lora_weights=False)
    )
    save_lora_adapter(out, unet, text_encoder)
    return out


@pytest.fixture(scope="module")
def model_dirs(tiny_models, s3_endpoint, tmp_path_factory) -> dict[str, Path]:
    """kind -> the archive built by ``tryon package``, extracted as SageMaker extracts it."""
    from tryon.aws.packaging import build_model_archive
    from tryon.weights.tiny import control_parts

    root = tmp_path_factory.mktemp("compat")
    trained = _trained_adapter(tiny_models["sd-inpaint"], root / "trained-adapter")
    dirs = {}
    for kind, weights in WEIGHTS.items():
        extra: dict[str, Any] = {}
        if kind == "sd_inpaint":
            extra = {
                "adapter_dir": tiny_models["lora-a"],
                "named_adapters": {"trained": trained},
                "ip_adapter_dir": tiny_models["ip-adapter"],  # garment reference images
                "control_dirs": control_parts(tiny_models),  # keep_body: depth and pose
            }
        archive = build_model_archive(kind, root / f"{kind}.tar.gz", model_dir=tiny_models[weights], **extra)
        target = root / kind / "model"
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
        dirs[kind] = target
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    lora_b = tiny_models["lora-b"] / "pytorch_lora_weights.safetensors"
    client.upload_file(str(lora_b), ADAPTER_BUCKET, "lora-b/pytorch_lora_weights.safetensors")
    client.put_object(Bucket=IN_BUCKET, Key="photo.png", Body=encode(structured_photo(40, 40)))
    return dirs


def _requests() -> dict[str, list[dict[str, Any]]]:
    photo = structured_photo(96, 80)
    mask = box_mask(photo.size, (24, 16, 64, 56))
    out = f"s3://{OUT_BUCKET}/{{kind}}/{SIDE}/"
    inpaint = {"image": b64(photo), "mask": b64(mask), "prompt": "a red skirt", "steps": 2}
    garment = b64(structured_photo(30, 40))
    return {
        "clipseg": [
            {"image": b64(photo), "queries": ["a skirt", "a shirt"], "negative_queries": ["face"]},
            {"image": b64(photo), "query": "a skirt", "threshold": 0.9, "dilate": 2, "feather": 2},
            {"image": f"s3://{IN_BUCKET}/photo.png", "query": "a skirt", "output": out},
            {"image": b64(photo), "query": "a skirt", "threshold": 3},  # bad: threshold
        ],
        "sd_inpaint": [
            {**inpaint, "seed": 7, "num_images": 2},  # the default adapter (tiny lora-a)
            {**inpaint, "seed": 8, "adapter": "trained", "adapter_scale": 0.7, "sampler": "DPMPP2MSampler"},
            {**inpaint, "seed": 9, "adapter": f"s3://{ADAPTER_BUCKET}/lora-b/", "output": out},
            {**inpaint, "seed": 10, "adapter": "none", "sampler": "LinearMultistepSampler"},
            {**inpaint, "seed": 11, "garment_image": garment, "garment_scale": 0.8},
            {**inpaint, "seed": 12, "adapter": "trained", "garment_image": f"s3://{IN_BUCKET}/photo.png"},
            {**inpaint, "seed": 13, "keep_body": "depth+pose", "num_images": 2, "pose_scale": 1.0},
            {
                **inpaint,
                "seed": 14,
                "keep_body": "pose",
                "adapter": "trained",
                "garment_image": garment,
                "output": out,
            },
            {
                **inpaint,
                "seed": 15,
                "keep_body": "depth",
                "depth_scale": 1.2,
                "depth_start": 0.2,
                "depth_end": 0.9,
            },
            {**inpaint, "steps": 0},  # bad: steps
        ],
        "sd_upscale": [
            {"image": b64(structured_photo(24, 20)), "prompt": "sharp", "steps": 2, "seed": 5},
            {"image": f"s3://{IN_BUCKET}/photo.png", "steps": 1, "seed": 6, "tile_size": 32, "output": out},
            {"image": b64(structured_photo(24, 20)), "noise_level": 999},  # bad: noise_level
        ],
    }


BAD_FIELDS = {"clipseg": "threshold", "sd_inpaint": "steps", "sd_upscale": "noise_level"}


def _bodies(kind: str, side: str) -> list[str]:
    return [json.dumps(r).replace(SIDE, side).replace("{kind}", kind) for r in _requests()[kind]]


def _local_answers(kind: str, model_dir: Path) -> list[dict[str, Any]]:
    """The local server's answers (this venv's libraries), over its ``POST /invocations``."""
    from starlette.testclient import TestClient

    from tryon.server import EndpointConfig, create_app

    app = create_app([EndpointConfig(kind, kind, str(model_dir))])
    answers = []
    with TestClient(app) as client:
        deadline = time.monotonic() + 120
        while (ping := client.get("/ping")).status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.1)  # the models load in the background
        assert ping.status_code == 200, ping.text
        for body in _bodies(kind, "local"):
            response = client.post("/invocations", content=body, headers={"Content-Type": "application/json"})
            answers.append({"status": response.status_code, "body": response.text})
    return answers


def _start_toolkit(python: Path, kind: str, model_dir: Path, work: Path, s3_url: str) -> subprocess.Popen:
    requests_path, answers_path = work / f"{kind}-requests.json", work / f"{kind}-answers.json"
    requests_path.write_text(json.dumps(_bodies(kind, "toolkit")))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(work)),
        "HF_HUB_OFFLINE": "1",
        "TRYON_S3_ENDPOINT_URL": s3_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "TRYON_ADAPTER_CACHE_DIR": str(work / f"{kind}-adapters"),
        "OMP_NUM_THREADS": "1",
    }
    log = (work / f"{kind}.log").open("w")
    return subprocess.Popen(
        [str(python), str(DRIVER), str(model_dir), str(requests_path), str(answers_path)],
        env=env,
        cwd=work,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture(scope="module")
def answers(serving_python, model_dirs, s3_endpoint, tmp_path_factory) -> dict[str, dict[str, list]]:
    """kind -> {"local": [...], "toolkit": [...]}: the toolkit runs in subprocesses meanwhile."""
    work = tmp_path_factory.mktemp("toolkit")
    procs = {k: _start_toolkit(serving_python, k, d, work, s3_endpoint) for k, d in model_dirs.items()}
    local = {kind: _local_answers(kind, model_dirs[kind]) for kind in model_dirs}
    result = {}
    for kind, proc in procs.items():
        code = proc.wait(timeout=240)
        log = (work / f"{kind}.log").read_text()
        assert code == 0, f"toolkit driver for {kind} exited {code}:\n{log[-4000:]}"
        toolkit = json.loads((work / f"{kind}-answers.json").read_text())
        result[kind] = {"local": local[kind], "toolkit": toolkit}
    return result


def _assert_close_pixels(a: np.ndarray, b: np.ndarray, what: str) -> None:
    assert a.shape == b.shape, f"{what}: {a.shape} != {b.shape}"
    diff = np.abs(a.astype(int) - b.astype(int))
    assert int(diff.max()) <= PIXEL_TOLERANCE, f"{what}: pixels differ by up to {int(diff.max())}"
    assert float(np.mean(diff > 0)) <= MAX_DIFFERING_FRACTION, f"{what}: {np.mean(diff > 0):.2%} differ"


def _assert_same(local: Any, toolkit: Any, path: str = "") -> None:
    """Equal JSON, except timings; base64 PNGs compared by pixels; floats within FLOAT_RTOL."""
    if isinstance(local, dict):
        assert isinstance(toolkit, dict) and set(local) == set(toolkit), path
        for key in local:
            if key not in {"timings_ms", "compute_seconds"}:
                _assert_same(local[key], toolkit[key], f"{path}.{key}")
    elif isinstance(local, list):
        assert isinstance(toolkit, list) and len(local) == len(toolkit), path
        for i, (a, b) in enumerate(zip(local, toolkit, strict=True)):
            _assert_same(a, b, f"{path}[{i}]")
    elif isinstance(local, str) and local.startswith("iVBOR"):
        _assert_close_pixels(pixels(local), pixels(toolkit), path)
    elif isinstance(local, str):
        assert local.replace("/local/", "/toolkit/") == toolkit, path
    elif isinstance(local, float):
        assert toolkit == pytest.approx(local, rel=FLOAT_RTOL, abs=1e-7), path
    else:
        assert local == toolkit, path


@pytest.mark.parametrize("kind", list(WEIGHTS))
def test_toolkit_answers_as_the_local_server(kind, answers):
    local, toolkit = answers[kind]["local"], answers[kind]["toolkit"]
    assert [a["status"] for a in local] == [a["status"] for a in toolkit]
    assert [a["status"] for a in local][:-1] == [200] * (len(local) - 1), local
    for i, (a, b) in enumerate(zip(local[:-1], toolkit[:-1], strict=True)):
        _assert_same(json.loads(a["body"]), json.loads(b["body"]), f"{kind}[{i}]")


@pytest.mark.parametrize("kind", list(WEIGHTS))
def test_bad_request_is_a_4xx_naming_the_field(kind, answers):
    field = BAD_FIELDS[kind]
    local, toolkit = answers[kind]["local"][-1], answers[kind]["toolkit"][-1]
    assert local["status"] == 400 and toolkit["status"] == 400
    error = json.loads(local["body"])
    assert error["field"] == field and error["error"].startswith(f"{field}: ")
    # the toolkit answers the handler's own message (no exception name, no traceback)
    assert toolkit["body"] == error["error"]


@pytest.mark.parametrize("kind", list(WEIGHTS))
def test_images_written_to_s3_agree(kind, answers, s3_endpoint):
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")

    def objects(side: str) -> dict[str, np.ndarray]:
        prefix = f"{kind}/{side}/"
        listing = client.list_objects_v2(Bucket=OUT_BUCKET, Prefix=prefix).get("Contents", [])
        return {
            o["Key"].removeprefix(prefix): pixels(
                client.get_object(Bucket=OUT_BUCKET, Key=o["Key"])["Body"].read()
            )
            for o in listing
        }

    local, toolkit = objects("local"), objects("toolkit")
    assert local and set(local) == set(toolkit)
    for name, found in local.items():
        _assert_close_pixels(found, toolkit[name], f"{kind}/{name}")


def test_every_library_class_the_body_controls_use_is_in_the_serving_image(serving_python):
    """keep_body's library classes exist in the image's diffusers 0.33.1 and transformers 4.51.3."""
    from tryon.handlers.controls import LIBRARY_CLASSES

    check = "import importlib, json, sys\n" + "\n".join(
        f"m = importlib.import_module({library!r}); print({library!r}, m.__version__, "
        f"json.dumps([n for n in {list(names)!r} if not hasattr(m, n)]))"
        for library, names in LIBRARY_CLASSES.items()
    )
    found = subprocess.run(
        [str(serving_python), "-c", check],
        env={"PATH": os.environ.get("PATH", ""), "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.returncode == 0, found.stderr[-2000:]
    versions = {}
    for line in found.stdout.splitlines():
        library, version, missing = line.split(" ", 2)
        versions[library] = version
        assert json.loads(missing) == [], f"{library} {version} lacks {missing}"
    assert versions == {"diffusers": "0.33.1", "transformers": "4.51.3"}


def test_driver_never_sees_the_repository_sources(serving_python):
    """The subprocess must import the archive's vendored code, not src/ (no PYTHONPATH, no install)."""
    found = subprocess.run(
        [str(serving_python), "-c", "import importlib.util; print(importlib.util.find_spec('tryon'))"],
        env={"PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.stdout.strip() == "None", found.stdout + found.stderr
