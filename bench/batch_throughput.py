"""Catalogue batches: a batch of N rows through the local path vs N single executions, same run.

Both run on one local stack (template.yaml on moto, the real Lambda handlers, the endpoints
behind the local server): first one batch (ValidateBatch -> Distributed Map -> N child
executions of the try-on state machine -> SummarizeBatch), then the same N try-ons as N
single executions started one after the other (each a console input, as ``tryon run``'s
execution is), with other seeds so neither reuses the other's results. For each it prints
wall time, the endpoints' own inference time (from each job's manifest) and the per-row
overhead = (wall - inference) / rows, against the model time per row. The goal is a batch
per-row overhead under 5% of the model time with full-size CLIPSeg and one full-size
inpainting step. ``--concurrency`` also runs the batch at other MaxConcurrency values (rows
per minute; on one machine the endpoint server is the capacity). The main batch runs one
row at a time, as the single executions do; with more, rows' inference overlaps in wall time.

    .venv/bin/python -m bench.batch_throughput --rows 4 --mode sd_inpaint=async   # full size, ~8 GB RAM
    .venv/bin/python -m bench.batch_throughput --tiny --rows 20 --concurrency 4 10
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def inference_ms(wf: Any, manifest_uri: str) -> float:
    """The endpoints' own inference time for one job (CLIPSeg + inpainting), from its manifest."""
    timings = wf.read_json(manifest_uri)["timings_ms"]
    return sum(timings[step]["endpoint_timings_ms"]["inference"] for step in ("segment", "inpaint"))


def run_batch(wf: Any, batches: Any, rows: list[dict], name: str, concurrency: int) -> tuple[float, float]:
    """(wall s, inference s) of one batch of ``rows``."""
    from tryon.workflow import batch_manifest

    text = batch_manifest.write_manifest(rows, "jsonl")
    key = batches.upload_manifest(text, name, metadata={"max-concurrency": str(concurrency)})["key"]
    started = time.perf_counter()
    outcome = batches.wait(batches.find_started(key), timeout=7200)
    wall = time.perf_counter() - started
    assert outcome.result.succeeded and outcome.report["status"] == "succeeded", outcome.result.cause
    inference = sum(inference_ms(wf, row["manifest"]) for row in outcome.report["rows"]) / 1000
    return wall, inference


def run_singles(wf: Any, rows: list[dict]) -> tuple[float, float]:
    """(wall s, inference s) of the same try-ons as single executions, one after the other."""
    started = time.perf_counter()
    inference = 0.0
    for row in rows:
        console = {**row, "image": f"s3://{wf.input_bucket}/{wf.input_prefix}{row['image']}"}
        result = wf.run(console, timeout=3600)
        assert result.succeeded and result.output["status"] == "succeeded", result.cause
        inference += inference_ms(wf, result.output["manifest"]) / 1000
    return time.perf_counter() - started, inference


def line(label: str, rows: int, wall: float, inference: float) -> str:
    per_row = (wall - inference) / rows
    model = inference / rows
    return (
        f"| {label} | {rows} | {wall:.1f} | {inference:.1f} | {per_row * 1000:.0f} | {model * 1000:.0f} "
        f"| **{per_row / model:.1%}** | {rows / wall * 60:.1f} |"
    )


