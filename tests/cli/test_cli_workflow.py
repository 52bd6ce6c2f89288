"""The workflow commands as a user runs them.

`demo` and `run` on one machine; `submit`, `status`, `results` against a stack on moto whose
outputs point at the local harness's buckets and state machine, with EventBridge delivery
emulated, so an upload alone starts the execution as in AWS.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from support.images import save_photo

from tryon.cli import EXIT_AWS, EXIT_BAD_INPUT, EXIT_WORKFLOW_FAILED, run

REGION = "us-east-1"
STACK = "tryon-test"
#: The shopper photos the commands get (a gradient; larger than the tiny models' 64 px).
PHOTO_SIZE = (300, 200)


def _state_lines(out: str) -> list[str]:
    return [line.strip()[3:].split(" (")[0] for line in out.splitlines() if line.strip().startswith("<- ")]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, tiny_models):
    out = tmp_path_factory.mktemp("demo") / "out"
    capture = pytest.MonkeyPatch()
    import io
    import sys

    buffer = io.StringIO()
    capture.setattr(sys, "stdout", buffer)
    try:
        code = run(["demo", "--out", str(out)])
    finally:
        capture.undo()
    return code, out, buffer.getvalue()


def test_demo_writes_what_the_stack_writes(demo_run):
    code, out, stdout = demo_run
    assert code == 0, stdout
    assert _state_lines(stdout) == [
        "Receive", "Prepare", "AlreadyComplete", "ModerateInputs", "SegmentRequested", "SegmentMode",
        "Segment", "MaskFound",
        "InpaintMode", "Inpaint", "UpscaleRequested", "UpscaleMode", "Upscale", "ModerateResults", "Finalize",
    ]  # fmt: skip
    assert "EventBridge started" in stdout
    # with the tiny checkpoints the demo works on a 256 px copy of its 512 px photo, so the tiny
    # upscaler stays far inside the real-time 60 s on a busy machine (tryon.local.runner.DEMO_TINY_SIDE)
    assert stdout.startswith("photo: assets/astronaut.jpg, at 256 px for the tiny checkpoints (query ")
    with Image.open(out / "mask.png") as mask:
        assert (mask.mode, mask.size) == ("L", (256, 256))
    with Image.open(out / "inpainted-0.png") as painted:
        assert (painted.mode, painted.size) == ("RGB", (256, 256))
    with Image.open(out / "upscaled-0.png") as upscaled:
        assert upscaled.size == (1024, 1024)
    with Image.open(out / "preview.jpg") as preview:
        assert preview.format == "JPEG" and preview.width > preview.height
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "succeeded" and manifest["source"] == "s3-event"
    assert manifest["params"]["query"] == "an orange space suit" and manifest["params"]["upscale"] is True
    assert manifest["input"]["key"] == "inputs/astronaut.jpg"
    plan = manifest["upscale_plan"]  # the real-time path, and an estimate far inside its limit
    assert (plan["mode"], plan["tiles"], plan["limit_seconds"]) == ("realtime", 1, 60.0)
    assert plan["estimated_seconds"] < 10
    assert manifest["seeds"] == [1234]
    for uri in [
        manifest["outputs"]["mask"],
        *manifest["outputs"]["inpainted"],
        *manifest["outputs"]["upscaled"],
    ]:
        assert (out / uri.rsplit("/", 1)[-1]).exists()


def test_run_on_own_photo_with_overrides(tmp_path, tiny_models, capsys):
    photo = save_photo(tmp_path / "shopper.png", PHOTO_SIZE)
    out = tmp_path / "out"
    (out).mkdir()
    (out / "upscaled-0.png").write_bytes(b"stale")  # an earlier run's file is replaced, not mixed in
    code = run(
        ["run", str(photo), "--query", "a shirt", "--prompt", "a denim jacket", "--num-images", "2",
         "--set", "dilate=2", "--no-upscale", "--no-progress", "--out", str(out), "--json"]
    )  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    answer = json.loads(captured.out)  # --json: stdout is one JSON object; progress went to stderr
    assert (answer["status"], answer["outcome"], answer["error"]) == ("SUCCEEDED", "succeeded", None)
    assert sorted(Path(f).name for f in answer["files"]) == sorted(p.name for p in out.iterdir())
    assert answer["artifact"].endswith("/manifest.json") and "<- Finalize" in captured.err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["num_images"] == 2 and manifest["params"]["dilate"] == 2
    assert manifest["params"]["upscale"] is False
    for i in range(2):
        with Image.open(out / f"inpainted-{i}.png") as img:
            assert img.size == (300, 200)
    assert not (out / "upscaled-0.png").exists()
    assert photo.read_bytes() == save_photo(tmp_path / "again.png", PHOTO_SIZE).read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.jpg"], "IMAGE: missing.jpg is not a file"),
        (["run", "{text}"], "IMAGE: is not a decodable PNG, JPEG or WebP image"),
        (["run", "{photo}", "--steps", "0"], "steps (from metadata): must be >= 1, got 0"),
        (["run", "{photo}", "--refiner-strength", "1.5"], "refiner_strength (from metadata): must be <= 1.0"),
        (["run", "{photo}", "--refiner-steps", "2"], "0.3 x refiner_steps 2 leaves no refining"),
        (["run", "{photo}", "--set", "colour=red"], "unknown parameter(s) colour"),
        (["run", "{photo}", "--set", "steps"], "--set expects NAME=VALUE"),
        (["run", "{photo}", "--prompt", "ein blaues Kleid für Jürgen"], "S3 metadata must be ASCII"),
        (["run", "{photo}", "--models", "clipseg=./no/such/folder"], "neither a model folder"),
        (["run", "{photo}", "--models", "sd_inpaint"], "--models: expects KIND=VALUE"),
    ],
)
def test_run_refuses_bad_input_before_loading_models(args, message, tmp_path, capsys):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    photo = save_photo(tmp_path / "p.png", PHOTO_SIZE)
    argv = [a.format(text=text, photo=photo) for a in args]
    assert run(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_run_checks_an_upscale_against_the_mode_it_will_run_in(tmp_path):
    """`tryon run`'s check before any model loads: the local stack's own defaults, presets and modes."""
    from tryon.core.errors import RequestError
    from tryon.local.runner import TINY_PARAMETERS, check_job, check_photo

    header = check_photo(save_photo(tmp_path / "large.jpg", (900, 1200)))
    with pytest.raises(RequestError, match=r"cuts it into 6 tiles of 512 px and would take about 105 s"):
        check_job(header, {"upscale": True}, parameters=TINY_PARAMETERS)  # TINY: 2 upscale steps
    on_async = check_job(header, {"upscale": True}, parameters=TINY_PARAMETERS, modes={"sd_upscale": "async"})
    assert (on_async["mode"], on_async["tiles"], on_async["steps"]) == ("async", 6, 2)
    assert check_job(header, {"upscale": True}, parameters=TINY_PARAMETERS, upscale=False) is None
    assert check_job(header, {}, parameters=TINY_PARAMETERS) is None  # DefaultUpscale: false
    small = check_photo(save_photo(tmp_path / "small.jpg", (300, 200)))
    assert check_job(small, {"upscale": True, "upscale_steps": 20})["steps"] == 20  # the template's defaults
    with pytest.raises(RequestError, match=r"^preset: unknown preset 'nope'"):
        check_job(small, {}, "nope")


@pytest.fixture(scope="module")
def deployed(tiny_models):
    """A 'deployed' stack: the harness's resources plus a CloudFormation stack exposing them."""
    from tryon.local import LocalWorkflow
    from tryon.local.deployed import publish_stack
    from tryon.local.runner import TINY_PARAMETERS

    dirs = {"clipseg": tiny_models["clipseg"], "sd_inpaint": tiny_models["sd-inpaint"]}
    with LocalWorkflow(dirs, parameters=TINY_PARAMETERS, upscale=False, deliver_events=True) as wf:
        publish_stack(wf, STACK)
        yield wf


