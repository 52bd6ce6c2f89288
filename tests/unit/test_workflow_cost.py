"""What a try-on costs: steps record their endpoints' compute seconds, the manifest adds the instance types.

The end-to-end check (a real execution's manifest) is in test_workflow_e2e.py; these check the
parts: the step sum, the manifest's ``cost`` block, the settings and the template's wiring.
"""

from __future__ import annotations

from tryon.core.contract import COMPUTE_SECONDS
from tryon.local.template import SamTemplate
from tryon.workflow import report, steps
from tryon.workflow.settings import INSTANCE_TYPE_VARIABLES, Settings


def test_a_step_sums_its_calls_compute_seconds():
    assert steps.compute_seconds([{COMPUTE_SECONDS: 1.25}, {COMPUTE_SECONDS: 0.5}]) == 1.75
    assert steps.compute_seconds([{"timings_ms": {}}]) == 0.0  # an endpoint that does not report it
    assert steps.compute_seconds([]) == 0.0


def _state(**parts):
    job = {"modes": {"clipseg": "serverless", "sd_inpaint": "async", "sd_upscale": "realtime"}}
    return {"job": job, **parts}


def test_manifest_cost_has_each_step_that_ran():
    state = _state(segment={"compute_seconds": 1.3}, inpaint={"compute_seconds": 3.2})
    types = {"clipseg": "ml.m5.xlarge", "sd_inpaint": "ml.g5.xlarge", "sd_upscale": "ml.g5.xlarge"}
    assert report.cost(state, types) == {
        "compute_seconds": 4.5,
        "steps": {
            "segment": {
                "endpoint": "clipseg",
                "compute_seconds": 1.3,
                "mode": "serverless",
                "instance_type": "ml.m5.xlarge",
            },
            "inpaint": {
                "endpoint": "sd_inpaint",
                "compute_seconds": 3.2,
                "mode": "async",
                "instance_type": "ml.g5.xlarge",
            },
        },
        "moderation_calls": 0,
    }
    # one DetectModerationLabels call per image checked (priced per image: docs/cost.md)
    assert report.cost(_state(moderation={"calls": 3}), types)["moderation_calls"] == 3
    # no instance types configured (an older Finalize environment): named as unknown, not guessed
    assert report.cost(state, {})["steps"]["inpaint"]["instance_type"] is None


def test_settings_read_the_instance_types():
    env = {var: f"ml.test.{kind}" for kind, var in INSTANCE_TYPE_VARIABLES.items()}
    settings = Settings.from_env({**env, "TRYON_MAX_INPUT_BYTES": "1", "TRYON_MAX_INPUT_PIXELS": "1"})
    assert dict(settings.instance_types) == {kind: f"ml.test.{kind}" for kind in INSTANCE_TYPE_VARIABLES}


def test_the_template_tells_finalize_the_configured_instance_types(repo_root):
    t = SamTemplate(repo_root / "template.yaml", {"InpaintInstanceType": "ml.g6.2xlarge"})
    env = t.function_environment("FinalizeFunction")
    assert env["TRYON_INPAINT_INSTANCE_TYPE"] == "ml.g6.2xlarge"
    assert env["TRYON_CLIPSEG_INSTANCE_TYPE"] == t.parameters["ClipSegInstanceType"] == "ml.m5.xlarge"
    assert env["TRYON_UPSCALE_INSTANCE_TYPE"] == t.parameters["UpscaleInstanceType"]


def test_manifest_cost_names_the_component_a_step_was_served_by():
    state = _state(inpaint={"compute_seconds": 3.2})
    state["job"]["components"] = {
        "clipseg": None,
        "sd_inpaint": "tryon-shared-sd-inpaint",
        "sd_upscale": None,
    }
    steps = report.cost(state, {"sd_inpaint": "ml.g5.12xlarge"})["steps"]
    assert steps["inpaint"]["component"] == "tryon-shared-sd-inpaint"
    assert steps["inpaint"]["instance_type"] == "ml.g5.12xlarge"
    assert "component" not in report.cost(_state(inpaint={"compute_seconds": 1.0}), {})["steps"]["inpaint"]
