"""Validation while fine-tuning: what it adds to the training time, training with and without it in one run.

Each variant runs the real training loop (:func:`tryon.training.loop.train`) in its own spawned
process on the same 12 garment photos with masks (2 held out, as by default), the variants taking
turns (``--rounds``):

- ``without``: no validation at all (``validation_steps`` 0, ``skip_final_validation``): the baseline;
- ``with``: validation as configured by default (every ``DEFAULT_VALIDATION_STEPS`` steps when photos
  are held out, and the final grid; ``--validation-steps N`` for another interval), each round scored
  with CLIP-I, DINO and CLIP-T by metric networks of the model's size class.

It prints the wall time of both, the overhead ``(with - without) / without`` at this run's interval,
the time of a training step (the baseline's median) and of a validation round (``validation.json``
records each round's seconds), and the overhead projected on a default-length run (``max_train_steps``
400 at the default interval): ``rounds x round time / (steps x step time)``.

``--model tiny``: the tiny checkpoint; its steps and renders are so small that fixed costs (pipeline
calls, grids, TensorBoard) dominate, so run it at the default length: ``--steps 400`` measures the
default directly. ``--model full``: Stable Diffusion 2 inpainting's shapes (865.9 M UNet, the
OpenCLIP-H text encoder, the full VAE; :mod:`bench.full_models`), random weights, at ``--size`` px,
scored by full-size CLIP ViT-L/14 and DINOv2-base: the ratio of a round to a step is the real model's
(both scale with the pixels), but a step takes many seconds on a CPU, so the run is short and the
default is projected from the measured step and round.

    .venv/bin/python -m bench.validation_overhead --model tiny --steps 400
    .venv/bin/python -m bench.validation_overhead --model full --size 256 --steps 4 --validation-steps 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path

PHOTOS = 12


def _photos(folder: Path, size: int) -> Path:
    """``PHOTOS`` garment photos (noise with a coloured ellipse) and their masks (``<stem>.mask.png``)."""
    import numpy as np
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    box = (size // 5, size // 6, 4 * size // 5, 5 * size // 6)
    for i in range(PHOTOS):
        photo = Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        ImageDraw.Draw(photo).ellipse(box, fill=(20 * i, 60, 160))
        photo.save(folder / f"garment{i:02d}.png")
        mask = Image.new("L", photo.size, 0)
        ImageDraw.Draw(mask).ellipse(box, fill=255)
        mask.save(folder / f"garment{i:02d}.mask.png")
    return folder


def _build(model: str, work: Path) -> tuple[Path, Path, dict]:
    """(pipeline folder, metric networks folder, a description) for ``--model``."""
    from tryon.evaluation.tiny_metrics import build_metric_models

    metrics = build_metric_models(work / "metric-models", full=model == "full")
    if model == "tiny":
        from tryon.weights.tiny import ensure_tiny_models

        folder = ensure_tiny_models(Path(".cache/tiny-models"))["sd-inpaint"]
        return folder, metrics, {"model": "tiny SD 2 inpainting checkpoint", "metric_models": "tiny"}
    from bench.full_models import build_pipeline, unet_params

    pipe = build_pipeline("sd2-inpaint")
    folder = work / "sd2-inpaint"
    pipe.save_pretrained(folder)
    described = {
        "model": f"SD 2 inpainting shapes, random weights (UNet {unet_params(pipe) / 1e6:.1f} M)",
        "metric_models": "CLIP ViT-L/14 + DINOv2-base, random weights",
    }
    del pipe
    return folder, metrics, described


def _variant(name: str, settings: dict, queue: mp.Queue) -> None:
    """Child process: one training run; reports its wall time, step stamps and validation rounds."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from tryon.training.config import TrainingConfig
    from tryon.training.loop import train

    torch.set_num_threads(settings["threads"])
    with tempfile.TemporaryDirectory() as tmp:
        stamps: list[float] = []
        values = {
            "pretrained_model": settings["model_dir"],
            "instance_data_dir": settings["photos"],
            "mask_dir": settings["photos"],
            "instance_prompt": "a photo of sks jacket",
            "output_dir": str(Path(tmp) / "out"),
            "resolution": settings["size"],
            "max_train_steps": settings["steps"],
        }
        if name == "without":
            values.update(validation_steps=0, skip_final_validation=True)
        else:
            values.update(validation_metric_models=settings["metric_models"])
            if settings["validation_steps"] is not None:
                values["validation_steps"] = settings["validation_steps"]
        config = TrainingConfig(**values)
        started = time.perf_counter()
        result = train(config, progress=False, on_step=lambda step, loss: stamps.append(time.perf_counter()))
        wall = time.perf_counter() - started
        rounds = []
        if result.validation_history is not None:
            rounds = json.loads(result.validation_history.read_text())["rounds"]
        saved = json.loads(result.config_path.read_text())
    # pure training steps: the intervals between step stamps that hold no validation round (a round
    # runs after the stamp of its step, so the interval that starts at that step holds it)
    round_steps = {r["step"] for r in rounds}
    steps = [
        b - a for step, (a, b) in enumerate(itertools.pairwise(stamps), start=1) if step not in round_steps
    ]
    queue.put(
        {
            "variant": name,
            "wall_s": wall,
            # phases: loading (up to the first step), the steps (rounds included), after the last step
            "load_s": stamps[0] - started,
            "steps_s": stamps[-1] - stamps[0],
            "after_s": wall - (stamps[-1] - started),
            "step_s": statistics.median(steps) if steps else wall,
            "rounds": [{k: r[k] for k in ("step", "seconds", "score_seconds")} for r in rounds],
            "validation_steps": saved["validation_steps"],
            "held_out": saved["held_out"],
        }
    )


