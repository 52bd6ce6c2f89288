"""The shared layout's per-request overhead against the separate layout, on the local server, one run.

One :class:`~tryon.server.LocalEndpointServer` serves the same tiny CLIPSeg checkpoint twice:
as an endpoint of its own (the separate layout: ``EndpointName`` only) and as an inference
component of a shared endpoint (``EndpointName`` + ``InferenceComponentName``, routed by the
``X-Amzn-SageMaker-Inference-Component`` header). The same body goes to both through an
unmodified boto3 ``sagemaker-runtime`` client, taking turns, so load from other processes hits
both alike. Then throughput with two clients: two components of one endpoint against two
endpoints (each model serves one request at a time in both).

    .venv/bin/python -m bench.shared_layout --repeats 40
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for _var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
    os.environ.setdefault(_var, "bench")  # signing needs some credentials; nothing leaves the machine

from bench.handler_overhead import QUERIES, alternate, synthetic_photo  # noqa: E402
from bench.server_overhead import batch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40, help="timed requests of each layout (median)")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=384)
    args = parser.parse_args()

    from tryon.core import imaging
    from tryon.server import EndpointConfig, LocalEndpointServer, runtime_client
    from tryon.weights.tiny import ensure_tiny_models

    model_dir = str(ensure_tiny_models(REPO_ROOT / ".cache" / "tiny-models")["clipseg"])
    photo = synthetic_photo(args.width, args.height)
    body = json.dumps({"image": imaging.b64encode(imaging.encode_jpeg(photo)), "queries": QUERIES}).encode()
    configs = [
        EndpointConfig("alone-a", "clipseg", model_dir),
        EndpointConfig("alone-b", "clipseg", model_dir),
        EndpointConfig("shared", "clipseg", model_dir, component="shared-a"),
        EndpointConfig("shared", "clipseg", model_dir, component="shared-b"),
    ]
    with LocalEndpointServer(configs) as server:
        runtime = runtime_client(server.url, read_timeout=120)

        def call(endpoint: str, component: str | None = None) -> None:
            extra = {"InferenceComponentName": component} if component else {}
            response = runtime.invoke_endpoint(
                EndpointName=endpoint, Body=body, ContentType="application/json", **extra
            )
            response["Body"].read()

        samples = alternate(
            args.repeats, separate=lambda: call("alone-a"), shared=lambda: call("shared", "shared-a")
        )
        calls = 8
        batches = alternate(
            max(3, args.repeats // 8),
            separate_two_endpoints=batch(calls, 2, lambda i: call(f"alone-{'ab'[i % 2]}")),
            shared_two_components=batch(calls, 2, lambda i: call("shared", f"shared-{'ab'[i % 2]}")),
        )
    med = {name: statistics.median(times) for name, times in samples.items()}
    throughput = {name: calls / statistics.median(times) for name, times in batches.items()}
    rows = [
        ("machine", f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"),
        ("request", f"tiny CLIPSeg, {args.width}x{args.height} JPEG, {len(body) / 1e3:.0f} kB, 4 queries"),
        ("separate: boto3 invoke_endpoint (baseline)", f"{med['separate'] * 1000:.2f} ms"),
        (
            "shared: + InferenceComponentName",
            f"{med['shared'] * 1000:.2f} ms ({med['shared'] / med['separate']:.3f}x, "
            f"{(med['shared'] - med['separate']) * 1000:+.2f} ms)",
        ),
        ("throughput, 2 clients, 2 endpoints", f"{throughput['separate_two_endpoints']:.1f} req/s"),
        (
            "throughput, 2 clients, 2 components of 1 endpoint",
            f"{throughput['shared_two_components']:.1f} req/s "
            f"({throughput['shared_two_components'] / throughput['separate_two_endpoints']:.2f}x)",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
