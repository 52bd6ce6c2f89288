"""The whole workflow in the shared layout: the real-time models as inference components of one
endpoint on the local server, called by component name; the same results as the separate layout
for the same seeds; a component scaled to zero answers "no capacity", which the state machine
retries until a copy starts, and which becomes a failure record saying so when none comes."""

from __future__ import annotations

import time
from unittest import mock

import pytest
from support.workflow import DEADLINE_S, all_models, failure_of, upload

from tryon.local import LocalWorkflow
from tryon.server.registry import NO_CAPACITY_MESSAGE
from tryon.workflow import endpoints
from tryon.workflow.step_errors import no_capacity_wait_seconds

pytestmark = pytest.mark.slow

FAST = {"DefaultSteps": 1, "DefaultUpscaleSteps": 1, "DefaultNumImages": 2}
JOB = {"seed": 1234, "prompt": "a red skirt", "upscale": True}
#: moto runs the ASL's Retry with real sleeps: the no-capacity waits (16 minutes) run 100x faster here
TIME_SCALE = 100.0


@pytest.fixture
def fast_retries():
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    real_sleep = time.sleep

    class ScaledTime:
        def __getattr__(self, name):
            return getattr(time, name)

        @staticmethod
        def sleep(seconds):
            real_sleep(seconds / TIME_SCALE)

    with mock.patch.object(retrier_decl, "time", ScaledTime()):
        yield


def _start(wf: LocalWorkflow, name: str, **job) -> str:
    key = upload(wf, name)
    return wf.start(
        {"image": f"s3://{wf.input_bucket}/{key}", **JOB, **job},
        name=f"{name.split('.')[0]}-{time.time_ns()}",
    )


def _images(wf: LocalWorkflow, result) -> list[bytes]:
    manifest = wf.read_json(result.output["manifest"])
    return [
        wf.read_bytes(uri)
        for uri in manifest["outputs"]["inpainted"] + manifest["outputs"].get("upscaled", [])
    ], manifest


def test_the_shared_layout_gives_the_separate_layouts_results(tiny_models):
    outputs = {}
    for layout in ("separate", "shared"):
        with LocalWorkflow(all_models(tiny_models), parameters=FAST, layout=layout) as wf:
            result = wf.wait(_start(wf, "same.png"), timeout=DEADLINE_S)
            assert result.succeeded, (result.error, result.cause)
            images, manifest = _images(wf, result)
            outputs[layout] = (images, manifest)
            if layout == "shared":
                assert set(wf.components) == {"clipseg", "sd_inpaint", "sd_upscale"}
                assert set(manifest["endpoints"].values()) == {"tryon-shared"}
                assert manifest["components"] == {
                    "clipseg": "tryon-shared-clipseg",
                    "sd_inpaint": "tryon-shared-sd-inpaint",
                    "sd_upscale": "tryon-shared-sd-upscale",
                }
            else:
                assert manifest["components"] == {"clipseg": None, "sd_inpaint": None, "sd_upscale": None}
    (separate, m1), (shared, m2) = outputs["separate"], outputs["shared"]
    assert m1["seeds"] == m2["seeds"] and len(separate) == 4
    assert separate == shared  # byte for byte: the same models, seeds and encoder


@pytest.fixture(scope="module")
def shared_wf(tiny_models):
    with LocalWorkflow(all_models(tiny_models), parameters=FAST, layout="shared", upscale=False) as wf:
        yield wf


def test_no_capacity_is_retried_until_a_copy_starts(shared_wf, fast_retries):
    wf = shared_wf
    served = wf._server.registry.endpoints["tryon-shared-sd-inpaint"]
    # a copy starts 1.8 s after the first refusal: 3 minutes at AWS's pace, as the retries run here
    wf.scale_component("sd_inpaint", 0, scale_from_zero_seconds=1.8)
    try:
        events = []
        result = wf.wait(_start(wf, "cold.png"), timeout=DEADLINE_S, on_event=events.append)
    finally:
        wf.scale_component("sd_inpaint", 1)
    assert result.succeeded, (result.error, result.cause)
    retried = [e for e in events if e.phase == "error"]
    assert retried and {e.error for e in retried} == {"EndpointNoCapacity"}
    assert NO_CAPACITY_MESSAGE in retried[0].cause
    assert result.states().count("Inpaint") == 1  # retries re-run the Task inside the same state
    assert served.no_capacity_failures >= 1


def test_no_capacity_that_never_ends_is_a_clear_failure_record(shared_wf, fast_retries):
    wf = shared_wf
    wf.scale_component("sd_inpaint", 0)
    try:
        result = wf.wait(
            _start(wf, "never.png"), timeout=DEADLINE_S + no_capacity_wait_seconds() / TIME_SCALE
        )
    finally:
        wf.scale_component("sd_inpaint", 1)
    record = failure_of(wf, result)
    assert record["error"] == "EndpointNoCapacity" and record["step"] == "inpaint"
    cause = record["cause"]
    assert "tryon-shared (component tryon-shared-sd-inpaint) has no copy running" in cause
    assert "retries for about 16 minutes" in cause and "none came in that time" in cause
    assert "NoCapacityInvocationFailures alarm" in cause


def test_the_runtime_and_the_workflow_agree_on_the_no_capacity_message():
    assert endpoints.NO_CAPACITY in NO_CAPACITY_MESSAGE
