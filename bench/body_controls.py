"""What keeping the body costs: each control against plain inpainting on the same request, in the same run.

Every variant (``keep_body`` none, depth, pose, depth+pose) serves the same request through the
handler's ``predict_fn`` on the same model, the variants taking turns (round robin, the order
rotating each round) so load from other processes hits all alike; one warm-up call each first.

1. tiny: the tiny ``sd-inpaint-controls`` model (tiny random ControlNets, Depth Anything,
   ViTPose, RT-DETR), a 300x200 photo, 2 steps at 64 px;
2. ``--full``: full-size random SD 1.5 inpainting (``bench.full_models``: the
   runwayml/stable-diffusion-inpainting shapes) with full-size random SD 1.5 depth and pose
   ControlNets, Depth Anything V2 small, ViTPose base and RT-DETR R50vd (nothing downloaded), a
   768x768 photo cropped to 512 px, ``--full-steps`` steps (default 1) with guidance.

Printed per variant: the median ms per request, its ratio to plain inpainting, and the median
``estimate`` (estimators) and ``inference`` (pipeline) phases the handler reports.

    .venv/bin/python -m bench.body_controls --repeats 10 --threads 1     # tiny, seconds
    .venv/bin/python -m bench.body_controls --full --full-repeats 2      # + full size (minutes on CPU)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from tryon.local.samples import box_mask, noise_image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TRYON_ENDPOINT_MODE", "async")  # answers inline at an asynchronous endpoint's limits

VARIANTS = ("none", "depth", "pose", "depth+pose")


def request(photo_side: tuple[int, int], box: tuple[int, int, int, int], steps: int, **fields: Any) -> dict:
    """An inpainting request: a noise photo, a box mask, ``steps`` steps with guidance, seed 7."""
    from tryon.core.imaging import b64encode, encode_png

    photo = noise_image(photo_side, 0)
    return {
        "image": b64encode(encode_png(photo)),
        "mask": b64encode(encode_png(box_mask(photo.size, box))),
        "prompt": "a photo of a person in a red linen shirt",
        "steps": steps,
        "seed": 7,
        "adapter": "none",
        **fields,
    }


def measure(model: Any, base: dict, repeats: int) -> dict[str, dict[str, float]]:
    """variant -> median ``ms``, ``estimate_ms``, ``inference_ms`` of ``predict_fn`` in ``repeats`` rounds."""
    from tryon.handlers import sd_inpaint

    bodies = {v: {**base, "keep_body": v} for v in VARIANTS}
    samples: dict[str, list[tuple[float, dict]]] = {v: [] for v in VARIANTS}

    def call(variant: str) -> tuple[float, dict]:
        start = time.perf_counter()
        answer = sd_inpaint.predict_fn(bodies[variant], model)
        return (time.perf_counter() - start) * 1000.0, answer["timings_ms"]

    for variant in VARIANTS:
        call(variant)  # warm-up
    for round_ in range(repeats):
        shift = round_ % len(VARIANTS)
        for variant in VARIANTS[shift:] + VARIANTS[:shift]:
            samples[variant].append(call(variant))
    return {
        variant: {
            "ms": statistics.median(ms for ms, _ in runs),
            "estimate_ms": statistics.median(t.get("estimate", 0.0) for _, t in runs),
            "inference_ms": statistics.median(t["inference"] for _, t in runs),
        }
        for variant, runs in samples.items()
    }


def report(title: str, figures: dict[str, dict[str, float]]) -> None:
    """Print one line per variant: ms, ratio to plain, estimate and inference phases."""
    plain = figures["none"]["ms"]
    print(title)
    for variant, row in figures.items():
        print(
            f"  keep_body {variant:<10} {row['ms']:9.1f} ms  x{row['ms'] / plain:5.2f} of plain  "
            f"(estimate {row['estimate_ms']:.1f} ms, inference {row['inference_ms']:.1f} ms)"
        )


def tiny(repeats: int) -> None:
    """Figure 1: the tiny model with every control."""
    from tryon.handlers import sd_inpaint
    from tryon.weights.tiny import ensure_tiny_models

    model = sd_inpaint.model_fn(str(ensure_tiny_models()["sd-inpaint-controls"]))
    figures = measure(model, request((300, 200), (100, 50, 180, 120), 2), repeats)
    report("tiny (predict_fn, 300x200 photo, 2 steps with guidance, 64 px working size):", figures)


def full(repeats: int, steps: int) -> None:
    """Figure 2: full-size random SD 1.5 inpainting with full-size random controls, 512 px."""
    import torch

    from bench.batched_images import inpaint_model
    from bench.full_models import build_body_controls, build_pipeline, params_m

    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", torch.float16) if cuda else ("cpu", torch.float32)
    started = time.perf_counter()
    pipe = build_pipeline("sd15-inpaint", device=device, dtype=dtype)
    model = inpaint_model(pipe, name="random sd15-inpaint")
    model.family, model.controls = "sd15", build_body_controls(pipe, device=device, dtype=dtype)
    sizes = {
        "UNet": params_m(pipe.unet),
        "ControlNet (each)": params_m(model.controls.controlnets["depth"]),
        "Depth Anything V2 small": params_m(model.controls.estimators["depth"].model),
        "ViTPose base": params_m(model.controls.estimators["pose"].model),
        "RT-DETR R50vd": params_m(model.controls.estimators["pose"].detector.model),
    }
    print(
        f"full size, built in {time.perf_counter() - started:.0f} s: "
        + ", ".join(f"{name} {m:.1f} M" for name, m in sizes.items())
    )
    figures = measure(model, request((768, 768), (192, 192, 576, 576), steps), repeats)
    report(
        f"full-size random SD 1.5 (predict_fn, 768x768 photo -> 512 px, {steps} step(s) with guidance):",
        figures,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10, help="rounds on the tiny model")
    parser.add_argument(
        "--full", action="store_true", help="also the full-size SD 1.5 figure (minutes on CPU)"
    )
    parser.add_argument("--full-repeats", type=int, default=2)
    parser.add_argument("--full-steps", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args(argv)

    import torch
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(
        f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} repeats={args.repeats}"
    )
    tiny(args.repeats)
    if args.full:
        full(args.full_repeats, args.full_steps)


if __name__ == "__main__":
    main()
