"""The upscaler's time budget: tiles, the estimate, and the plan Prepare holds against each mode's limit."""

from __future__ import annotations

import re

import pytest
from support.paths import REPO

from tryon.core import kinds, upscale_budget
from tryon.core.errors import RequestError
from tryon.core.upscale_budget import DECODE_STEPS, HEADROOM, plan, tile_grid

G5 = upscale_budget.DEFAULT_TILE_STEP_SECONDS


def _plan(width: int, height: int, steps: int = 20, mode: str = "realtime", seconds: float = G5) -> dict:
    return plan(
        width, height, steps=steps, mode=mode, seconds_per_tile_step=seconds, async_invocation_seconds=900
    )


@pytest.mark.parametrize(
    ("size", "tiles", "tile"),
    [
        ((512, 512), 1, (512, 512)),  # one pass
        ((300, 200), 1, (304, 200)),  # one pass, padded to a multiple of 8
        ((900, 1200), 6, (512, 512)),  # 2 columns x 3 rows of the endpoint's 512 px tiles
        ((513, 100), 2, (512, 104)),
        ((2048, 2048), 25, (512, 512)),
    ],
)
def test_the_grid_is_the_cut_the_handler_makes(size, tiles, tile):
    grid = tile_grid(*size)
    assert (grid.tiles, (grid.tile_width, grid.tile_height)) == (tiles, tile)


def test_the_tile_side_is_the_endpoints_setting(monkeypatch):
    monkeypatch.setenv(upscale_budget.TILE_SIDE_VARIABLE, "256")
    grid = tile_grid(512, 512)
    assert (grid.tiles, grid.tile_side, grid.area_fraction) == (9, 256, 1.0)  # overlap 64: 3 x 3


def test_the_estimate_is_tiles_times_steps_plus_decoding_times_the_tile_step():
    assert upscale_budget.estimate_seconds(tile_grid(900, 1200), 20, 2.0) == 6 * (20 + DECODE_STEPS) * 2.0
    small = tile_grid(256, 256)  # a quarter of a full tile's pixels
    assert upscale_budget.estimate_seconds(small, 20, 2.0) == pytest.approx(0.25 * (20 + DECODE_STEPS) * 2.0)


def test_a_photo_a_real_time_endpoint_cannot_finish_is_refused_with_the_numbers_and_the_way_out():
    with pytest.raises(RequestError) as refused:
        _plan(900, 1200, steps=2)
    assert str(refused.value) == (
        "upscale: the photo is 900x1200: the x4 upscaler cuts it into 6 tiles of 512 px and would take "
        "about 105 s (6 tiles x (2 steps + 5 for decoding) x 2.5 s, UpscaleTileStepSeconds), more than 80% "
        "of a real-time endpoint's per-call limit (60 s): serve the upscaler asynchronously (template "
        "parameter UpscaleMode=async; tryon run: --mode sd_upscale=async), upload a photo of at most "
        "512x683 px or set upscale to false"
    )


def test_the_refusal_docs_workflow_md_shows_is_the_one_prepare_gives():
    page = (REPO / "docs" / "workflow.md").read_text()
    with pytest.raises(RequestError) as refused:
        _plan(900, 1200, steps=20)
    assert f"\n{refused.value}\n" in page


def test_what_the_refusal_suggests_fits():
    with pytest.raises(RequestError) as refused:
        _plan(512, 512, steps=20)
    message = str(refused.value)
    steps = int(re.search(r"set upscale_steps to at most (\d+)", message).group(1))
    width, height = map(int, re.search(r"a photo of at most (\d+)x(\d+) px", message).groups())
    assert _plan(512, 512, steps=steps)["estimated_seconds"] <= 60 * HEADROOM
    assert _plan(width, height, steps=20)["estimated_seconds"] <= 60 * HEADROOM
    with pytest.raises(RequestError):
        _plan(512, 512, steps=steps + 1)
    with pytest.raises(RequestError):
        _plan(width + 8, height + 8, steps=20)


def test_the_plan_records_the_mode_the_tiles_the_estimate_and_the_limit():
    assert _plan(256, 256, steps=2) == {
        "mode": "realtime",
        "tiles": 1,
        "tile": [256, 256],
        "steps": 2,
        "estimated_seconds": 4.4,
        "limit_seconds": kinds.MODE_LIMITS["realtime"].max_invocation_seconds,
        "tile_step_seconds": G5,
    }


def test_an_asynchronous_endpoint_takes_long_upscales_up_to_its_invocation_timeout():
    accepted = _plan(900, 1200, steps=20, mode="async")
    assert (accepted["mode"], accepted["estimated_seconds"], accepted["limit_seconds"]) == (
        "async",
        375.0,
        900,
    )
    with pytest.raises(RequestError, match=r"raise AsyncInvocationTimeoutSeconds \(at most 3600\)"):
        _plan(2048, 2048, steps=20, mode="async")  # 1562 s: past 900 s, within 3600
    with pytest.raises(RequestError) as refused:
        _plan(2048, 2048, steps=150, mode="async")  # past even 3600 s: raising it would not help
    assert "AsyncInvocationTimeoutSeconds (900 s)" in str(refused.value)
    assert "raise AsyncInvocationTimeoutSeconds" not in str(refused.value)


def test_a_faster_instance_takes_what_a_slower_one_refuses():
    with pytest.raises(RequestError):
        _plan(900, 1200, steps=20)
    assert _plan(900, 1200, steps=20, seconds=0.25)["estimated_seconds"] == 37.5


@pytest.mark.parametrize("raw", ["fast", "0", "601", "nan"])
def test_a_bad_tile_step_setting_is_named(raw):
    with pytest.raises(RequestError, match=r"^TRYON_UPSCALE_TILE_STEP_SECONDS: must be a number of seconds"):
        upscale_budget.tile_step_seconds({upscale_budget.TILE_STEP_SECONDS_VARIABLE: raw})
    assert upscale_budget.tile_step_seconds({}) == G5
