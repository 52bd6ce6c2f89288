"""Fine-tuning throughput on the tiny SD inpainting checkpoint (CPU): LoRA against full fine-tune.

Each variant runs the real training loop (:func:`tryon.training.train.train`) in its own
spawned process, so its peak RSS (``ru_maxrss``) is its own. Steps/s is measured over the
steps after ``--warmup`` (model loading and the first steps excluded) with the ``on_step``
hook. The baseline is the full fine-tune measured in the same run; the ratio is LoRA / full.

    .venv/bin/python -m bench.training_throughput [--steps 20] [--warmup 3] [--resolution 64]
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


def _run_variant(mode: str, args: dict, queue: mp.Queue) -> None:
    """Child process: train ``mode`` and report timings and peak RSS."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from tryon.tiny_models import ensure_tiny_models
    from tryon.training.config import TrainingConfig
    from tryon.training.train import train

    torch.set_num_threads(args["threads"])
    models = ensure_tiny_models(Path(args["models"]))
    with tempfile.TemporaryDirectory() as tmp:
        stamps: list[float] = []
        config = TrainingConfig(
            pretrained_model=str(models["sd-inpaint"]),
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
            "mode": mode,
            "steps_per_s": 1.0 / statistics.median(intervals),
            "mean_steps_per_s": len(intervals) / sum(intervals),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        }
    )


def measure(mode: str, args: dict) -> dict:
    """Run one variant in a fresh spawned process and return its figures."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run_variant, args=(mode, args, queue))
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
    args = vars(parser.parse_args())
    if args["steps"] < 2:
        parser.error("--steps must be >= 2")
    print(
        f"tiny SD inpainting checkpoint, CPU, {args['resolution']} px, batch {args['batch_size']}, "
        f"{args['threads']} threads, {args['steps']} timed steps after {args['warmup']} warm-up"
    )
    full = measure("full", args)  # the baseline
    lora = measure("lora", args)
    print(f"{'variant':<8} {'steps/s (median)':>17} {'steps/s (mean)':>15} {'peak RSS MiB':>13}")
    for row in (full, lora):
        print(
            f"{row['mode']:<8} {row['steps_per_s']:>17.2f} {row['mean_steps_per_s']:>15.2f} "
            f"{row['peak_rss_mib']:>13.0f}"
        )
    print(
        f"ratio lora/full: steps/s x{lora['steps_per_s'] / full['steps_per_s']:.2f}, "
        f"peak RSS x{lora['peak_rss_mib'] / full['peak_rss_mib']:.2f}"
    )


if __name__ == "__main__":
    main()
