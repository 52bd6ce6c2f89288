"""bench.gpu_suite in its reduced CPU form: every case runs through the real handlers and reports its fields.

The GPU run is rare (a lent machine, minutes of it), so the suite must work the first time:
this runs the very same code on reduced-width pipelines at 64 px (SDXL at 1024 px, the only
size class its handler accepts) and checks each row the docs' tables are built from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def _suite(repo_root, *args: str) -> subprocess.CompletedProcess:
    """``python -m bench.gpu_suite ARGS`` from the repository root, as the docs run it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRYON_DEVICE": "cpu"}
    return subprocess.run(
        [sys.executable, "-m", "bench.gpu_suite", *args],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def suite_run(repo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-suite") / "suite.json"
    done = _suite(repo_root, "--reduced", "--repeats", "1", "--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    written = json.loads(out.read_text())
    assert "physical floor:" in done.stdout and "sd2-inpaint 1 image:" in done.stdout
    return written["rows"], written


def _rows(rows, case, **match):
    return [r for r in rows if r["case"] == case and all(r.get(k) == v for k, v in match.items())]


def test_every_case_ran_without_error(suite_run):
    rows, written = suite_run
    assert [r for r in rows if "error" in r] == []
    assert [r["case"] for r in rows if "variant" in r][:2] == ["matmul", "floor"]
    assert {r["case"] for r in rows} == set(written["cases"]) and "sd2-compile" in written["cases"]
    assert written["reduced"] is True and written["device"].startswith("CPU")


def test_latency_rows_have_their_fields(suite_run):
    rows, _ = suite_run
    timed = [r for r in rows if "latency_s" in r and r["case"] != "matmul"]
    for row in timed:
        assert row["latency_s"] > 0 and row["peak_mib"] > 0 and row["images_per_s"] > 0, row
        assert 0 < row["inference_s"] <= row["latency_s"], row
    for name in ("sd2-inpaint", "sd15-inpaint"):
        assert {r["images"] for r in _rows(rows, name, variant="plain")} == {1, 4}
        (gain,) = _rows(rows, name, variant="batch gain")
        assert gain["batched_4_vs_1_each"] > 0
    assert _rows(rows, "sdxl-inpaint", variant="plain", images=1, px=1024)
    assert all(r["attention"] == "AttnProcessor2_0" for r in rows if "attention" in r)  # SDPA


def test_channels_last_and_compile_are_reported_against_plain(suite_run):
    rows, _ = suite_run
    (channels_last,) = _rows(rows, "sd2-inpaint", variant="channels-last")
    (compiled,) = _rows(rows, "sd2-compile", variant="compile (eager)")
    assert _rows(rows, "sd2-compile", variant="plain", images=1)
    assert channels_last["vs_plain"] > 0 and compiled["vs_plain"] > 0


def test_keep_body_rows_cost_each_control_against_plain(suite_run):
    rows, _ = suite_run
    variants = {r["variant"]: r for r in _rows(rows, "keep-body")}
    assert list(variants) == ["none", "depth", "pose", "depth+pose"]
    assert variants["none"]["cost_vs_plain"] == 1.0 and "estimate_s" not in variants["none"]
    for name in ("depth", "pose", "depth+pose"):
        row = variants[name]
        assert row["cost_vs_plain"] > 0 and 0 < row["estimate_s"] < row["latency_s"], row
        assert row["images"] == 1 and row["px"] == 64


def test_upscaler_tiles_training_and_the_floor(suite_run):
    rows, _ = suite_run
    one_pass, tiled, one_per_call = _rows(rows, "x4-upscaler")
    assert one_pass["tiles"] == 1 and tiled["tiles"] > 1 and one_pass["px"] == "64->256"
    # reduced on a CPU the handler runs a small model's tiles one per call; on a GPU, 4 per call
    assert tiled["tiles_per_call"] == 1 and one_per_call["tiles_per_call"] == 1
    assert one_per_call["variant"] == "tile 32, one per call" and one_per_call["tiles"] == tiled["tiles"]
    full, lora = _rows(rows, "train")
    assert full["variant"] == "full" and lora["variant"] == "lora" and lora["vs_full"] > 0
    assert lora["trainable_m"] < full["trainable_m"]
    (matmul,) = _rows(rows, "matmul")
    (floor,) = _rows(rows, "floor")
    assert matmul["tflops"] > 0 and floor["tflop_per_request"] > 0
    assert floor["floor_ms"] == pytest.approx(floor["tflop_per_request"] / matmul["tflops"] * 1000, rel=0.01)


def test_unknown_case_is_refused(repo_root):
    done = _suite(repo_root, "--only", "sd3")
    assert done.returncode == 2 and "unknown case(s) sd3; known: matmul, floor" in done.stderr
