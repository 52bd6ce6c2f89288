"""Upscaler tiles: batched (as many per pipeline call as fit one single pass) vs one call per tile.

The same tiled request goes through the x4 upscaler's handler twice in turn: with the
default single-pass budget (``TRYON_UPSCALE_MAX_INPUT_SIDE`` 512: every 64 px tile of the
request in one call) and with the budget lowered to one tile (one call per tile, what the
handler did before). Batching is forced for both cases (at the handler's thread choice),
although the handler does not batch a small model's tiles on a CPU: these figures are why.
Cases: the tiny upscaler on many small tiles, and a random upscaler with the real shapes
(:mod:`bench.full_models`) on four tiles.

    .venv/bin/python -m bench.upscale_tiles --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TRYON_ENDPOINT_MODE", "async")  # inline answers at async limits (see handler_threads)

REPO_ROOT = Path(__file__).resolve().parent.parent
TILE = 64


def _compare(label: str, model, body: str, repeats: int) -> dict:
    import torch

    from bench.handler_threads import _request
    from tryon.handlers import sd_upscale, threads

    call = _request(sd_upscale, model, body)
    budgets = {"batched": "512", "one per call": str(TILE)}
    samples: dict[str, list[float]] = {name: [] for name in budgets}
    small_model = threads.SMALL_MODEL_PARAMS
    # the handler's thread choice for this model, kept while batching is forced below
    chosen = threads.choose(threads.parameter_count(model.pipe.unet), cap=torch.get_num_threads())

    def run(name: str) -> float:
        os.environ["TRYON_UPSCALE_MAX_INPUT_SIDE"] = budgets[name]
        os.environ[threads.THREADS_ENV] = str(chosen)
        threads.SMALL_MODEL_PARAMS = 0  # batch even a small model (the handler does not, on a CPU)
        try:
            start = time.perf_counter()
            call()
            return time.perf_counter() - start
        finally:
            threads.SMALL_MODEL_PARAMS = small_model
            os.environ.pop(threads.THREADS_ENV, None)

    for name in budgets:
        run(name)
    for i in range(repeats):
        for name in list(budgets) if i % 2 == 0 else list(budgets)[::-1]:
            samples[name].append(run(name))
    os.environ.pop("TRYON_UPSCALE_MAX_INPUT_SIDE", None)
    med = {name: statistics.median(s) for name, s in samples.items()}
    row = {
        "case": label,
        "batched s": round(med["batched"], 2),
        "one per call s": round(med["one per call"], 2),
        "speedup": round(med["one per call"] / med["batched"], 3),
        "threads": chosen,
    }
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> None:
    import torch
    from diffusers.utils import logging as diffusers_logging

    from bench.full_models import build_pipeline
    from bench.handler_overhead import synthetic_photo
    from tryon.core import imaging
    from tryon.handlers import sd_upscale
    from tryon.weights.tiny import ensure_tiny_models

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args(argv)
    diffusers_logging.set_verbosity_error()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}")
    params = {"prompt": "a dress", "steps": 2, "seed": 0, "tile_size": TILE, "tile_overlap": 16}
    tiny = ensure_tiny_models(REPO_ROOT / ".cache" / "tiny-models")
    model = sd_upscale.model_fn(str(tiny["sd-x4-upscaler"]))
    photo = imaging.b64encode(imaging.encode_png(synthetic_photo(384, 384, seed=1)))
    rows = [
        _compare(
            "tiny x4 upscaler, 384 px, 64 tiles", model, json.dumps({"image": photo, **params}), args.repeats
        )
    ]
    if not args.skip_full:
        pipe = build_pipeline("x4-upscaler")
        model = sd_upscale.UpscaleModel(
            pipe=pipe, device=torch.device("cpu"), dtype=torch.float32, model_id="x4"
        )
        photo = imaging.b64encode(imaging.encode_png(synthetic_photo(112, 112, seed=2)))
        body = json.dumps({"image": photo, **params, "steps": 1})
        rows.append(_compare("x4 upscaler real shape, 112 px, 4 tiles, 1 step", model, body, args.repeats))
    print("\n| case | batched s | one call per tile s | speedup |\n| --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['case']} | {r['batched s']} | {r['one per call s']} | **{r['speedup']}x** |")


if __name__ == "__main__":
    main()
