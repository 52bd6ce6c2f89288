"""Cold start of each Lambda handler: import time in a fresh interpreter and the unzipped size.

A handler importing only boto3 is timed too, as the floor every handler shares.

Baseline, measured in the same run: a handler that calls the endpoint through the sagemaker
SDK (``from sagemaker.core.resources import Endpoint``) instead of boto3.

- import time: median of ``--runs`` fresh interpreters, timing only the handler module's
  import (what a cold start adds on top of the runtime's own start-up);
- size: the function's code + the layers template.yaml gives it, as ``sam build`` packs them
  (each layer's ContentUri plus its requirements.txt pip-installed for python3.12 manylinux
  x86_64 into a cache folder), minus boto3 and its dependencies, which the runtime provides.
  The baseline's size is
  its installed dependency closure in this venv (installing the SDK for Lambda is ~1 GB),
  with the same exclusions.

Run: ``.venv/bin/python -m bench.lambda_cold_start [--runs 7]``
Goal: each handler under 300 ms and 10 MB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import statistics
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

from tryon.local.template import load_template

REPO = Path(__file__).resolve().parent.parent
#: boto3 and what it brings along; the python3.12 Lambda runtime ships all of these.
RUNTIME_PROVIDED = {
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "python-dateutil",
    "dateutil",
    "urllib3",
    "six",
}
GOAL_MS, GOAL_MB = 300.0, 10.0
BASELINE_HANDLER = """
import json
from sagemaker.core.resources import Endpoint


def handler(event, context):
    endpoint = Endpoint.get(event["endpoint"])
    response = endpoint.invoke(body=json.dumps(event["payload"]), content_type="application/json")
    return json.loads(response.body.read())
"""
FLOOR_HANDLER = """
import boto3


def handler(event, context):
    return boto3.client("sagemaker-runtime").invoke_endpoint(**event)["Body"].read()
"""
PROBE = """
import importlib.util, sys, time
sys.path.insert(0, sys.argv[2])
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
assert callable(module.handler)
print((time.perf_counter() - start) * 1000.0)
"""


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def import_ms(app: Path, runs: int, extra_path: Path) -> float:
    """Median milliseconds to import ``app`` in a fresh interpreter."""
    env = {"AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true", "PATH": "/usr/bin:/bin"}
    times = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", PROBE, str(app), str(extra_path)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            timeout=300,
        )
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def deps_dir(requirements: Path) -> Path:
    """A requirements file installed for Lambda (python3.12, manylinux x86_64), cached by content."""
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]
    target = REPO / ".cache" / "bench-lambda" / f"deps-{digest}"
    if not (target / ".complete").exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--target", str(target), "-r", str(requirements),
             "--platform", "manylinux2014_x86_64", "--python-version", "3.12", "--only-binary=:all:",
             "--implementation", "cp", "--upgrade"],
            check=True,
        )  # fmt: skip
        (target / ".complete").touch()
    return target


def layer_sizes() -> dict[str, dict[str, int]]:
    """Layer logical id -> {part: bytes}: its ContentUri plus its requirements, as sam build packs them."""
    resources = load_template(REPO / "template.yaml")["Resources"]
    sizes: dict[str, dict[str, int]] = {}
    for logical, res in resources.items():
        if res["Type"] != "AWS::Serverless::LayerVersion":
            continue
        content = REPO / res["Properties"]["ContentUri"]
        parts = {f"{content.relative_to(REPO)}/ (code)": source_bytes(content)}
        for child in deps_dir(content / "requirements.txt").iterdir():
            top = _norm(child.name.split("-")[0].removesuffix(".libs"))
            if top in RUNTIME_PROVIDED or child.name.startswith(".") or child.name == "__pycache__":
                continue
            size = child.stat().st_size if child.is_file() else source_bytes(child)
            label = {"pil": "pillow"}.get(top, top)
            parts[label] = parts.get(label, 0) + size
        sizes[logical] = parts
    return sizes


def function_layers() -> dict[str, list[str]]:
    """Function folder name -> layer logical ids (Globals first, then its own, as SAM merges them)."""
    doc = load_template(REPO / "template.yaml")
    shared = [layer["Ref"] for layer in doc.get("Globals", {}).get("Function", {}).get("Layers", [])]
    return {
        Path(res["Properties"]["CodeUri"]).name: shared
        + [layer["Ref"] for layer in res["Properties"].get("Layers", [])]
        for res in doc["Resources"].values()
        if res["Type"] == "AWS::Serverless::Function"
    }


def source_bytes(path: Path) -> int:
    """Bytes of the files ``sam build`` copies from a code folder (no caches)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and "__pycache__" not in f.parts)


