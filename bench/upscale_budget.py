"""The upscaler's time budget: per-tile figures, and how well Prepare's estimate predicts a tiled upscale.

Prepare estimates an upscale as ``tiles x area x (steps + DECODE_STEPS) x tile_step_seconds``
(:mod:`tryon.core.upscale_budget`). This benchmark gives the numbers behind it:

1. **FLOPs** of the x4 upscaler's published shapes (473 M UNet, its VAE) per tile side, counted
   with ``torch.utils.flop_counter`` on the meta device (nothing runs): one denoising step with
   guidance (batch 2) and the VAE decode; their ratio at 512 px is ``DECODE_STEPS``.
2. **Seconds per tile-step** on this machine, through the handler (decode, inference, PNG):
   one tile at two step counts, so ``per step = (t2 - t1) / (s2 - s1)`` and the rest is the
   tile's fixed cost (the VAE decode, mostly). The tiny checkpoint at 512 px; the full-size
   shapes with random weights at ``--full-tile`` px (a 512 px step takes minutes on a CPU: the
   512 px figure is then extrapolated by the FLOP ratio); on a GPU (``--device cuda``) at 512 px.
   The 512 px full-size figure is the ``UpscaleTileStepSeconds`` to set for that instance.
3. **The estimate against a measurement** (the baseline of this run): the tiny checkpoint
   calibrated on one 128 px tile predicts a 12-tile upscale (384x256 px in 128 px tiles);
   the ratio predicted / measured is printed, with the project's own estimate (its fixed
   ``DECODE_STEPS``) beside it.

    .venv/bin/python -m bench.upscale_budget
    .venv/bin/python -m bench.upscale_budget --device cuda     # on a GPU: the figure to deploy with
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TRYON_ENDPOINT_MODE", "async")  # inline answers at async limits (see handler_threads)

REPO_ROOT = Path(__file__).resolve().parent.parent


def count_flops(sides: tuple[int, ...] = (128, 256, 512)) -> list[dict[str, Any]]:
    """TFLOP of one guided step (batch 2) and of the VAE decode, per tile side, on the meta device."""
    import diffusers
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bench.full_models import X4_UPSCALER_UNET, X4_UPSCALER_VAE

    with torch.device("meta"):
        unet = diffusers.UNet2DConditionModel(**X4_UPSCALER_UNET)
        vae = diffusers.AutoencoderKL(**X4_UPSCALER_VAE)
    rows = []
    for side in sides:
        with torch.device("meta"), FlopCounterMode(display=False) as step:
            unet(
                torch.zeros(2, 7, side, side),
                torch.tensor([10, 10]),
                encoder_hidden_states=torch.zeros(2, 77, 1024),
                class_labels=torch.tensor([20, 20]),
            )
        with torch.device("meta"), FlopCounterMode(display=False) as decode:
            vae.decode(torch.zeros(1, 4, side, side))
        s, d = step.get_total_flops() / 1e12, decode.get_total_flops() / 1e12
        rows.append(
            {
                "tile px": side,
                "step TFLOP": round(s, 2),
                "decode TFLOP": round(d, 2),
                "decode/step": round(d / s, 2),
            }
        )
    return rows


def _timed_upscale(model: Any, width: int, height: int, steps: int, repeats: int) -> float:
    """Median seconds of one upscale through the handler (input, predict, output)."""
    from bench.handler_overhead import synthetic_photo
    from bench.handler_threads import _request
    from tryon.core import imaging
    from tryon.handlers import sd_upscale

    photo = imaging.b64encode(imaging.encode_png(synthetic_photo(width, height, seed=1)))
    call = _request(
        sd_upscale, model, json.dumps({"image": photo, "prompt": "a dress", "steps": steps, "seed": 0})
    )
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def per_tile(model: Any, side: int, steps: tuple[int, int], repeats: int) -> dict[str, float]:
    """Seconds per step and fixed seconds of one ``side`` px tile (two step counts, alternating)."""
    low, high = steps
    _timed_upscale(model, side, side, low, 1)  # warm-up
    t_low = _timed_upscale(model, side, side, low, repeats)
    t_high = _timed_upscale(model, side, side, high, repeats)
    step = max((t_high - t_low) / (high - low), 1e-9)
    fixed = max(t_low - low * step, 0.0)
    return {"step s": step, "fixed s": fixed, "fixed in steps": fixed / step}


def check_estimate(model: Any, repeats: int) -> dict[str, Any]:
    """Calibrate on one 128 px tile of the tiny upscaler, predict a 12-tile upscale, measure it."""
    from tryon.core import upscale_budget

    os.environ[upscale_budget.TILE_SIDE_VARIABLE] = "128"
    try:
        calib = per_tile(model, 128, (1, 3), repeats)
        grid = upscale_budget.tile_grid(384, 256)
        steps = 2
        predicted = grid.tiles * (steps * calib["step s"] + calib["fixed s"])
        estimate = upscale_budget.estimate_seconds(grid, steps, calib["step s"])
        measured = _timed_upscale(model, 384, 256, steps, repeats)
    finally:
        os.environ.pop(upscale_budget.TILE_SIDE_VARIABLE, None)
    return {
        "tiles": grid.tiles,
        "predicted s": round(predicted, 2),
        "project estimate s": round(estimate, 2),
        "measured s": round(measured, 2),
        "predicted / measured": round(predicted / measured, 3),
        "project estimate / measured": round(estimate / measured, 3),
    }


def main(argv: list[str] | None = None) -> None:
    import torch
    from diffusers.utils import logging as diffusers_logging

    from bench.full_models import build_pipeline
    from tryon.core import upscale_budget
    from tryon.handlers import sd_upscale
    from tryon.weights.tiny import ensure_tiny_models

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--full-tile", type=int, default=64, help="tile px of the full-size run on a CPU")
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args(argv)
    diffusers_logging.set_verbosity_error()
    load = os.getloadavg()[0]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, load {load:.1f}"
    )

    flops = count_flops()
    for row in flops:
        print(json.dumps(row), flush=True)
    at_512 = next(r for r in flops if r["tile px"] == 512)
    print(
        f"DECODE_STEPS in tryon.core.upscale_budget: {upscale_budget.DECODE_STEPS} "
        f"(FLOP ratio at 512 px: {at_512['decode/step']})"
    )

    tiny = ensure_tiny_models(REPO_ROOT / ".cache" / "tiny-models")
    tiny_model = sd_upscale.model_fn(str(tiny["sd-x4-upscaler"]))
    tiny_512 = per_tile(tiny_model, 512, (1, 3), args.repeats)
    print(
        json.dumps({"case": "tiny, 512 px tile", **{k: round(v, 3) for k, v in tiny_512.items()}}), flush=True
    )
    check = check_estimate(tiny_model, args.repeats)
    print(json.dumps({"case": "tiny, 384x256 px in 128 px tiles, 2 steps", **check}), flush=True)

    if not args.skip_full:
        device = torch.device(args.device)
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        pipe = build_pipeline("x4-upscaler", device=device, dtype=dtype)
        model = sd_upscale.UpscaleModel(pipe=pipe, device=device, dtype=dtype, model_id="x4 (random weights)")
        side = 512 if device.type == "cuda" else args.full_tile
        steps = (5, 20) if device.type == "cuda" else (1, 2)
        full = per_tile(model, side, steps, args.repeats)
        ratio = at_512["step TFLOP"] / next(
            (r["step TFLOP"] for r in count_flops((side,))), at_512["step TFLOP"]
        )
        at_full_tile = full["step s"] * ratio
        print(
            json.dumps(
                {
                    "case": f"x4 upscaler shapes, random weights, {side} px tile, {dtype}",
                    **{k: round(v, 3) for k, v in full.items()},
                    "512 px step s" + (" (FLOP-extrapolated)" if side != 512 else ""): round(at_full_tile, 2),
                }
            ),
            flush=True,
        )
        print(f"UpscaleTileStepSeconds for this device: {at_full_tile:.3g}")


if __name__ == "__main__":
    main()
