"""Handler threads: the count ``tryon.handlers.threads`` chooses vs torch's default, in one run.

Each case is a full ``input_fn -> predict_fn`` request through a real handler; the variants
differ only in ``TRYON_TORCH_THREADS`` (torch's default count at start-up, 1 thread, and
the handler's choice when it is neither) and take turns, so load from other processes hits
them alike. Where the choice equals a measured setting, it is that measurement.
Cases: a random CLIPSeg with the rd64-refined shape (150.7 M parameters, one query), the
tiny x4 upscaler on a tiled input (many small passes), and a random x4 upscaler with the
real UNet/VAE/text-encoder shapes (:mod:`bench.full_models`) on one pass. The goal: the
choice is never slower than the default (ratio choice / default <= 1, within noise).

    .venv/bin/python -m bench.handler_threads --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Answers stay inline (no S3 in the loop) at an asynchronous endpoint's limits: random-noise
# PNGs are incompressible and would pass a real-time endpoint's 6 MiB.
os.environ.setdefault("TRYON_ENDPOINT_MODE", "async")  # as the CLI and the local server set it

REPO_ROOT = Path(__file__).resolve().parent.parent


def _request(handler: Any, model: Any, body: str) -> Callable[[], None]:
    def call() -> None:
        handler.output_fn(
            handler.predict_fn(handler.input_fn(body, "application/json"), model), "application/json"
        )

    return call


def _compare(label: str, call: Callable[[], None], module: Any, default: int, repeats: int) -> dict[str, Any]:
    """Median seconds of ``call`` under each thread setting, alternating; one warm-up each."""
    from tryon.handlers import threads

    chosen = threads.choose(threads.parameter_count(module))
    variants = {"default": str(default), "1 thread": "1"}
    if chosen not in (default, 1):  # else it IS one of those settings, measured as that
        variants["choice"] = None
    samples: dict[str, list[float]] = {name: [] for name in variants}

    def run(name: str) -> float:
        value = variants[name]
        if value is None:
            os.environ.pop(threads.THREADS_ENV, None)
        else:
            os.environ[threads.THREADS_ENV] = value
        start = time.perf_counter()
        call()
        return time.perf_counter() - start

    for name in variants:
        run(name)
    for i in range(repeats):
        for name in list(variants) if i % 2 == 0 else list(variants)[::-1]:
            samples[name].append(run(name))
    os.environ.pop(threads.THREADS_ENV, None)
    same = "default" if chosen == default else "1 thread" if chosen == 1 else "choice"
    samples["choice"] = samples[same]
    medians = {name: statistics.median(s) for name, s in samples.items()}
    minima = {name: min(s) for name, s in samples.items()}
    row = {
        "case": label,
        "params_m": round(threads.parameter_count(module) / 1e6, 1),
        "chosen_threads": chosen,
        "choice is": same,
        "default_threads": default,
        **{f"{name} s": round(value, 2) for name, value in medians.items()},
        "choice / default": round(medians["choice"] / medians["default"], 3),
        "min / min": round(minima["choice"] / minima["default"], 3),
    }
    print(json.dumps(row))
    return row


def main(argv: list[str] | None = None) -> None:
    import torch
    from diffusers.utils import logging as diffusers_logging

    from bench.full_models import build_pipeline
    from bench.handler_overhead import build_full_clipseg, synthetic_photo
    from tryon.core import imaging
    from tryon.handlers import clipseg, sd_upscale, threads
    from tryon.weights.tiny import ensure_tiny_models

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default="clipseg,upscale-tiled,upscale-full")
    args = parser.parse_args(argv)
    diffusers_logging.set_verbosity_error()
    default = torch.get_num_threads()  # torch's own choice, before any handler sets one
    print(
        f"{os.cpu_count()} CPUs, {threads.available_cores()} available to this worker; torch "
        f"{torch.__version__} default {default} intra-op threads; OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY')}; load average {os.getloadavg()[0]:.1f}"
    )
    cases = args.cases.split(",")
    rows = []
    upscale_params = {"prompt": "a dress", "steps": 2, "guidance_scale": 7.5, "noise_level": 20, "seed": 0}
    with tempfile.TemporaryDirectory() as tmp:
        if "clipseg" in cases:
            build_full_clipseg(Path(tmp, "clipseg"))
            model = clipseg.model_fn(str(Path(tmp, "clipseg")))
            photo = imaging.b64encode(imaging.encode_jpeg(synthetic_photo(512, 384)))
            body = json.dumps({"image": photo, "query": "a shirt"})
            label = "CLIPSeg rd64-refined shape, 1 query, 512x384 photo"
            rows.append(_compare(label, _request(clipseg, model, body), model.model, default, args.repeats))
            del model
        if "upscale-tiled" in cases:
            tiny = ensure_tiny_models(REPO_ROOT / ".cache" / "tiny-models")
            model = sd_upscale.model_fn(str(tiny["sd-x4-upscaler"]))
            photo = imaging.b64encode(imaging.encode_png(synthetic_photo(384, 384, seed=1)))
            body = json.dumps({"image": photo, **upscale_params, "tile_size": 64, "tile_overlap": 16})
            label = "tiny x4 upscaler, 384 px in 64 px tiles (64 tiles), 2 steps"
            rows.append(
                _compare(label, _request(sd_upscale, model, body), model.pipe.unet, default, args.repeats)
            )
        if "upscale-full" in cases:
            pipe = build_pipeline("x4-upscaler")
            model = sd_upscale.UpscaleModel(
                pipe=pipe, device=torch.device("cpu"), dtype=torch.float32, model_id="x4"
            )
            photo = imaging.b64encode(imaging.encode_png(synthetic_photo(64, 64, seed=2)))
            body = json.dumps({"image": photo, **upscale_params})
            label = "x4 upscaler real shape, 64 -> 256 px, one pass, 2 steps"
            rows.append(_compare(label, _request(sd_upscale, model, body), pipe.unet, default, args.repeats))
    print(
        "\n| case | params M | threads chosen / default | choice s | default s | 1 thread s "
        "| choice / default (min / min) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['case']} | {r['params_m']} | {r['chosen_threads']} / {r['default_threads']} "
            f"| {r['choice s']} | {r['default s']} | {r['1 thread s']} "
            f"| **{r['choice / default']}** ({r['min / min']}) |"
        )


if __name__ == "__main__":
    main()
