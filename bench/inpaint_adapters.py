"""Benchmark the inpainting handler on the tiny checkpoint (CPU or GPU, whatever torch finds).

Two figures, each against a baseline measured in the same run:

1. adapter switching: the LRU (``set_adapters`` on adapters kept loaded) versus reloading
   the LoRA for every request (``unload_lora_weights`` + ``load_lora_weights``);
2. handler overhead: a full ``predict_fn`` request on a 300x200 photo (decode, crop, resize,
   paste-back, PNG encode) versus the bare pipeline call on the same working-size inputs.

Run: ``.venv/bin/python -m bench.inpaint_adapters [--repeats N]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def paired_median_ms(
    candidate: Callable[[], object], baseline: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median ms of each; calls interleaved (ABBA order) so load from other processes hits both alike."""
    candidate(), baseline()  # warm-up
    cand, base = [], []
    for i in range(repeats):
        pairs = [(candidate, cand), (baseline, base)]
        for fn, samples in pairs if i % 2 == 0 else pairs[::-1]:
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(cand), statistics.median(base)


def _model_dir(tiny: dict[str, Path], root: Path) -> Path:
    for entry in tiny["sd-inpaint"].iterdir():
        (root / entry.name).symlink_to(entry)
    (root / "adapters").mkdir()
    for name in ("lora-a", "lora-b"):
        (root / "adapters" / name).symlink_to(tiny[name])
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()

    import numpy as np
    import torch
    from diffusers.utils import logging as diffusers_logging
    from PIL import Image

    from tryon.core.imaging import b64encode, encode_png
    from tryon.handlers import sd_inpaint
    from tryon.handlers.adapters import LORA_WEIGHT_NAME, resolve_adapter
    from tryon.weights.tiny import ensure_tiny_models

    diffusers_logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    tiny = ensure_tiny_models(Path(".cache/tiny-models").resolve())
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(_model_dir(tiny, Path(tmp)))
        model = sd_inpaint.model_fn(model_dir)
        print(f"device={model.pipe.device} dtype={model.pipe.unet.dtype} torch={torch.__version__}", end=" ")
        print(f"threads={torch.get_num_threads()} repeats={args.repeats} steps={args.steps}")

        # 1. adapter switching, no inference; the baseline gets its own pipeline
        names = ["lora-a", "lora-b"]
        for name in names:  # both resident
            model.adapters.activate(resolve_adapter(name, model_dir))
        reload_pipe = sd_inpaint.model_fn(model_dir).pipe
        turn = iter(range(10**9))

        def lru_switch() -> None:
            model.adapters.activate(resolve_adapter(names[next(turn) % 2], model_dir), 1.0)

        def reload_switch() -> None:
            name = names[next(turn) % 2]
            reload_pipe.unload_lora_weights()
            reload_pipe.load_lora_weights(str(tiny[name]), weight_name=LORA_WEIGHT_NAME, adapter_name=name)
            reload_pipe.set_adapters([name], adapter_weights=[1.0])

        lru_ms, reload_ms = paired_median_ms(lru_switch, reload_switch, args.repeats)
        print(f"adapter switch: LRU {lru_ms:.2f} ms, reload baseline {reload_ms:.2f} ms")
        print(f"  speed-up reload/LRU = {reload_ms / lru_ms:.1f}x")

        # 2. handler overhead: full request versus the bare pipeline call
        rng = np.random.default_rng(0)
        photo = Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8), "RGB")
        mask = Image.new("L", photo.size, 0)
        mask.paste(255, (100, 50, 180, 120))
        request = {
            "image": b64encode(encode_png(photo)),
            "mask": b64encode(encode_png(mask)),
            "prompt": "a red linen shirt",
            "steps": args.steps,
            "seed": 7,
            "adapter": "none",
        }
        response = sd_inpaint.predict_fn(request, model)
        box = tuple(response["crop_box"])
        work = tuple(response["working_size"])
        work_image = photo.crop(box).resize(work)
        work_mask = mask.crop(box).resize(work)

        def bare() -> None:
            model.pipe(
                prompt=request["prompt"],
                image=work_image,
                mask_image=work_mask,
                width=work[0],
                height=work[1],
                num_inference_steps=args.steps,
                generator=torch.Generator().manual_seed(7),
            )

        phases: list[dict[str, float]] = []

        def handler() -> None:
            phases.append(sd_inpaint.predict_fn(request, model)["timings_ms"])

        handler_ms, bare_ms = paired_median_ms(handler, bare, args.repeats)
        print(f"request ({args.steps} steps, 300x200 photo, 64 px working size):")
        print(f"  predict_fn {handler_ms:.1f} ms, bare pipeline baseline {bare_ms:.1f} ms")
        print(f"  handler/bare = {handler_ms / bare_ms:.2f}x (overhead {handler_ms - bare_ms:.1f} ms)")
        medians = {k: statistics.median(p[k] for p in phases) for k in phases[0]}
        print("  handler phases (median ms): " + ", ".join(f"{k} {v:.1f}" for k, v in medians.items()))
        outside = statistics.median(sum(v for k, v in p.items() if k != "inference") for p in phases)
        print(f"  work outside inference (decode, crop, paste, encode): {outside:.1f} ms per request")


if __name__ == "__main__":
    main()
