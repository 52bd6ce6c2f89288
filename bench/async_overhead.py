"""Asynchronous vs real-time path: what the S3 request, the queue, SNS and the task-token callback add.

The same job runs twice in one process, on the same models: once with both endpoints in
real-time mode (``InvokeEndpoint``), once with both in async mode (request JSON to S3,
``InvokeEndpointAsync``, the local server's queue, answer to S3, SNS notification,
CompleteAsync, ``SendTaskSuccess``). For each endpoint state it prints wall time, the
endpoint's own ``inference`` time and the rest; the figure of merit is the time the
asynchronous path adds per call and per execution, as a share of model time (goal < 5%
with full-size CLIPSeg and one full-size SD2 inpainting step, as ``bench.workflow_overhead``
runs them, with classifier-free guidance off so that the real-time call stays within 60 s).
``--rounds N`` alternates the order (real-time first, then async first, ...).

    .venv/bin/python -m bench.async_overhead            # full size (several minutes, ~8 GB RAM)
    .venv/bin/python -m bench.async_overhead --tiny-inpaint --rounds 3   # full-size CLIPSeg only
    .venv/bin/python -m bench.async_overhead --tiny     # the tiny checkpoints, for a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

STATES = {"realtime": ("Segment", "Inpaint"), "async": ("SegmentAsync", "InpaintAsync")}
KEYS = ("segment", "inpaint")


def run_once(mode: str, dirs: dict, parameters: dict, out: Path) -> dict[str, float]:
    """One execution with both endpoints in ``mode``: per state wall, inference and the rest (ms)."""
    from tryon.aws.executions import StateEvent
    from tryon.local.runner import DEMO_OVERRIDES, DEMO_PHOTO, run_photo

    events: list[StateEvent] = []
    run = run_photo(
        DEMO_PHOTO,
        model_dirs=dirs,
        out_dir=out,
        overrides={**DEMO_OVERRIDES, "upscale": False},
        upscale=False,
        parameters=parameters,
        on_event=events.append,
        timeout=3600,
        modes={"clipseg": mode, "sd_inpaint": mode},
    )
    if not run.result.succeeded:
        raise RuntimeError(f"{mode}: {run.result.cause}")
    manifest = json.loads((out / "manifest.json").read_text())
    walls = {e.state: e.duration_s * 1000 for e in events if e.phase == "exited" and e.duration_s is not None}
    figures: dict[str, float] = {}
    for state, key in zip(STATES[mode], KEYS, strict=True):
        inference = manifest["timings_ms"][key]["endpoint_timings_ms"]["inference"]
        figures[f"{key}_wall"] = walls[state]
        figures[f"{key}_inference"] = inference
        figures[f"{key}_rest"] = walls[state] - inference
    first, last = min(e.timestamp for e in events), max(e.timestamp for e in events)
    figures["execution_wall"] = (last - first).total_seconds() * 1000
    figures["execution_inference"] = sum(figures[f"{k}_inference"] for k in KEYS)
    return figures


def main(argv: list[str] | None = None) -> None:
    from bench.handler_overhead import build_full_clipseg
    from bench.workflow_overhead import model_dirs
    from tryon.weights.tiny import ensure_tiny_models

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tiny", action="store_true", help="Use the tiny checkpoints instead of full-size ones."
    )
    parser.add_argument("--rounds", type=int, default=1, help="Pairs of executions, alternating the order.")
    parser.add_argument(
        "--tiny-inpaint",
        action="store_true",
        help="Full-size CLIPSeg, tiny inpainting model (when a full-size step outlasts the real-time 60 s).",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny_inpaint and not args.tiny:
            build_full_clipseg(Path(tmp, "clipseg"))
            dirs = {"clipseg": Path(tmp, "clipseg"), "sd_inpaint": ensure_tiny_models()["sd-inpaint"]}
            parameters, label = {"DefaultSteps": 1}, "full-size CLIPSeg, tiny SD inpainting"
        else:
            dirs, parameters, label = model_dirs(args.tiny, Path(tmp))
        if not args.tiny and not args.tiny_inpaint:
            # classifier-free guidance off (batch 1), so the real-time call can stay within
            # SageMaker's 60 s on a lightly loaded CPU (at load ~9 on 2 cores it did not: use
            # --tiny-inpaint); both paths run the same job, so the comparison holds
            parameters["DefaultGuidanceScale"] = 1
            label += ", guidance off"
        results: dict[str, list[dict[str, float]]] = {"realtime": [], "async": []}
        for round_ in range(args.rounds):
            order = ("realtime", "async") if round_ % 2 == 0 else ("async", "realtime")
            pair = {}
            try:
                for mode in order:
                    pair[mode] = run_once(mode, dirs, parameters, Path(tmp, f"out-{mode}-{round_}"))
                    print(f"round {round_ + 1} {mode}: {pair[mode]['execution_wall']:.0f} ms wall")
            except RuntimeError as exc:  # e.g. the real-time call ran past 60 s on a loaded CPU
                print(f"round {round_ + 1} left out: {exc}")
                continue
            for mode, figures in pair.items():
                results[mode].append(figures)
        if not results["realtime"]:
            raise SystemExit("no round completed both paths")

    def med(mode: str, name: str) -> float:
        return statistics.median(f[name] for f in results[mode])

    print(f"\n{label}; medians of {len(results['realtime'])} complete round(s) of {args.rounds}\n")
    print(
        "| call | real-time rest ms | async rest ms | added by async ms | inference ms | added / inference |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for key in KEYS:
        rt, asy = med("realtime", f"{key}_rest"), med("async", f"{key}_rest")
        inference = med("async", f"{key}_inference")
        print(
            f"| {key} | {rt:.0f} | {asy:.0f} | {asy - rt:.0f} | {inference:.0f} "
            f"| {(asy - rt) / inference:.1%} |"
        )
    # the execution's rest (wall - inference), so that the models' own run-to-run variance cancels
    rt_rest = med("realtime", "execution_wall") - med("realtime", "execution_inference")
    asy_rest = med("async", "execution_wall") - med("async", "execution_inference")
    inference = med("async", "execution_inference")
    added = asy_rest - rt_rest
    print(f"| whole execution | {rt_rest:.0f} | {asy_rest:.0f} | {added:.0f} | {inference:.0f} "
          f"| **{added / inference:.1%}** |")  # fmt: skip
    print(
        "\n'rest' = state wall - endpoint inference (Lambda, S3, HTTP or queue + SNS + callback, "
        "orchestration);"
    )
    print(
        "'added by async' = async rest - real-time rest, per call and per execution (goal < 5% of inference)."
    )


if __name__ == "__main__":
    main()
