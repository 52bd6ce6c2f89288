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

3. ``--flops``: what no load can blur, counted by ``torch.utils.flop_counter`` on the full-size
   shapes built on PyTorch's meta device (no weights, no arithmetic: seconds): one denoising
   step of the SD 1.5 inpainting UNet against one of its ControlNet at 512 px with guidance
   (batch 2), and each estimator once on a 512 px crop (Depth Anything V2 small at 518 px,
   RT-DETR R50vd at 640 px, ViTPose base at 256x192 for one person).

    .venv/bin/python -m bench.body_controls --repeats 10 --threads 1     # tiny, seconds
    .venv/bin/python -m bench.body_controls --flops                      # + FLOP counts, seconds
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


def flops(steps: int = 25) -> None:
    """Figure 3: FLOPs of a UNet step vs a ControlNet step, and of each estimator, on meta tensors."""
    import inspect

    import diffusers
    import torch
    import transformers
    from torch.utils.flop_counter import FlopCounterMode

    from bench.full_models import (
        CONTROLNET_EMBEDDING,
        DEPTH_ANYTHING_V2_SMALL,
        SD15_INPAINT_UNET,
        VITPOSE_BASE,
    )

    def tflop(module: Any, *args: Any, **kwargs: Any) -> float:
        with FlopCounterMode(display=False) as counter:
            module(*args, **kwargs)
        return counter.get_total_flops() / 1e12

    with torch.device("meta"):
        unet = diffusers.UNet2DConditionModel(**SD15_INPAINT_UNET)
        accepted = set(inspect.signature(diffusers.ControlNetModel.__init__).parameters) - {
            "self",
            "in_channels",
        }
        config = {k: v for k, v in dict(unet.config).items() if k in accepted and not k.startswith("_")}
        controlnet = diffusers.ControlNetModel(
            in_channels=4, conditioning_embedding_out_channels=CONTROLNET_EMBEDDING, **config
        )
        timestep, text = torch.tensor([500, 500]), torch.empty(2, 77, 768)
        unet_step = tflop(unet, torch.empty(2, 9, 64, 64), timestep, encoder_hidden_states=text)
        net_step = tflop(
            controlnet,
            torch.empty(2, 4, 64, 64),
            timestep,
            encoder_hidden_states=text,
            controlnet_cond=torch.empty(2, 3, 512, 512),
        )
        spec = DEPTH_ANYTHING_V2_SMALL
        depth = transformers.DepthAnythingForDepthEstimation(
            transformers.DepthAnythingConfig(
                backbone_config=transformers.Dinov2Config(**spec["backbone"]),
                **{k: v for k, v in spec.items() if k != "backbone"},
            )
        )
        pose = transformers.VitPoseForPoseEstimation(
            transformers.VitPoseConfig(backbone_config=transformers.VitPoseBackboneConfig(**VITPOSE_BASE))
        )
        estimators = {
            "Depth Anything V2 small, 518x518": tflop(depth, pixel_values=torch.empty(1, 3, 518, 518)),
            "ViTPose base, 256x192, 1 person": tflop(pose, pixel_values=torch.empty(1, 3, 256, 192)),
        }
    # RT-DETR picks its queries by value (top-k of scores): counted on real tensors, on the CPU
    detector = transformers.RTDetrForObjectDetection(transformers.RTDetrConfig(num_labels=80)).eval()
    with torch.no_grad():
        estimators["RT-DETR R50vd, 640x640"] = tflop(detector, pixel_values=torch.zeros(1, 3, 640, 640))
    print("FLOPs (torch.utils.flop_counter on meta tensors; full-size shapes, 512 px, guidance = batch 2):")
    print(f"  SD 1.5 inpainting UNet, one step:  {unet_step:.3f} TFLOP")
    print(
        f"  SD 1.5 ControlNet, one step:       {net_step:.3f} TFLOP = {net_step / unet_step:.3f} x the UNet"
    )
    for name, value in estimators.items():
        print(f"  {name + ':':<35}{value:.3f} TFLOP (once per request)")
    pose_once = sum(v for k, v in estimators.items() if not k.startswith("Depth"))
    depth_once = estimators["Depth Anything V2 small, 518x518"]
    base = steps * unet_step
    print(f"  a {steps}-step request, UNet + ControlNets + estimators (text encoder and VAE aside):")
    for variant, nets, once in (
        ("depth", 1, depth_once),
        ("pose", 1, pose_once),
        ("depth+pose", 2, depth_once + pose_once),
    ):
        total = base + steps * nets * net_step + once
        print(f"    keep_body {variant:<10} {total / base:.3f} of plain")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10, help="rounds on the tiny model")
    parser.add_argument(
        "--full", action="store_true", help="also the full-size SD 1.5 figure (minutes on CPU)"
    )
    parser.add_argument("--full-repeats", type=int, default=2)
    parser.add_argument("--full-steps", type=int, default=1)
    parser.add_argument(
        "--flops", action="store_true", help="also FLOP counts of the full-size shapes (seconds)"
    )
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
    if args.flops:
        flops()
    if args.full:
        full(args.full_repeats, args.full_steps)


if __name__ == "__main__":
    main()
