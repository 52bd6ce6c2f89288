"""What a failed local execution prints, whole: the state list, one `error:` line, the failure record.

Run in a subprocess, as a user runs `tryon`: the exit code is the process's own (a handler
thread left inside torch at interpreter exit once aborted it with exit 134), and stdout and
stderr are exactly what a terminal shows.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.images import save_photo
from support.paths import REPO

pytestmark = pytest.mark.slow

#: Runs the CLI with the real-time limit lowered to ``argv[1]`` seconds (the upscaler of a 512 px
#: photo takes far longer with the tiny models; segmenting and inpainting take well under a second),
#: and an upscaler figure (UpscaleTileStepSeconds) so optimistic that Prepare's estimate lets every
#: upscale through: the endpoint's own limit is what ends it.
_RUN_WITH_LIMIT = """
import dataclasses, sys
from tryon.core import kinds, upscale_budget
from tryon.local import runner
limit = float(sys.argv[1])
realtime = kinds.MODE_LIMITS["realtime"]
kinds.MODE_LIMITS["realtime"] = dataclasses.replace(realtime, max_invocation_seconds=limit)
runner.TINY_PARAMETERS[upscale_budget.TILE_STEP_SECONDS_PARAMETER] = 0.001
from tryon.cli import run
sys.exit(run(sys.argv[2:]))
"""

#: Runs the CLI as it is (``tryon`` on the PATH).
_RUN = "import sys; from tryon.cli import run; sys.exit(run(sys.argv[1:]))"

STATES_UP_TO_UPSCALE = [
    "  -> Receive",
    "  <- Receive",
    "  -> Prepare",
    "  <- Prepare",
    "  -> AlreadyComplete",
    "  <- AlreadyComplete",
    "  -> ModerateInputs",
    "  <- ModerateInputs",
    "  -> SegmentRequested",
    "  <- SegmentRequested",
    "  -> SegmentMode",
    "  <- SegmentMode",
    "  -> Segment",
    "  <- Segment",
    "  -> MaskFound",
    "  <- MaskFound",
    "  -> InpaintMode",
    "  <- InpaintMode",
    "  -> Inpaint",
    "  <- Inpaint",
    "  -> UpscaleRequested",
    "  <- UpscaleRequested",
    "  -> UpscaleMode",
    "  <- UpscaleMode",
    "  -> Upscale",
]


def _cli(tmp_path: Path, *argv: str, limit: float = 5.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    env.pop("TRYON_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-c", _RUN_WITH_LIMIT, str(limit), *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _without_durations(lines: list[str]) -> list[str]:
    return [re.sub(r" \(\d+\.\d\d s\)$", "", line) for line in lines]


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    return save_photo(tmp_path_factory.mktemp("photo") / "look.png", (512, 512))


def test_a_timed_out_step_exits_1_with_the_state_list_one_error_line_and_the_record(tmp_path, photo):
    done = _cli(tmp_path, "run", str(photo), "--upscale", "--no-progress", "--seed", "1")
    assert done.returncode == 1, done.stderr  # was 134: "terminate called without an active exception"
    out = done.stdout.splitlines()
    assert out[:4] == [
        "models: tiny random checkpoints (the images are noise; pass --models for real ones)",
        "starting the local stack and loading the models",
        "uploaded s3://tryon-local-input/inputs/look.png",
        out[3],
    ] and out[3].startswith("EventBridge started event-")
    assert _without_durations(out[4:]) == [
        *STATES_UP_TO_UPSCALE,
        "  !! Upscale: EndpointTimeout",
        "  <- Upscale",
        "  -> RecordFailure",
        "  <- RecordFailure",
        "  -> RefusedOrFailed",
        "  <- RefusedOrFailed",
        "  -> Failed",
    ]
    err = done.stderr.splitlines()
    assert err == [
        "error: upscale: endpoint tryon-sd-upscale ran past SageMaker's 60 s invocation limit: use smaller "
        "inputs or fewer steps, or an asynchronous endpoint for long work; here: --mode sd_upscale=async "
        "runs it on an asynchronous endpoint",
        err[1],
    ], done.stderr
    assert re.fullmatch(
        r"failure record: s3://tryon-local-output/failures/[0-9a-f]{20}\.json "
        r"\(copied to out/failure\.json\)",
        err[1],
    )
    record = json.loads((tmp_path / "out" / "failure.json").read_text())
    assert record["error"] == "EndpointTimeout" and record["step"] == "upscale"


def test_json_stdout_is_one_object_when_a_step_fails_and_stderr_one_line(tmp_path, photo):
    argv = ["run", str(photo), "--adapter", "no-such-garment", "--json", "--no-progress", "--seed", "1"]
    done = _cli(tmp_path, *argv, limit=60)
    assert done.returncode == 1, done.stderr
    answer = json.loads(done.stdout)  # the whole of stdout: no log line before it
    assert answer["status"] == "FAILED" and answer["error"] == "ModelError"
    assert answer["cause"].startswith("inpaint: ") and "no-such-garment" in answer["cause"]
    assert answer["files"] == ["out/failure.json"]
    err = done.stderr.splitlines()
    # the human lines go to stderr with --json; no log record, warning, notice or progress bar
    assert [
        line for line in err if not line.startswith(("  ", "models:", "starting", "uploaded", "Event"))
    ] == [err[-1]]
    assert err[-1] == f"error: {answer['cause']}"


def test_an_upscale_its_real_time_endpoint_cannot_finish_is_refused_before_any_model_loads(tmp_path):
    """A 900x1200 photo: 6 tiles of the x4 upscaler, far past a real-time call's 60 s (issue 24)."""
    large = tmp_path / "my-photo.jpg"
    save_photo(large, (900, 1200))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    env.pop("TRYON_DEBUG", None)
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _RUN, "run", "my-photo.jpg", "--query", "a skirt", "--upscale"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.monotonic() - start
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""  # no model was loaded, no stack started
    assert done.stderr.splitlines() == [
        "error: upscale: the photo is 900x1200: the x4 upscaler cuts it into 6 tiles of 512 px and would "
        "take about 105 s (6 tiles x (2 steps + 5 for decoding) x 2.5 s, UpscaleTileStepSeconds), more than "
        "80% of a real-time endpoint's per-call limit (60 s): serve the upscaler asynchronously (template "
        "parameter UpscaleMode=async; tryon run: --mode sd_upscale=async), upload a photo of at most 512x683 "
        "px or set upscale to false"
    ]
    assert not (tmp_path / "out").exists()
    assert took < 30, f"the refusal took {took:.0f} s"  # docs/workflow.md: "in about a second"


def test_training_on_few_photos_warns_in_one_line_without_its_source(tmp_path, tiny_models):
    """`train local` with one photo: one `warning:` line, not Python's file:line and source line."""
    photos = tmp_path / "photos"
    photos.mkdir()
    save_photo(photos / "a.png", (64, 64))
    argv = [
        "train", "local", "--pretrained-model", str(tiny_models["sd-inpaint"]),
        "--instance-data-dir", "photos/", "--instance-prompt", "a photo of sks skirt",
        "--mask-query", "a skirt",
        "--clipseg-model", str(tiny_models["clipseg"]), "--output-dir", "out/train",
        "--max-train-steps", "1", "--resolution", "64",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    env.pop("TRYON_DEBUG", None)
    done = subprocess.run(
        [sys.executable, "-c", _RUN, *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if "usable image" in line]
    assert warned == [
        "warning: instance_data_dir: only 1 usable image(s) in photos; DreamBooth needs at least 5 (about 12 "
        "is typical) to learn the garment rather than the photos"
    ]
    assert "Warning" not in done.stderr and "warnings.warn" not in done.stderr and ".py:" not in done.stderr
    assert done.stdout.startswith("trained 1 steps in ")
