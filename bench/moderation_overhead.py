"""What content moderation adds per try-on, against the model time, on the local stack.

The same job (the demo photo, one image, no upscaling) runs with moderation off and on, in one
process, on the same models (``--rounds N`` alternates the order). With moderation on it makes
two ``DetectModerationLabels`` calls: one in ModerateInputs (the photo) and one per result in
ModerateResults; they go to the local stand-in (:mod:`tryon.local.moderation_standin`), whose
own time per call is measured and taken out, leaving what the workflow adds around the call
(a Lambda invocation and a state transition each, the S3 read, the image preparation, HTTP).
Rekognition's own time is then added back from ``--rekognition-ms`` (AWS publishes no latency
figure for DetectModerationLabels; Rekognition's CloudWatch metric ``ResponseTime`` measures it
on an account) to estimate what moderation adds on AWS. Both are compared with the endpoints'
inference time measured in the same run.

    .venv/bin/python -m bench.moderation_overhead            # full-size CLIPSeg + one SD2 step, 512 px
    .venv/bin/python -m bench.moderation_overhead --tiny-inpaint --rounds 3   # full-size CLIPSeg only
    .venv/bin/python -m bench.moderation_overhead --tiny     # the tiny checkpoints, for a quick look
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# A full-size step on a busy 2-core CPU can outlast SageMaker's 60 s; the time limit is not what
# this measures, so the workflow's client (read when it is imported) and the endpoints wait longer.
os.environ.setdefault("TRYON_ENDPOINT_READ_TIMEOUT", "900")

STAGES = ("ModerateInputs", "ModerateResults")
REASON = "benchmark: the same job without moderation"


def run_once(wf: Any, photo_key: str, seed: int) -> dict[str, float]:
    """One execution of the demo job on ``wf``: per-state walls, inference, stand-in time (ms)."""
    from tryon.local.runner import DEMO_OVERRIDES

    calls_before = len(wf.moderation.calls)
    console = {
        "image": f"s3://{wf.input_bucket}/{photo_key}",
        **DEMO_OVERRIDES,
        "upscale": False,
        "seed": seed,
        "guidance_scale": 1.0,  # one UNet pass per step (as bench.async_overhead): shorter full-size runs
    }
    result = wf.run(console, timeout=3600)
    if not result.succeeded or result.output.get("status") != "succeeded":
        raise RuntimeError(f"the job did not succeed: {result.output or result.cause}")
    manifest = wf.read_json(result.output["manifest"])
    walls = {e.state: e.duration_s * 1000 for e in result.events if e.phase == "exited" and e.duration_s}
    calls = wf.moderation.calls[calls_before:]
    first, last = min(e.timestamp for e in result.events), max(e.timestamp for e in result.events)
    return {
        **{stage: walls[stage] for stage in STAGES},
        "Finalize": walls["Finalize"],
        "inference": sum(
            manifest["timings_ms"][k]["endpoint_timings_ms"]["inference"] for k in ("segment", "inpaint")
        ),
        "standin": sum(call.elapsed_ms for call in calls),
        "calls": float(len(calls)),
        "execution": (last - first).total_seconds() * 1000,
    }


def main(argv: list[str] | None = None) -> None:
    from bench.workflow_overhead import model_dirs
    from tryon.local import LocalWorkflow
    from tryon.local.harness import default_template_path
    from tryon.local.runner import DEMO_PHOTO

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tiny", action="store_true", help="Use the tiny checkpoints instead of full-size ones."
    )
    parser.add_argument(
        "--tiny-inpaint",
        action="store_true",
        help="Full-size CLIPSeg, tiny inpainting model (when a full-size step outlasts Inpaint's 180 s).",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="Pairs of executions (off, on), alternating the order."
    )
    parser.add_argument(
        "--rekognition-ms",
        type=float,
        default=500.0,
        help="Assumed DetectModerationLabels latency per call on AWS, for the estimate (default 500).",
    )
    parser.add_argument(
        "--gpu-inference-s",
        type=float,
        default=4.0,
        help="Model time of a try-on on a GPU endpoint to compare with (default 4 s: SD 2 at 512 px, "
        "30 steps, one image on an ml.g5 A10G; not measured here).",
    )
    args = parser.parse_args(argv)
    from tryon.local.template import SamTemplate
    from tryon.server import EndpointConfig, LocalEndpointServer

    names = SamTemplate(default_template_path()).parameters
    settings = {"off": {"ContentModeration": "off", "ContentModerationOffReason": REASON}, "on": {}}
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny_inpaint and not args.tiny:
            from bench.handler_overhead import build_full_clipseg
            from tryon.weights.tiny import ensure_tiny_models

            build_full_clipseg(Path(tmp, "clipseg"))
            dirs = {"clipseg": Path(tmp, "clipseg"), "sd_inpaint": ensure_tiny_models()["sd-inpaint"]}
            parameters, label = {"DefaultSteps": 1}, "full-size CLIPSeg, tiny SD inpainting"
        else:
            dirs, parameters, label = model_dirs(args.tiny, Path(tmp))
        configs = [
            EndpointConfig(
                names["ClipSegEndpointName"], "clipseg", str(dirs["clipseg"]), max_invocation_seconds=900
            ),
            EndpointConfig(
                names["InpaintEndpointName"],
                "sd_inpaint",
                str(dirs["sd_inpaint"]),
                max_invocation_seconds=900,
            ),
        ]
        with LocalEndpointServer(configs) as server:  # the models load once for every run
            for round_ in range(args.rounds):
                for setting in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
                    with LocalWorkflow(
                        endpoint_url=server.url,
                        parameters={**parameters, **settings[setting]},
                        upscale=False,
                        stack_name=f"bench-{setting}-{uuid.uuid4().hex[:6]}",
                    ) as wf:
                        key = wf.upload(DEMO_PHOTO)["key"]
                        figures = run_once(wf, key, seed=1234)
                    runs[setting].append(figures)
                    print(
                        f"round {round_ + 1} moderation {setting}: "
                        + ", ".join(f"{k} {v:.0f}" for k, v in figures.items())
                    )
    report(runs, label, args.rekognition_ms, args.gpu_inference_s)


def report(runs: dict[str, list[dict[str, float]]], label: str, rekognition_ms: float, gpu_s: float) -> None:
    """The table: what the moderation states add, measured and estimated for AWS, against model time."""
    med = {setting: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for setting, rs in runs.items()}
    on, off = med["on"], med["off"]
    added = sum(on[s] - off[s] for s in STAGES)
    workflow_side = added - on["standin"]
    estimate = workflow_side + len(STAGES) * rekognition_ms  # one call on each stage's critical path
    inference = statistics.median([r["inference"] for rs in runs.values() for r in rs])
    print(
        f"\n{label}; {len(runs['on'])} run(s) each, medians; {on['calls']:.0f} Rekognition calls per try-on\n"
    )
    print("| | moderation off | moderation on | added |")
    print("| --- | ---: | ---: | ---: |")
    for stage in STAGES:
        print(f"| {stage} wall ms | {off[stage]:.0f} | {on[stage]:.0f} | {on[stage] - off[stage]:.0f} |")
    print(f"| stand-in's own time ms (the classifier) | | {on['standin']:.0f} | |")
    print(f"| workflow around the calls ms (added - stand-in) | | | **{workflow_side:.0f}** |")
    whole = on["execution"] - off["execution"]
    print(f"| whole execution ms | {off['execution']:.0f} | {on['execution']:.0f} | {whole:.0f} |")
    print(f"| endpoint inference ms | {off['inference']:.0f} | {on['inference']:.0f} | |")
    share = added / inference
    print(
        f"\nmeasured locally: moderation adds {added:.0f} ms = {share:.1%} of the model time "
        f"({inference:.0f} ms)"
    )
    print(
        f"estimated on AWS ({rekognition_ms:.0f} ms per call, {len(STAGES)} calls on the critical path): "
        f"{estimate:.0f} ms = {estimate / inference:.1%} of this run's model time, "
        f"{estimate / (gpu_s * 1000):.1%} of a {gpu_s:g} s GPU try-on"
    )


if __name__ == "__main__":
    main()