def main(argv: list[str] | None = None) -> None:
    from PIL import Image

    from bench.handler_overhead import build_full_clipseg
    from bench.workflow_overhead import build_full_sd2_inpaint
    from tryon.local import LocalWorkflow
    from tryon.local.batch_runner import LocalBatches, distributed_map_engine
    from tryon.local.runner import DEMO_PHOTO, TINY_PARAMETERS
    from tryon.weights.tiny import ensure_tiny_models

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="The tiny checkpoints instead of full-size ones.")
    parser.add_argument("--rows", type=int, default=20, help="Rows in the batch (and single executions).")
    parser.add_argument("--concurrency", type=int, nargs="*", default=[], help="Extra MaxConcurrency values.")
    parser.add_argument("--size", type=int, default=512, help="Side of the (square) photo in px.")
    parser.add_argument(
        "--mode",
        action="append",
        default=[],
        help="KIND=MODE, e.g. sd_inpaint=async (SageMaker's 60 s limit "
        "of a real-time endpoint holds locally; a loaded CPU needs longer for a full-size step).",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny:
            tiny = ensure_tiny_models()
            dirs = {"clipseg": tiny["clipseg"], "sd_inpaint": tiny["sd-inpaint"]}
            parameters, label = dict(TINY_PARAMETERS), "tiny checkpoints"
        else:
            clipseg = build_full_clipseg(Path(tmp, "clipseg"))
            unet = build_full_sd2_inpaint(Path(tmp, "sd2-inpaint"))
            print(f"built CLIPSeg {clipseg / 1e6:.1f} M, SD2-inpaint UNet {unet / 1e6:.1f} M params")
            dirs = {"clipseg": Path(tmp, "clipseg"), "sd_inpaint": Path(tmp, "sd2-inpaint")}
            parameters, label = {"DefaultSteps": 1}, "full-size CLIPSeg + SD2-inpaint, 1 step"
        parameters |= {"UpscaleEndpointName": "", "DefaultNegativeQueries": ""}
        photo = Path(tmp, f"photo-{args.size}.jpg")
        with Image.open(DEMO_PHOTO) as img:
            img.convert("RGB").resize((args.size, args.size)).save(photo, quality=90)

        def rows(seed0: int) -> list[dict]:
            base = {"image": photo.name, "query": "an orange space suit", "threshold": 0.0}
            return [
                {**base, "prompt": "a red plaid flannel shirt", "seed": seed0 + i} for i in range(args.rows)
            ]

        results = []
        modes = dict(item.split("=", 1) for item in args.mode)
        stack = LocalWorkflow(dirs, parameters=parameters, modes=modes, deliver_events=True)
        with distributed_map_engine(), stack as wf:
            batches = LocalBatches(wf)
            batches.deliver_uploads()
            wf.upload(photo, f"{wf.input_prefix}{photo.name}")
            time.sleep(1.0)  # the upload's own execution (the image rule) is not part of the figures
            for execution in wf.client("stepfunctions").list_executions(stateMachineArn=wf.state_machine_arn)[
                "executions"
            ]:
                wf.wait(execution["executionArn"], timeout=3600)
            wf.run(
                {"image": f"s3://{wf.input_bucket}/{wf.input_prefix}{photo.name}", "seed": 999_999},
                timeout=3600,
            )  # warm-up: first-call costs of both endpoints are not part of the figures
            concurrency = 1  # one row at a time, as the single executions run: the fair comparison
            wall, inference = run_batch(wf, batches, rows(1000), "bench.jsonl", concurrency)
            results.append(line(f"batch, MaxConcurrency {concurrency}", args.rows, wall, inference))
            wall, inference = run_singles(wf, rows(2000))
            results.append(line("single executions, one after the other", args.rows, wall, inference))
            for i, extra in enumerate(args.concurrency):
                wall, inference = run_batch(wf, batches, rows(3000 + 1000 * i), f"bench-{extra}.jsonl", extra)
                results.append(line(f"batch, MaxConcurrency {extra}", args.rows, wall, inference))

    shown = ", ".join(args.mode) or "real-time endpoints"
    print(f"\n{label}; photo {args.size} px; {shown}; {os.cpu_count()} CPUs\n")
    print(
        "| run | rows | wall s | inference s | overhead ms/row | model ms/row | overhead/model | rows/min |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(results))
    print(
        "\n'inference' = the endpoints' own inference time (CLIPSeg + inpainting) from each job's manifest;"
    )
    print("'overhead' = wall - inference: validation, orchestration, Lambda handlers, S3, HTTP, the report.")


if __name__ == "__main__":
    main()
