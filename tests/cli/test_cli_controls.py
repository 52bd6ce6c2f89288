"""tryon run / submit --keep-body, --depth-scale, --pose-scale: checked before models load, sent as metadata,
and a local run on the tiny default models (which carry ControlNets) writes the control images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tryon.cli import EXIT_BAD_INPUT, run
from tryon.local.samples import noise_image

REGION = "us-east-1"
STACK = "tryon-keep-body"


def _photo(path: Path, size=(96, 64)) -> Path:
    noise_image(size, 3).save(path)  # the tiny CLIPSeg masks all of it at threshold 0
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--keep-body", "skeleton"],
            "keep_body (from metadata): must be one of none, depth, pose, depth+pose",
        ),
        (
            ["--keep-body", "pose", "--pose-scale", "2.5"],
            "pose_scale (from metadata): must be <= 2.0, got 2.5",
        ),
        (["--depth-scale", "-1"], "depth_scale (from metadata): must be >= 0.0, got -1.0"),
        (
            ["--keep-body", "pose", "--set", "pose_start=0.9", "--set", "pose_end=0.1"],
            "pose_start: 0.9 must be < pose_end 0.1",
        ),
    ],
)
def test_run_refuses_bad_keep_body_values_before_loading_models(args, message, tmp_path, capsys):
    photo = _photo(tmp_path / "p.png")
    assert run(["run", str(photo), *args, "--out", str(tmp_path / "out")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_run_keeps_the_body_with_the_tiny_default_models(tmp_path, capsys):
    photo = _photo(tmp_path / "look.png")
    out = tmp_path / "out"
    code = run(["run", str(photo), "--keep-body", "pose+depth", "--pose-scale", "1.0", "--steps", "1",
                "--no-upscale", "--no-progress", "--out", str(out),
                "--set", "threshold=0", "--set", "negative_queries="])  # fmt: skip
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["keep_body"] == "depth+pose" and manifest["controls"]["pose"]["scale"] == 1.0
    for name in ("depth", "pose"):
        assert (out / f"inpainted-{name}.png").exists() and f"inpainted-{name}.png" in stdout


@pytest.fixture
def deployed(tiny_models):
    """A 'deployed' stack whose inpainting endpoint carries the tiny ControlNets."""
    from tryon.local import LocalWorkflow
    from tryon.local.deployed import publish_stack
    from tryon.local.runner import TINY_PARAMETERS

    dirs = {"clipseg": tiny_models["clipseg"], "sd_inpaint": tiny_models["sd-inpaint-controls"]}
    # threshold 0 and no negative queries: the tiny CLIPSeg's mask is never empty
    parameters = {**TINY_PARAMETERS, "DefaultThreshold": 0.0, "DefaultNegativeQueries": ""}
    with LocalWorkflow(
        dirs, parameters=parameters, upscale=False, deliver_events=True, stack_name=STACK
    ) as wf:
        publish_stack(wf, STACK)
        yield wf


@pytest.mark.slow
def test_submit_sends_keep_body_as_metadata(deployed, tmp_path, capsys):
    photo = _photo(tmp_path / "look.jpg")
    out = tmp_path / "out"
    code = run(["submit", str(photo), "--stack", STACK, "--keep-body", "depth", "--depth-scale", "0.8",
                "--pose-scale", "1.5", "--region", REGION, "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().out
    head = deployed.client("s3").head_object(Bucket=deployed.input_bucket, Key="inputs/look.jpg")
    assert head["Metadata"] == {"keep-body": "depth", "depth-scale": "0.8", "pose-scale": "1.5"}
    manifest = json.loads((out / "manifest.json").read_text())
    # pose_scale is the job's, but only depth is kept: the endpoint was asked for depth alone
    assert manifest["controls"]["keep_body"] == "depth" and manifest["controls"]["depth"]["scale"] == 0.8
    assert set(manifest["controls"]) == {"keep_body", "depth"} and (out / "inpainted-depth.png").exists()
