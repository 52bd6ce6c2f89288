"""An outfit against one job per garment: what dressing three garments in one execution saves.

Same stack, same models, same photo, same run. The outfit is one execution with three
garments (lower body, upper body, footwear), each its class's CLIPSeg mask cut to a box
(disjoint boxes, so both sides repaint exactly the same pixels). The baseline is what a
caller does without outfits: one job per garment, one after the other, each on the
previous job's result (copied back under the input prefix, as a caller would upload it).
Both do the same model work (three CLIPSeg requests, three inpainting calls of the same
size); the outfit saves two Prepares, two Finalizes, two photo reads and the uploads in
between, and adds the Masks state. Printed: wall time, the endpoints' own compute seconds
(the manifests' ``cost``), the rest (overhead) per pass, and outfit / separate ratios.

    .venv/bin/python -m bench.outfit_overhead            # full size (several minutes, ~8 GB RAM)
    .venv/bin/python -m bench.outfit_overhead --tiny     # the tiny checkpoints, for a quick look
    .venv/bin/python -m bench.outfit_overhead --mode sd_inpaint=async   # a loaded CPU: a full-size
                                                  # step can run past a real-time endpoint's 60 s
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: The garments, in the order they are worn, and their boxes (fractions of the photo; disjoint).
GARMENTS = (
    ("lower-body", "0,0.55,1,0.85"),
    ("upper-body", "0,0.2,1,0.55"),
    ("footwear", "0,0.85,1,1"),
)
#: Every garment: its class's CLIPSeg query, all of it (threshold 0: random weights find anything),
#: no keep-regions, cut to its box. The same for the outfit and the separate jobs.
COMMON = {"threshold": 0.0, "negative_queries": []}


def _timed(wf: Any, console: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """(wall seconds, manifest) of one execution from a console input."""
    started = time.perf_counter()
    result = wf.run(console, timeout=3600)
    wall = time.perf_counter() - started
    if not result.succeeded or result.output.get("status") != "succeeded":
        raise SystemExit(f"the execution did not paint: {result.error}: {result.cause} {result.output}")
    return wall, wf.read_json(result.output["manifest"])


def outfit(wf: Any, image: str, seed: int) -> tuple[float, float, dict[str, Any]]:
    """(wall s, compute s, manifest) of the three garments in one execution."""
    garments = [{"garment_class": cls, "mask_box": box} for cls, box in GARMENTS]
    wall, manifest = _timed(wf, {"image": image, **COMMON, "seed": seed, "garments": garments})
    return wall, manifest["cost"]["compute_seconds"], manifest


def separate(wf: Any, key: str, seed: int) -> tuple[float, float, list[dict[str, Any]]]:
    """(wall s, compute s, manifests) of one job per garment, each on the previous one's result."""
    s3 = wf.client("s3")
    wall, compute, manifests = 0.0, 0.0, []
    photo = key
    for index, (cls, box) in enumerate(GARMENTS):
        started = time.perf_counter()
        if manifests:  # the caller puts the previous result back under the input prefix
            source = manifests[-1]["outputs"]["inpainted"][0].removeprefix(f"s3://{wf.output_bucket}/")
            photo = f"inputs/bench-chain-{seed}-{index}.png"
            s3.copy_object(
                Bucket=wf.input_bucket, Key=photo, CopySource={"Bucket": wf.output_bucket, "Key": source}
            )
        copy_s = time.perf_counter() - started
        console = {"image": f"s3://{wf.input_bucket}/{photo}", **COMMON, "seed": seed}
        job_wall, manifest = _timed(wf, {**console, "garment_class": cls, "mask_box": box})
        wall += copy_s + job_wall
        compute += manifest["cost"]["compute_seconds"]
        manifests.append(manifest)
    return wall, compute, manifests


def _round(wf: Any, image: str, key: str, seed: int, outfit_first: bool) -> tuple[tuple, tuple]:
    """(outfit's figures, separate jobs' figures) of one round; ``outfit_first`` says which runs first, so
    alternating it across rounds keeps a drift in the machine's load from favouring either side."""
    if outfit_first:
        done = outfit(wf, image, seed)
        return done, separate(wf, key, seed)
    chained = separate(wf, key, seed)
    return outfit(wf, image, seed), chained


def main(argv: list[str] | None = None) -> None:
    from bench.workflow_overhead import model_dirs
    from tryon.local import LocalWorkflow
    from tryon.local.runner import DEMO_PHOTO

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tiny", action="store_true", help="Use the tiny checkpoints instead of full-size ones."
    )
    parser.add_argument("--repeats", type=int, default=3, help="Outfit / separate rounds (alternating).")
    parser.add_argument(
        "--mode",
        action="append",
        default=[],
        help="KIND=MODE, e.g. sd_inpaint=async (SageMaker's 60 s limit of a real-time endpoint holds "
        "locally; a loaded CPU can need longer for a full-size step).",
    )
    args = parser.parse_args(argv)
    modes = dict(item.split("=", 1) for item in args.mode)

    with tempfile.TemporaryDirectory() as tmp:
        dirs, parameters, label = model_dirs(args.tiny, Path(tmp))
        with LocalWorkflow(dirs, parameters=parameters, upscale=False, modes=modes) as wf:
            key = wf.upload(DEMO_PHOTO, "inputs/bench-outfit.jpg")["key"]
            image = f"s3://{wf.input_bucket}/{key}"
            # a warm-up (one lone garment: each model's first call, every code path imported), then
            # the measured rounds; a new seed each time, so every job id is new and nothing is reused
            cls, box = GARMENTS[0]
            _timed(wf, {"image": image, **COMMON, "seed": 1, "garment_class": cls, "mask_box": box})
            seeds = range(2, 2 + args.repeats)
            rounds = [_round(wf, image, key, seed, outfit_first=n % 2 == 0) for n, seed in enumerate(seeds)]
    passes = len(GARMENTS)
    print(f"\n{label}; photo {DEMO_PHOTO.name}; {passes} garments; {args.repeats} round(s), alternating\n")
    print("| round | outfit wall s | compute s | overhead s | separate wall s | compute s | overhead s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    wall_ratios, overhead_ratios, per_pass = [], [], []
    for number, ((o_wall, o_compute, _), (s_wall, s_compute, _)) in enumerate(rounds, 1):
        o_over, s_over = o_wall - o_compute, s_wall - s_compute
        wall_ratios.append(o_wall / s_wall)
        overhead_ratios.append(o_over / s_over)
        per_pass.append((o_over / passes, s_over / passes))
        print(f"| {number} | {o_wall:.2f} | {o_compute:.2f} | {o_over:.2f} | {s_wall:.2f} | {s_compute:.2f} "
              f"| {s_over:.2f} |")  # fmt: skip
    o_pass = statistics.median(p[0] for p in per_pass)
    s_pass = statistics.median(p[1] for p in per_pass)
    print(f"\noverhead per pass (median): outfit {o_pass:.2f} s, one job per garment {s_pass:.2f} s")
    print(f"outfit / separate (median of the rounds' ratios): wall **{statistics.median(wall_ratios):.3f}**, "
          f"overhead **{statistics.median(overhead_ratios):.3f}**")  # fmt: skip
    print(
        "overhead = wall - the endpoints' compute seconds (the manifests' cost): Lambda handlers, S3, HTTP,"
    )
    print(
        "image coding, orchestration (and for the separate jobs: putting each result back as the next photo)."
    )


if __name__ == "__main__":
    main()
