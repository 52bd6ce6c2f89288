"""Local endpoint server overhead: the same CLIPSeg request in-process vs over HTTP, in one run.

Baseline: ``input_fn -> predict_fn -> output_fn`` called in-process on the JSON body. Against
it: the same body through ``LocalEndpointServer`` with httpx on ``POST /invocations``, and with
an unmodified boto3 ``sagemaker-runtime`` client (SigV4 signing, botocore parsing). The three
take turns, so load from other processes hits all alike. Then throughput: N client threads on
one endpoint (serialised by its lock) and on N endpoints (run concurrently) against one
client calling one endpoint sequentially.

    .venv/bin/python -m bench.server_overhead --repeats 20 --clients 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for _var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
    os.environ.setdefault(_var, "bench")  # signing needs some credentials; nothing leaves the machine

from bench.handler_overhead import QUERIES, alternate, synthetic_photo  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent


def batch(calls: int, clients: int, call) -> Callable[[], None]:
    """A function sending ``calls`` requests (``call(i)``) from ``clients`` threads."""

    def run() -> None:
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(call, range(calls)))

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed runs of each variant (median)")
    parser.add_argument("--clients", type=int, default=2, help="concurrent clients / endpoints")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=384)
    args = parser.parse_args()

    import httpx

    from tryon.core import imaging
    from tryon.handlers import clipseg
    from tryon.server import EndpointConfig, LocalEndpointServer, runtime_client
    from tryon.weights.tiny import ensure_tiny_models

    model_dir = str(ensure_tiny_models(REPO_ROOT / ".cache" / "tiny-models")["clipseg"])
    photo = synthetic_photo(args.width, args.height)
    body = json.dumps({"image": imaging.b64encode(imaging.encode_jpeg(photo)), "queries": QUERIES}).encode()
    model = clipseg.model_fn(model_dir)
    names = [f"clipseg-{i}" for i in range(args.clients)]
    endpoints = [EndpointConfig(name, "clipseg", model_dir) for name in names]

    with LocalEndpointServer(endpoints) as server, httpx.Client(base_url=server.url, timeout=120) as http:
        runtime = runtime_client(server.url, read_timeout=120)

        def in_process() -> None:
            clipseg.output_fn(clipseg.predict_fn(clipseg.input_fn(body, "application/json"), model), None)

        def via_httpx() -> None:
            response = http.post("/invocations", content=body, headers={"content-type": "application/json"})
            response.raise_for_status()

        def via_boto3(name: str = names[0]) -> None:
            response = runtime.invoke_endpoint(EndpointName=name, Body=body, ContentType="application/json")
            response["Body"].read()

        samples = alternate(args.repeats, in_process=in_process, httpx=via_httpx, boto3=via_boto3)
        medians = {name: statistics.median(times) for name, times in samples.items()}
        # throughput: batches of the three kinds take turns; req/s from the median batch time
        calls = 4 * args.clients
        batches = alternate(
            max(3, args.repeats // 4),
            sequential=batch(calls, 1, lambda _: via_boto3()),
            one_endpoint=batch(calls, args.clients, lambda _: via_boto3()),
            spread=batch(calls, args.clients, lambda i: via_boto3(names[i % len(names)])),
        )
        sequential, one_endpoint, spread = (calls / statistics.median(times) for times in batches.values())

    base = medians["in_process"]

    def vs_base(seconds: float) -> str:
        return f"{seconds * 1000:.1f} ms ({seconds / base:.2f}x)"

    rows = [
        ("machine", f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"),
        ("request", f"tiny CLIPSeg, {args.width}x{args.height} JPEG, {len(body) / 1e3:.0f} kB, 4 queries"),
        ("in-process handler path (baseline)", f"{base * 1000:.1f} ms"),
        ("server, httpx POST /invocations", vs_base(medians["httpx"])),
        ("server, boto3 invoke_endpoint", vs_base(medians["boto3"])),
        ("added per request (boto3 - baseline)", f"{(medians['boto3'] - base) * 1000:.1f} ms"),
        ("throughput, 1 client, 1 endpoint", f"{sequential:.1f} req/s"),
        (
            f"throughput, {args.clients} clients, 1 endpoint (lock)",
            f"{one_endpoint:.1f} req/s ({one_endpoint / sequential:.2f}x)",
        ),
        (
            f"throughput, {args.clients} clients, {args.clients} endpoints",
            f"{spread:.1f} req/s ({spread / sequential:.2f}x)",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
