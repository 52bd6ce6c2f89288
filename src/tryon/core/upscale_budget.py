"""How long the x4 upscaler takes for a photo, and whether its endpoint's mode lets it finish (light).

The upscaler runs a photo in one pass up to :func:`tile_side` px per side and cuts larger ones
into overlapping tiles (:func:`tile_grid`, the very cut the handler makes). Each tile costs its
denoising steps plus the VAE decode of its 4x output, so a job's upscale takes about::

    tiles x (tile area / full tile area) x (steps + DECODE_STEPS) x tile_step_seconds

per image (one endpoint call each), where ``tile_step_seconds`` is what one denoising step of
one full tile takes on the endpoint's instance: the template parameter
``UpscaleTileStepSeconds`` (:data:`TILE_STEP_SECONDS_PARAMETER`), measured per instance type
(docs/benchmarks.md#upscaler-time-budget). Prepare refuses, before any model runs, an upscale
whose estimate does not fit :data:`HEADROOM` of the endpoint's invocation limit (60 s for a
real-time endpoint, :data:`tryon.core.kinds.MODE_LIMITS`; ``AsyncInvocationTimeoutSeconds``
for an asynchronous one), naming the numbers and what to change; the plan it accepted goes
into the job and the manifest (:func:`plan`). Standard library only: Lambda code uses it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tryon.core import schema
from tryon.core.errors import RequestError
from tryon.core.kinds import MODE_LIMITS, EndpointMode

_KIND = schema.kind("sd_upscale")
#: The largest side upscaled in one pass, and so the tile side (the endpoint's own setting).
TILE_SIDE_VARIABLE = "TRYON_UPSCALE_MAX_INPUT_SIDE"
DEFAULT_TILE_SIDE = 512
#: Tiles overlap by this much (at most a quarter of the tile), blended across the overlap.
TILE_OVERLAP = 64
#: Every pass is padded to a multiple of this (the UNet's and VAE's downsampling factors).
PAD_MULTIPLE = 8
#: The VAE decode of one full 512 px tile (to 2048 px) costs as much as this many denoising steps
#: of it: 181.5 vs 36.8 TFLOP (one step with guidance, batch 2), counted with
#: ``torch.utils.flop_counter`` on the x4 upscaler's published shapes (``bench.upscale_budget``).
DECODE_STEPS = 5
#: The template parameter (and function variable) with the seconds of one step of one full tile.
TILE_STEP_SECONDS_PARAMETER = f"{_KIND.template}TileStepSeconds"
TILE_STEP_SECONDS_VARIABLE = f"TRYON_{_KIND.short.upper()}_TILE_STEP_SECONDS"
#: Its default: an ml.g5.xlarge (NVIDIA A10G, float16), estimated from the FLOP count at an
#: effective 15 TFLOP/s (docs/benchmarks.md#upscaler-time-budget): set yours once measured.
DEFAULT_TILE_STEP_SECONDS = 2.5
#: Its range (the template's MinValue/MaxValue).
TILE_STEP_SECONDS_RANGE = (0.001, 600.0)
#: An upscale must fit this fraction of the invocation limit: the rest is for loading the image,
#: writing the PNG to S3 and an instance busier than the one measured.
HEADROOM = 0.8


@dataclass(frozen=True)
class TileGrid:
    """How the upscaler cuts a photo: ``columns`` x ``rows`` tiles of ``tile_width`` x ``tile_height``."""

    columns: int
    rows: int
    tile_width: int
    tile_height: int
    tile_side: int

    @property
    def tiles(self) -> int:
        """Tiles in all (1: a single pass)."""
        return self.columns * self.rows

    @property
    def area_fraction(self) -> float:
        """A tile's pixels over a full tile's (below 1 only for a single pass of a small photo)."""
        return (self.tile_width * self.tile_height) / (self.tile_side * self.tile_side)


def tile_side(env: Mapping[str, str] | None = None) -> int:
    """The single-pass side, ``TRYON_UPSCALE_MAX_INPUT_SIDE`` (default 512): the same on both sides.

    The endpoint reads it to cut tiles; Prepare reads it to estimate them. Set it on both or
    neither (the template sets neither).
    """
    env = os.environ if env is None else env
    raw = env.get(TILE_SIDE_VARIABLE) or str(DEFAULT_TILE_SIDE)
    try:
        return int(raw)
    except ValueError:
        raise RequestError(TILE_SIDE_VARIABLE, f"must be an integer, got {raw!r}") from None


def default_overlap(tile: int) -> int:
    """The overlap of tiles of ``tile`` px: 64 px, at most a quarter of the tile."""
    return min(TILE_OVERLAP, tile // 4)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` px covering ``length`` px, overlapping by at least ``overlap``.

    The tiles are spread evenly, so the first starts at 0 and the last ends at ``length``.
    """
    if length <= tile:
        return [0]
    stride = tile - overlap
    count = -(-(length - overlap) // stride)
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def padded(length: int) -> int:
    """``length`` padded up to a multiple of :data:`PAD_MULTIPLE`."""
    return length + (-length % PAD_MULTIPLE)


def tile_grid(width: int, height: int, *, tile: int | None = None, overlap: int | None = None) -> TileGrid:
    """The tiles the upscaler cuts a ``width`` x ``height`` photo into (defaults: the endpoint's)."""
    tile = tile_side() if tile is None else tile
    overlap = default_overlap(tile) if overlap is None else overlap
    pw, ph = padded(width), padded(height)
    tile_w, tile_h = min(tile, pw), min(tile, ph)
    return TileGrid(
        columns=len(tile_starts(pw, tile_w, overlap)),
        rows=len(tile_starts(ph, tile_h, overlap)),
        tile_width=tile_w,
        tile_height=tile_h,
        tile_side=tile,
    )


def estimate_seconds(grid: TileGrid, steps: int, tile_step_seconds: float) -> float:
    """Seconds one upscale (one image) takes: tiles x area x (steps + decode) x seconds per tile-step."""
    return grid.tiles * grid.area_fraction * (steps + DECODE_STEPS) * tile_step_seconds


def tile_step_seconds(env: Mapping[str, str] | None = None) -> float:
    """``TRYON_UPSCALE_TILE_STEP_SECONDS`` (template parameter ``UpscaleTileStepSeconds``), or the default."""
    env = os.environ if env is None else env
    raw = env.get(TILE_STEP_SECONDS_VARIABLE) or str(DEFAULT_TILE_STEP_SECONDS)
    low, high = TILE_STEP_SECONDS_RANGE
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not low <= value <= high:
        raise RequestError(
            TILE_STEP_SECONDS_VARIABLE, f"must be a number of seconds in {low}..{high}, got {raw!r}"
        )
    return value


def _limit(mode: EndpointMode, async_invocation_seconds: int) -> tuple[float, str]:
    """The seconds one call may take in ``mode``, and where that limit comes from, in words."""
    if mode == "async":
        return float(async_invocation_seconds), "an asynchronous endpoint's AsyncInvocationTimeoutSeconds"
    spelled = "real-time" if mode == "realtime" else mode
    return MODE_LIMITS[mode].max_invocation_seconds, f"a {spelled} endpoint's per-call limit"


def _largest_fitting_photo(width: int, height: int, steps: int, seconds: float, budget: float) -> str:
    """``WxH``: the largest photo of this one's aspect whose upscale fits ``budget`` ("" if none does)."""
    low, high = 0.0, 1.0
    for _ in range(30):  # bisection on the scale factor
        mid = (low + high) / 2
        w, h = max(1, int(width * mid)), max(1, int(height * mid))
        if estimate_seconds(tile_grid(w, h), steps, seconds) <= budget:
            low = mid
        else:
            high = mid
    w, h = int(width * low), int(height * low)
    return f"{w}x{h}" if min(w, h) >= 8 else ""


def plan(
    width: int,
    height: int,
    *,
    steps: int,
    mode: EndpointMode,
    seconds_per_tile_step: float,
    async_invocation_seconds: int,
) -> dict[str, Any]:
    """The upscale plan of a ``width`` x ``height`` photo, or RequestError when its endpoint cannot finish it.

    The plan (JSON-able) goes into the job and the manifest: the mode that runs it, the tiles,
    the estimate and the limit it was held against.
    """
    grid = tile_grid(width, height)
    seconds = estimate_seconds(grid, steps, seconds_per_tile_step)
    limit, limit_name = _limit(mode, async_invocation_seconds)
    budget = limit * HEADROOM
    if seconds > budget:
        per_step = grid.tiles * grid.area_fraction * seconds_per_tile_step
        fewer = math.floor(budget / per_step - DECODE_STEPS) if per_step else 0
        smaller = _largest_fitting_photo(width, height, steps, seconds_per_tile_step, budget)
        cut = (
            f"cuts it into {grid.tiles} tiles of {grid.tile_side} px"
            if grid.tiles > 1
            else f"runs it in one {grid.tile_width}x{grid.tile_height} pass"
        )
        remedies = []
        if mode != "async":
            remedies.append(
                "serve the upscaler asynchronously (template parameter UpscaleMode=async; "
                "tryon run: --mode sd_upscale=async)"
            )
        elif seconds <= MODE_LIMITS["async"].max_invocation_seconds * HEADROOM:
            remedies.append("raise AsyncInvocationTimeoutSeconds (at most 3600)")
        if fewer >= 1:
            remedies.append(f"set upscale_steps to at most {fewer}")
        if smaller:
            remedies.append(f"upload a photo of at most {smaller} px")
        remedies.append("set upscale to false")
        tiles = (
            ("1 tile" if grid.tiles == 1 else f"{grid.tiles} tiles")
            if grid.area_fraction == 1
            else f"{grid.area_fraction:.2f} of a tile"
            if grid.tiles == 1
            else f"{grid.tiles} x {grid.area_fraction:.2f} of a tile"
        )
        raise RequestError(
            "upscale",
            f"the photo is {width}x{height}: the x4 upscaler {cut} and would take about {seconds:.0f} s "
            f"({tiles} x ({steps} steps + {DECODE_STEPS} for decoding) x {seconds_per_tile_step:g} s, "
            f"{TILE_STEP_SECONDS_PARAMETER}), more than {HEADROOM:.0%} of {limit_name} ({limit:.0f} s): "
            + ", ".join(remedies[:-1])
            + f" or {remedies[-1]}",
        )
    return {
        "mode": mode,
        "tiles": grid.tiles,
        "tile": [grid.tile_width, grid.tile_height],
        "steps": steps,
        "estimated_seconds": round(seconds, 1),
        "limit_seconds": limit,
        "tile_step_seconds": seconds_per_tile_step,
    }