def _measure(name: str, settings: dict) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_variant, args=(name, settings, queue))
    proc.start()
    result = queue.get(timeout=6 * 3600)
    proc.join()
    return result


def rounds_in(steps: int, every: int) -> int:
    """Validation rounds of a ``steps``-step run validating every ``every`` steps, the final grid included."""
    if every <= 0:
        return 1
    return steps // every + (1 if steps % every else 0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--size", type=int, default=None, help="training resolution (tiny 64, full 256)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (tiny 400, full 4)")
    parser.add_argument(
        "--validation-steps", type=int, default=None, help="interval of the 'with' run (default: the default)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="repeat both variants, alternating order")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    from tryon.training.config import TrainingConfig

    size = args.size or (64 if args.model == "tiny" else 256)
    steps = args.steps or (400 if args.model == "tiny" else 4)
    defaults = TrainingConfig(pretrained_model="-", instance_data_dir="-", instance_prompt="-")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        model_dir, metric_dir, described = _build(args.model, work)
        settings = {
            "model_dir": str(model_dir),
            "metric_models": str(metric_dir),
            "photos": str(_photos(work / "photos", size)),
            "size": size,
            "steps": steps,
            "validation_steps": args.validation_steps,
            "threads": args.threads,
        }
        print(
            f"{described['model']}, {size} px, LoRA rank {defaults.lora_rank}, "
            f"batch {defaults.train_batch_size}, {args.threads} torch thread(s); "
            f"built in {time.perf_counter() - started:.0f} s"
        )
        renders = defaults.effective_validation_images(True)
        print(
            f"{PHOTOS} photos; validation round: {renders} render(s) per held-out photo, "
            f"{defaults.validation_inference_steps} steps, CFG, scored by {described['metric_models']}"
        )
        runs: dict[str, list[dict]] = {"without": [], "with": []}
        order = ["without", "with"]
        for index in range(max(1, args.rounds)):
            for name in order if index % 2 == 0 else order[::-1]:
                runs[name].append(_measure(name, settings))
    report(runs, steps)


def projected_validation_s(rounds: list[float], count: int) -> float:
    """Seconds of ``count`` rounds from measured ones: the first (it loads the metric networks and embeds
    the references once) plus ``count - 1`` times the median of the others (the first when alone)."""
    later = rounds[1:] or rounds[:1]
    return rounds[0] + (count - 1) * statistics.median(later)


def report(runs: dict[str, list[dict]], steps: int) -> float:
    """Print the figures of both variants; returns the overhead projected on the default run (the larger
    of the two projections: with the baseline's step time, and with the step time of the run that
    validated, measured between its rounds in the same process, which load drift between the two
    processes on a shared machine cannot skew)."""
    from tryon.training.config import DEFAULT_VALIDATION_STEPS, TrainingConfig

    without, with_ = runs["without"], runs["with"]
    every = with_[0]["validation_steps"]
    interval = f"every {every} steps" if every else "the final grid only"
    print(f"held out: {', '.join(with_[0]['held_out'])}; {steps} steps; validation {interval}")
    wall_a = statistics.median(r["wall_s"] for r in without)
    wall_b = statistics.median(r["wall_s"] for r in with_)
    step_a = statistics.median(r["step_s"] for r in without)
    step_b = statistics.median(r["step_s"] for r in with_)
    first = [r["rounds"][0]["seconds"] for r in with_]
    later = [x["seconds"] for r in with_ for x in r["rounds"][1:]]
    scoring = [x["score_seconds"] for r in with_ for x in r["rounds"]]
    overheads = [(b["wall_s"] - a["wall_s"]) / a["wall_s"] for a, b in zip(without, with_, strict=True)]
    print(f"without validation: {wall_a:8.1f} s   (a training step: {step_a:.3f} s, median)")
    rounds_text = f"first round {statistics.median(first):.2f} s"
    if later:
        rounds_text += f", later rounds {statistics.median(later):.2f} s (median)"
    print(
        f"with validation:    {wall_b:8.1f} s   (a training step: {step_b:.3f} s between rounds; "
        f"{len(with_[0]['rounds'])} rounds: {rounds_text})"
    )
    round_s = statistics.median(first + later)
    print(
        f"  a round = {round_s / step_a:.1f} training steps of the baseline, "
        f"{round_s / step_b:.1f} of its own run; scoring {statistics.median(scoring):.2f} s of it "
        "(the first round also loads the networks)"
    )
    print(f"overhead at this run's interval: {statistics.median(overheads):.1%}  (with - without) / without")
    for name, runs_ in (("without", without), ("with", with_)):
        phases = {k: statistics.median(r[k] for r in runs_) for k in ("load_s", "steps_s", "after_s")}
        print(
            f"  {name:<8} loading {phases['load_s']:.1f} s, steps {phases['steps_s']:.1f} s, "
            f"after the last step {phases['after_s']:.1f} s"
        )
    default_steps = TrainingConfig(
        pretrained_model="-", instance_data_dir="-", instance_prompt="-"
    ).max_train_steps
    count = rounds_in(default_steps, DEFAULT_VALIDATION_STEPS)
    validation_s = projected_validation_s([r["seconds"] for r in with_[0]["rounds"]], count)
    projections = []
    for label, step_s in (("the baseline's step", step_a), ("its own step", step_b)):
        projected = validation_s / (default_steps * step_s)
        projections.append(projected)
        print(
            f"projected on the default run ({default_steps} steps, every {DEFAULT_VALIDATION_STEPS}: "
            f"{count} rounds, the final one included), {label}: {validation_s:.1f} s / "
            f"({default_steps} x {step_s:.3f} s) = {projected:.1%}  (goal <= 10%)"
        )
    return max(projections)


if __name__ == "__main__":
    main()