def test_submit_follows_the_execution_and_downloads(deployed, tmp_path, capsys):
    photo = save_photo(tmp_path / "look.jpg", PHOTO_SIZE)
    out = tmp_path / "out"
    # --no-refiner: an SD 2 endpoint (no refiner) accepts use_refiner false
    code = run(["submit", str(photo), "--stack", STACK, "--query", "a coat", "--steps", "2", "--no-refiner",
                "--region", REGION, "--out", str(out)])  # fmt: skip
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    assert "Prepare" in _state_lines(stdout) and "Finalize" in _state_lines(stdout)
    head = deployed.client("s3").head_object(Bucket=deployed.input_bucket, Key="inputs/look.jpg")
    assert head["Metadata"] == {"query": "a coat", "steps": "2", "use-refiner": "false"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["query"] == "a coat" and manifest["params"]["steps"] == 2
    assert manifest["params"]["use_refiner"] is False and manifest["refiner"] is None
    assert (out / "mask.png").exists() and (out / "inpainted-0.png").exists()

    # status and results find the same execution by its job id
    assert run(["status", manifest["job_id"], "--stack", STACK, "--region", REGION]) == 0
    status = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert status["status"] == "SUCCEEDED" and status["artifact"] == manifest["outputs"]["manifest"]
    assert run(["status", manifest["job_id"], "--stack", STACK, "--region", REGION, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)  # the whole of stdout
    assert status["outcome"] == "succeeded" and status["artifact"] == manifest["outputs"]["manifest"]
    again = tmp_path / "again"
    assert (
        run(["results", manifest["job_id"], "--stack", STACK, "--region", REGION, "--out", str(again)]) == 0
    )
    assert sorted(p.name for p in again.iterdir()) == sorted(p.name for p in out.iterdir())
    capsys.readouterr()
    third = tmp_path / "third"
    code = run(["results", manifest["job_id"], "--stack", STACK, "--region", REGION,
                "--out", str(third), "--json"])  # fmt: skip
    answer = json.loads(capsys.readouterr().out)  # the whole of stdout
    assert code == 0 and answer["outcome"] == "succeeded"
    assert sorted(Path(f).name for f in answer["files"]) == sorted(p.name for p in out.iterdir())


def test_submit_of_a_failing_job_exits_1_with_the_failure_record(deployed, tmp_path, capsys):
    out, photo = tmp_path / "out", save_photo(tmp_path / "x.png", PHOTO_SIZE)
    code = run(["submit", str(photo), "--stack", STACK, "--adapter", "no-such-garment",
                "--region", REGION, "--out", str(out), "--json"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == EXIT_WORKFLOW_FAILED
    answer = json.loads(captured.out)
    assert answer["status"] == "FAILED" and answer["error"] == "ModelError" and "adapter" in answer["cause"]
    assert "adapter" in captured.err and "uploaded s3://" in captured.err
    files = list(out.iterdir())
    assert len(files) == 1 and files[0].suffix == ".json"
    record = json.loads(files[0].read_text())
    assert record["step"] == "inpaint" and record["error"] == "ModelError"


def test_unknown_stack_and_missing_credentials(deployed, tmp_path, capsys, monkeypatch):
    photo = str(save_photo(tmp_path / "p.png", PHOTO_SIZE))
    assert run(["submit", photo, "--stack", "nope", "--region", REGION]) == EXIT_BAD_INPUT
    assert "no stack named 'nope' in us-east-1" in capsys.readouterr().err
    assert run(["status", "not-a-job", "--stack", STACK, "--region", REGION]) == EXIT_BAD_INPUT
    assert "no execution or job 'not-a-job'" in capsys.readouterr().err
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert run(["submit", photo, "--stack", STACK, "--region", REGION]) == EXIT_AWS
    err = capsys.readouterr().err
    assert "Unable to locate credentials" in err and "Traceback" not in err
