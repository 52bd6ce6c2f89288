"""The shared Lambda layer holds what the functions import, and no boto3/botocore of its own."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
from importlib.metadata import distribution, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from support.paths import REPO

from tryon.local.template import load_template

SRC = REPO / "src"
FUNCTIONS = sorted(p.parent.name for p in (REPO / "functions").glob("*/app.py"))
#: What the Lambda python3.12 runtime provides (boto3 and its dependencies).
RUNTIME = {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "urllib3", "six"}

# Runs with -S: no site-packages processing, so the editable `tryon` install is invisible and
# `tryon` can only come from the layer; third-party packages come from the venv, after it.
PROBE = """
import importlib.util, json, sys
function_dir, layer, site = sys.argv[1:4]
sys.path[:0] = [function_dir, layer]
sys.path.append(site)
spec = importlib.util.spec_from_file_location("app", function_dir + "/app.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
assert callable(module.handler)
files = {m: getattr(sys.modules[m], "__file__", None) for m in sorted(sys.modules)}
print(json.dumps({m: f for m, f in files.items() if m.startswith("tryon")}))
"""


def _requirements() -> list[Requirement]:
    lines = (SRC / "requirements.txt").read_text().splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def layer(tmp_path_factory) -> Path:
    """The layer's code, built by the same Makefile target `sam build` runs (without the pip step)."""
    out = tmp_path_factory.mktemp("layer")
    subprocess.run(
        ["make", "-s", "-C", str(SRC), "layer-code", f"ARTIFACTS_DIR={out}"], check=True, timeout=60
    )
    return out / "python"


def test_template_builds_the_layer_with_the_makefile():
    layer = load_template(REPO / "template.yaml")["Resources"]["WorkflowLayer"]
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert layer["Properties"]["ContentUri"].strip("/") == "src"
    assert "build-WorkflowLayer:" in (SRC / "Makefile").read_text()


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_function_runs_from_the_layer_alone(name, layer):
    env = {"POWERTOOLS_TRACE_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1", "PATH": ""}
    site = sysconfig.get_paths()["purelib"]
    out = subprocess.run(
        [sys.executable, "-S", "-c", PROBE, str(REPO / "functions" / name), str(layer), site],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, f"functions/{name} fails with only the layer's tryon modules:\n{out.stderr}"
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    outside = {m: f for m, f in loaded.items() if f and not f.startswith(str(layer))}
    assert loaded and not outside, f"tryon modules loaded from outside the layer: {outside}"


def test_layer_ships_only_light_modules(layer):
    shipped = sorted(str(p.relative_to(layer)) for p in layer.rglob("*.py"))
    assert "tryon/workflow/steps.py" in shipped and "tryon/core/errors.py" in shipped
    heavy = [p for p in shipped if re.match(r"tryon/(cli|local|handlers|training|server|aws|weights)", p)]
    assert heavy == []


def test_requirements_ship_no_boto_and_close_over_their_dependencies():
    requirements = _requirements()
    names = {canonicalize_name(r.name) for r in requirements}
    assert not names & {"boto3", "botocore", "s3transfer"}
    for req in requirements:
        assert len(req.specifier) == 1 and str(req.specifier).startswith("=="), f"pin {req}"
        # Pinned to what the tests run with, so the layer is the code that was tested.
        assert version(req.name) == str(req.specifier)[2:], req.name
    for req in requirements:
        for dep in distribution(req.name).requires or []:
            dep_req = Requirement(dep)
            if dep_req.marker and not dep_req.marker.evaluate({"extra": ""}):
                continue  # an extra the layer does not use
            dep_name = canonicalize_name(dep_req.name)
            assert dep_name in names | RUNTIME, (
                f"{req.name} needs {dep_name}, neither shipped nor in the runtime"
            )
    # The tracer extra is what the functions use: its packages must be there.
    for dep in distribution("aws-lambda-powertools").requires or []:
        dep_req = Requirement(dep)
        if (
            dep_req.marker
            and dep_req.marker.evaluate({"extra": "tracer"})
            and not dep_req.marker.evaluate({"extra": ""})
        ):
            assert canonicalize_name(dep_req.name) in names, dep_req.name
