"""Batched images: ``num_images=4`` as one batched denoising call vs four one-image requests.

The inpainting handler (``predict_fn``) serves a random-initialised pipeline with the
shapes of stabilityai/stable-diffusion-2-inpainting (the 865.9 M-parameter UNet, full VAE
and text encoder, built in code by :mod:`bench.full_models`; nothing downloaded). The
candidate is one request for 4 images, which the handler runs as ONE denoising batch; the
baseline is what one call per image costs: 4 requests with ``num_images=1`` and the seeds
the batch reports (so both make the same 4 images). They alternate, so load from other
processes hits both alike. Printed: wall time per 4 images, the ``inference`` phase the
handler reports, and batched / one-at-a-time ratios.

    .venv/bin/python -m bench.batched_images                       # CPU: 128 px, 2 steps
    .venv/bin/python -m bench.batched_images --size 512 --steps 25 # on a GPU (fp16)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Answers stay inline (no S3 in the loop) at an asynchronous endpoint's limits: random-noise
# PNGs are incompressible and would pass a real-time endpoint's 6 MiB.
os.environ.setdefault("TRYON_ENDPOINT_MODE", "async")


def inpaint_model(pipe, *, name: str):
    """An InpaintModel serving an already built pipeline (what ``model_fn`` makes from a folder)."""
    from tryon.handlers.adapters import AdapterCache
    from tryon.handlers.samplers import SchedulerCache
    from tryon.handlers.sd_inpaint import InpaintModel

    return InpaintModel(
        pipe=pipe,
        model_id=name,
        model_dir=None,
        working_resolution=int(pipe.unet.config.sample_size * pipe.vae_scale_factor),
        is_sdxl=hasattr(pipe, "text_encoder_2"),
        adapters=AdapterCache(pipe, 1),
        schedulers=SchedulerCache(pipe.scheduler),
        default_adapter=None,
    )


def main(argv: list[str] | None = None) -> None:
    import torch
    from diffusers.utils import logging as diffusers_logging
    from PIL import Image

    from bench.full_models import build_pipeline, unet_params
    from bench.handler_overhead import synthetic_photo
    from tryon.core.imaging import b64encode, encode_png
    from tryon.handlers import sd_inpaint

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="working size in px (multiple of 8)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: leave as is)")
    parser.add_argument("--reduced", action="store_true", help="tiny widths (a quick check of the script)")
    args = parser.parse_args(argv)

    diffusers_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # random fp16 weights may give NaN pixels
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", torch.float16) if cuda else ("cpu", torch.float32)
    started = time.perf_counter()
    pipe = build_pipeline("sd2-inpaint", device=device, dtype=dtype, reduced=args.reduced)
    model = inpaint_model(pipe, name="random sd2-inpaint")
    print(
        f"sd2-inpaint UNet {unet_params(pipe) / 1e6:.1f} M params, "
        f"built in {time.perf_counter() - started:.0f} s; "
        f"{torch.cuda.get_device_name() if cuda else 'CPU'} {dtype}, {torch.get_num_threads()} threads, "
        f"{args.size} px, {args.steps} steps, {args.images} images, guidance 7.5"
    )
    photo = synthetic_photo(args.size * 2, args.size * 2)
    mask = Image.new("L", photo.size, 0)
    mask.paste(255, (args.size // 2, args.size // 2, args.size * 3 // 2, args.size * 3 // 2))
    request = {
        "image": b64encode(encode_png(photo)),
        "mask": b64encode(encode_png(mask)),
        "prompt": "a photo of a red linen shirt",
        "steps": args.steps,
        "width": args.size,
        "height": args.size,
        "seed": 1234,
    }

    def batched() -> tuple[float, float]:
        answer = sd_inpaint.predict_fn({**request, "num_images": args.images}, model)
        return sum(answer["timings_ms"].values()) / 1000, answer["timings_ms"]["inference"] / 1000

    def one_at_a_time() -> tuple[float, float]:
        wall = inference = 0.0
        for i in range(args.images):
            answer = sd_inpaint.predict_fn({**request, "seed": 1234 + i, "num_images": 1}, model)
            wall += sum(answer["timings_ms"].values()) / 1000
            inference += answer["timings_ms"]["inference"] / 1000
        return wall, inference

    runs = {"batched": batched, "one at a time": one_at_a_time}
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for fn in runs.values():  # warm-up
        fn()
    for i in range(args.repeats):
        order = list(runs) if i % 2 == 0 else list(runs)[::-1]
        for name in order:
            samples[name].append(runs[name]())
    medians = {
        name: (statistics.median(s[0] for s in got), statistics.median(s[1] for s in got))
        for name, got in samples.items()
    }
    print(
        f"{'variant':<14} {'s per ' + str(args.images) + ' images':>16} {'inference s':>12} {'images/s':>9}"
    )
    for name, (wall, inference) in medians.items():
        print(f"{name:<14} {wall:>16.2f} {inference:>12.2f} {args.images / wall:>9.3f}")
    (b_wall, b_inf), (o_wall, o_inf) = medians["batched"], medians["one at a time"]
    result = {"speedup": o_wall / b_wall, "inference_speedup": o_inf / b_inf}
    print(
        f"batched is {result['speedup']:.2f}x faster per request "
        f"({result['inference_speedup']:.2f}x inference)"
    )
    print(json.dumps({"size": args.size, "steps": args.steps, "images": args.images, **result}))


if __name__ == "__main__":
    main()