def installed_closure_bytes(root: str) -> tuple[int, int]:
    """(bytes, distributions) of an installed distribution and its requirements, runtime ones excluded."""
    env = default_environment()
    seen: set[str] = set()
    todo = [root]
    total = 0
    while todo:
        name = _norm(todo.pop())
        if name in seen or name in RUNTIME_PROVIDED:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for file in dist.files or []:
            located = Path(str(dist.locate_file(file)))
            if located.is_file() and "__pycache__" not in located.parts:
                total += located.stat().st_size
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({**env, "extra": ""}):
                todo.append(req.name)
    return total, len(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    layers = layer_sizes()
    uses = function_layers()
    src = REPO / "src"
    with tempfile.TemporaryDirectory() as tmp:
        baseline_app = Path(tmp) / "app.py"
        baseline_app.write_text(BASELINE_HANDLER)
        baseline_ms = import_ms(baseline_app, args.runs, src)
        floor_app = Path(tmp) / "floor.py"
        floor_app.write_text(FLOOR_HANDLER)
        floor_ms = import_ms(floor_app, args.runs, src)
    baseline_bytes = installed_closure_bytes("sagemaker")[0] + len(BASELINE_HANDLER)

    rows = []
    for app in sorted((REPO / "functions").glob("*/app.py")):
        name = app.parent.name
        ms = import_ms(app, args.runs, src)
        size = source_bytes(app.parent) + sum(sum(layers[layer].values()) for layer in uses[name])
        rows.append(
            {
                "function": name,
                "layers": uses[name],
                "import_ms": round(ms, 1),
                "size_mb": round(size / 1e6, 2),
                "import_vs_baseline": round(ms / baseline_ms, 3),
                "size_vs_baseline": round(size / baseline_bytes, 4),
                "meets_goal": ms < GOAL_MS and size / 1e6 < GOAL_MB,
            }
        )
    print(
        f"baseline (sagemaker SDK handler): import {baseline_ms:.1f} ms, size {baseline_bytes / 1e6:.1f} MB"
    )
    print(f"floor (a handler importing only boto3): import {floor_ms:.1f} ms")
    for layer, parts in layers.items():
        print(f"{layer}: {sum(parts.values()) / 1e6:.2f} MB (python3.12 manylinux, boto3 & co. excluded)")
        for label, size in sorted(parts.items(), key=lambda kv: -kv[1]):
            if size >= 50_000:
                print(f"  {label:<40}{size / 1e6:>7.2f} MB")
    print(
        f"{'function':<16}{'import ms':>10}{'size MB':>9}{'import/base':>13}{'size/base':>11}  goal    layers"
    )
    for r in rows:
        print(
            f"{r['function']:<16}{r['import_ms']:>10.1f}{r['size_mb']:>9.2f}{r['import_vs_baseline']:>13.3f}"
            f"{r['size_vs_baseline']:>11.4f}  {'ok    ' if r['meets_goal'] else 'MISSED'}"
            f"  {'+'.join(r['layers'])}"
        )
    summary = {
        "baseline_ms": round(baseline_ms, 1),
        "boto3_floor_ms": round(floor_ms, 1),
        "baseline_mb": round(baseline_bytes / 1e6, 1),
        "functions": rows,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
