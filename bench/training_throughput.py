"""Fine-tuning throughput on the tiny inpainting checkpoints (CPU): LoRA against full, SD 2 and SDXL.

Each variant (base x mode) runs the real training loop (:func:`tryon.training.loop.train`)
in its own spawned process, so its peak RSS (``ru_maxrss``) is its own. Steps/s is measured
over the steps after ``--warmup`` (model loading and the first steps excluded) with the
``on_step`` hook. Baselines measured in the same run: each base's full fine-tune (ratio
LoRA / full), and the SD LoRA run for SDXL LoRA (ratio SDXL / SD). On a shared machine the
load drifts between variants: ``--rounds`` repeats every variant in alternating order and
reports medians over rounds (each ratio is taken within a round, then the median).

    .venv/bin/python -m bench.training_throughput [--steps 20] [--warmup 3] [--resolution 64] [--bases sd]
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path


def _photos(folder: Path, count: int = 6) -> Path:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (96, 80, 3), dtype=np.uint8)).save(folder / f"g{i}.png")
    return folder


#: --bases name -> tiny checkpoint folder
BASES = {"sd": "sd-inpaint", "sdxl": "sdxl-inpaint"}


def _run_variant(base: str, mode: str, args: dict, queue: mp.Queue) -> None:
    """Child process: train ``mode`` on ``base`` and report timings and peak RSS."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from tryon.training.config import TrainingConfig
    from tryon.training.loop import train
    from tryon.weights.tiny import ensure_tiny_models

    torch.set_num_threads(args["threads"])
    models = ensure_tiny_models(Path(args["models"]))
    with tempfile.TemporaryDirectory() as tmp:
        stamps: list[float] = []
        config = TrainingConfig(
            pretrained_model=str(models[BASES[base]]),
            instance_data_dir=str(_photos(Path(tmp) / "photos")),
            instance_prompt="a photo of sks skirt",
            output_dir=str(Path(tmp) / "out"),
            train_mode=mode,
            resolution=args["resolution"],
            train_batch_size=args["batch_size"],
            max_train_steps=args["warmup"] + args["steps"],
            gradient_checkpointing=args["gradient_checkpointing"],
            skip_final_validation=True,
        )
        train(config, progress=False, on_step=lambda step, loss: stamps.append(time.perf_counter()))
    timed = stamps[args["warmup"] - 1 :] if args["warmup"] else stamps
    intervals = [b - a for a, b in itertools.pairwise(timed)]
    queue.put(
        {
            "variant": f"{base} {mode}",
            "steps_per_s": 1.0 / statistics.median(intervals),
            "mean_steps_per_s": len(intervals) / sum(intervals),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        }
    )


def measure(base: str, mode: str, args: dict) -> dict:
    """Run one variant in a fresh spawned process and return its figures."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run_variant, args=(base, mode, args, queue))
    proc.start()
    result = queue.get(timeout=1800)
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--models", default=".cache/tiny-models")
    parser.add_argument("--bases", default="sd,sdxl", help="comma-separated: sd (SD 2 layout), sdxl")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every variant, alternating order")
    args = vars(parser.parse_args())
    if args["steps"] < 2:
        parser.error("--steps must be >= 2")
    bases = [b.strip() for b in args["bases"].split(",") if b.strip()]
    if not bases or set(bases) - set(BASES):
        parser.error(f"--bases must name some of {', '.join(BASES)}")
    print(
        f"tiny inpainting checkpoints ({', '.join(bases)}), CPU, {args['resolution']} px, "
        f"batch {args['batch_size']}, {args['threads']} threads, {args['steps']} timed steps after "
        f"{args['warmup']} warm-up"
    )
    variants = [(b, m) for b in bases for m in ("full", "lora")]  # full: the baseline
    runs: dict[tuple[str, str], list[dict]] = {v: [] for v in variants}
    for round_index in range(max(1, args["rounds"])):
        for variant in variants if round_index % 2 == 0 else variants[::-1]:
            runs[variant].append(measure(*variant, args))
    print(
        f"{'variant':<10} {'steps/s (median)':>17} {'steps/s (mean)':>15} {'peak RSS MiB':>13}"
        f"   (medians over {len(runs[variants[0]])} rounds)"
    )
    for (base, mode), results in runs.items():
        median = {k: statistics.median(r[k] for r in results) for k in results[0] if k != "variant"}
        print(
            f"{base + ' ' + mode:<10} {median['steps_per_s']:>17.2f} {median['mean_steps_per_s']:>15.2f} "
            f"{median['peak_rss_mib']:>13.0f}"
        )

    def ratio(a: tuple[str, str], b: tuple[str, str], key: str = "steps_per_s") -> float:
        return statistics.median(x[key] / y[key] for x, y in zip(runs[a], runs[b], strict=True))

    for base in bases:
        print(
            f"ratio {base} lora/full: steps/s x{ratio((base, 'lora'), (base, 'full')):.2f}, "
            f"peak RSS x{ratio((base, 'lora'), (base, 'full'), 'peak_rss_mib'):.2f}"
        )
    if {"sd", "sdxl"} <= set(bases):
        for mode in ("lora", "full"):
            print(f"ratio sdxl/sd {mode}: steps/s x{ratio(('sdxl', mode), ('sd', mode)):.2f}")


if __name__ == "__main__":
    main()
