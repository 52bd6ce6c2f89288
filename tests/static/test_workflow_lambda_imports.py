"""The Lambda functions stay light: no torch, transformers, diffusers, numpy or sagemaker SDK."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.paths import REPO

from tryon.local.template import load_template

FUNCTIONS = sorted(p.parent.name for p in (REPO / "functions").glob("*/app.py"))
HEAVY = (
    "torch",
    "transformers",
    "diffusers",
    "peft",
    "accelerate",
    "numpy",
    "scipy",
    "sagemaker",
    "tryon.handlers",
    "tryon.server",
    "tryon.local",
    "moto",
)

PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
assert callable(module.handler)
print(json.dumps(sorted(sys.modules)))
"""


def test_every_step_has_a_function():
    """Every folder under functions/ is a function of the template; only the ones that decode
    images get the Pillow layer."""
    decode_images = ["batch_summarize", "batch_validate", "finalize", "masks", "moderate", "prepare"]
    light = ["complete_async", "inpaint", "record_failure", "segment", "submit_async", "upscale"]
    assert sorted(decode_images + light) == FUNCTIONS
    assert not [n for n in light if uses_imaging_layer(n)]
    assert all(uses_imaging_layer(n) for n in decode_images)


def uses_imaging_layer(name: str) -> bool:
    """Whether the template gives the function the Pillow layer."""
    for res in load_template(REPO / "template.yaml")["Resources"].values():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::Serverless::Function" and props["CodeUri"].strip("/") == f"functions/{name}":
            return {"Ref": "ImagingLayer"} in props.get("Layers", [])
    raise AssertionError(f"functions/{name} is not in template.yaml")


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_imports_only_light_modules(name):
    env = {"POWERTOOLS_TRACE_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1", "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPO / "functions" / name / "app.py")],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    heavy = sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert heavy == [], f"functions/{name}/app.py pulls in {heavy}"
    # Functions without the imaging layer must not need Pillow (it would not be there).
    assert uses_imaging_layer(name) == ("PIL" in loaded), f"functions/{name}: Pillow use and layers disagree"
    assert any(
        m in loaded
        for m in (
            "tryon.workflow.steps",
            "tryon.workflow.prepare",
            "tryon.workflow.finalize",
            "tryon.workflow.moderate",
            "tryon.workflow.mask_compose",
        )
    )
