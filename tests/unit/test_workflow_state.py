"""The ASL and the typed state document (tryon.workflow.state) describe the same JSON."""

from __future__ import annotations

import json
from typing import get_type_hints

import pytest
from support.paths import TEMPLATE, TRYON_ASL

from tryon.workflow import state
from tryon.workflow.outfit import MAX_GARMENTS

ASL = json.loads(TRYON_ASL.read_text())
STATES = ASL["States"]

#: Task state -> the TypedDict its Parameters build (the step's input).
TASK_INPUTS = {
    "Segment": state.SegmentInput,
    "Masks": state.MasksInput,
    "Inpaint": state.InpaintInput,
    "Upscale": state.UpscaleInput,
    "Finalize": state.Envelope,
    "RecordFailure": state.Envelope,
    "SegmentAsync": state.AsyncSubmitInput,
    "InpaintAsync": state.AsyncSubmitInput,
    "UpscaleAsync": state.AsyncSubmitInput,
    "ModerateInputs": state.ModerateInput,
    "ModerateResults": state.ModerateResultsInput,
}


def _parameter_names(task: dict) -> set[str]:
    params = task.get("Parameters", {})
    params = params.get("Payload", params)  # lambda:invoke integrations wrap the input
    return {name.removesuffix(".$") for name in params}


@pytest.mark.parametrize("name", sorted(TASK_INPUTS))
def test_task_parameters_are_the_typed_input(name: str) -> None:
    names = _parameter_names(STATES[name])
    typed = TASK_INPUTS[name]
    if typed is state.AsyncSubmitInput:  # the step's own input plus the step name and the token
        step = STATES[name.removesuffix("Async")]
        assert names == _parameter_names(step) | {"step", "task_token"}
        assert names <= set(get_type_hints(typed))
    else:
        assert names == set(get_type_hints(typed))


@pytest.mark.parametrize("title", ["Segment", "Inpaint", "Upscale"])
def test_each_endpoint_step_has_one_path_per_mode(title: str) -> None:
    choice, sync, asynchronous = STATES[f"{title}Mode"], STATES[title], STATES[f"{title}Async"]
    [rule] = choice["Choices"]
    assert rule["Variable"].startswith("$.job.modes.") and rule["StringEquals"] == "async"
    assert (rule["Next"], choice["Default"]) == (f"{title}Async", title)
    assert asynchronous["Resource"] == "arn:${Partition}:states:::lambda:invoke.waitForTaskToken"
    for key in ("ResultPath", "Catch", "Next"):
        assert asynchronous[key] == sync[key], key
    # the same retries, but the wait for an inference component's copy: components are real-time only
    no_capacity = [r for r in sync["Retry"] if r["ErrorEquals"] == ["EndpointNoCapacity"]]
    assert len(no_capacity) == 1
    assert asynchronous["Retry"] == [r for r in sync["Retry"] if r not in no_capacity]
    step = asynchronous["Parameters"]["Payload"]["step"]
    assert asynchronous["TimeoutSecondsPath"] == f"$.job.async_waits.{step}.timeout_seconds"
    assert asynchronous["HeartbeatSecondsPath"] == f"$.job.async_waits.{step}.heartbeat_seconds"
    # nothing enters the step but through its mode Choice
    entries = [n for n, s in STATES.items() if title in (s.get("Next"), s.get("Default"))]
    entries += [n for n, s in STATES.items() for c in s.get("Choices", []) if c.get("Next") == title]
    assert entries == [f"{title}Mode"]


def test_the_longest_async_job_ends_before_the_execution_time_out() -> None:
    """Every wait ends in a failure record: the task time-outs, summed, stay under the execution's."""
    from tryon.local.template import SamTemplate
    from tryon.workflow.async_calls import waits
    from tryon.workflow.settings import Settings

    t = SamTemplate(TEMPLATE)
    params = t.doc["Parameters"]
    most = Settings.from_env(
        {
            "TRYON_ASYNC_INVOCATION_SECONDS": str(params["AsyncInvocationTimeoutSeconds"]["MaxValue"]),
            "TRYON_ASYNC_GRACE_SECONDS": str(params["AsyncGraceSeconds"]["MaxValue"]),
            "TRYON_MAX_INPUT_BYTES": "1",
            "TRYON_MAX_INPUT_PIXELS": "1",
        }
    )
    # the longest job: num_images 4, an outfit of MAX_GARMENTS garments (a CLIPSeg request and a pass each)
    n = MAX_GARMENTS
    async_waits = waits(most, 4, segment_requests=n, passes=n)
    async_total = sum(
        w["timeout_seconds"] * (n if step == "inpaint" else 1) for step, w in async_waits.items()
    )
    others = sum(s.get("TimeoutSeconds", 0) * (n if name == "Inpaint" else 1) for name, s in STATES.items())
    assert async_total + others < ASL["TimeoutSeconds"]


def test_every_result_path_is_a_key_of_the_state() -> None:
    keys = set(get_type_hints(state.State))
    paths = {s["ResultPath"] for s in STATES.values() if "ResultPath" in s}
    for catch in (c for s in STATES.values() for c in s.get("Catch", [])):
        paths.add(catch["ResultPath"])
    assert paths, "the ASL stores results under named keys"
    for path in paths:
        assert path.startswith("$.") and path[2:] in keys, path


def test_receive_wraps_the_input_as_the_trigger() -> None:
    assert set(STATES[ASL["StartAt"]]["Parameters"]) == {"trigger.$"}
    assert "trigger" in get_type_hints(state.State)


def test_step_result_keys_name_state_keys_in_workflow_order() -> None:
    keys = get_type_hints(state.State)
    assert list(state.STEP_RESULT_KEYS) == ["prepare", "segment", "masks", "inpaint", "upscale"]
    for key in state.STEP_RESULT_KEYS.values():
        assert key in keys
    assert get_type_hints(state.State)["segment"] == state.SegmentResult | state.SegmentStart


def test_failed_step_uses_the_result_keys() -> None:
    from tryon.workflow.steps import failed_step

    job = {"upscale": True, "needs_segment": True, "compose_masks": False}
    checked = {"enabled": True, "inputs": [], "results": None}  # what ModerateInputs leaves
    assert failed_step({"trigger": {}}) == "prepare"
    assert failed_step({"job": job}) == "moderate-inputs"
    assert failed_step({"job": job, "moderation": checked}) == "segment"
    m = {"moderation": checked}
    assert (
        failed_step({"job": job, **m, "segment": {"composed": False}}) == "segment"
    )  # Prepare's placeholder
    assert failed_step({"job": job, **m, "segment": {"empty": False, "garments": []}}) == "inpaint"
    passes = {"keys": ["a"], "passes": [{}], "done": False}
    found = {"empty": False, "garments": [], "composed": False}
    assert failed_step({"job": job, **m, "segment": found, "inpaint": passes}) == "inpaint"
    done = {**passes, "done": True}
    ran = {"job": job, **m, "segment": found, "inpaint": done}
    assert failed_step(ran) == "upscale"
    upscaled = ran | {"upscale": {"keys": ["b"]}}
    assert failed_step(upscaled) == "moderate-results"
    assert failed_step(upscaled | {"moderation": checked | {"results": []}}) == "finalize"
    off = {"enabled": False, "inputs": None, "results": None}
    assert failed_step(upscaled | {"moderation": off}) == "finalize"
    assert failed_step({"job": job, **m, "segment": {**found, "empty": True}}) == "finalize"
    # a composed job: the Masks state's answer replaces CLIPSeg's (composed); no CLIPSeg call at all
    composed = {**job, "compose_masks": True}
    assert failed_step({"job": composed, **m, "segment": found}) == "masks"
    assert (
        failed_step({"job": {**composed, "needs_segment": False}, **m, "segment": {"composed": False}})
        == "masks"
    )
    assert failed_step({"job": composed, **m, "segment": {**found, "composed": True}}) == "inpaint"


def test_the_passes_loop_back_through_the_inpaint_mode_choice() -> None:
    """An outfit's passes: Prepare seeds $.inpaint (no pass yet); UpscaleRequested loops back to
    InpaintMode until Inpaint says done. A lone job takes the same states as before outfits."""
    assert set(get_type_hints(state.Prepared)["inpaint"].__annotations__) == set(
        get_type_hints(state.PassesStart)
    )
    assert STATES["Inpaint"]["Next"] == STATES["InpaintAsync"]["Next"] == "UpscaleRequested"
    again = STATES["UpscaleRequested"]["Choices"][0]
    assert again == {"Variable": "$.inpaint.done", "BooleanEquals": False, "Next": "InpaintMode"}
    assert STATES["MaskFound"]["Default"] == "InpaintMode"


def test_segment_is_skipped_and_masks_composed_only_when_the_job_says_so() -> None:
    # after the inputs' moderation: a job no garment of which asks CLIPSeg goes straight to its masks
    assert STATES["ModerateInputs"]["Next"] == "SegmentRequested"
    [skip] = STATES["SegmentRequested"]["Choices"]
    assert skip == {"Variable": "$.job.needs_segment", "BooleanEquals": False, "Next": "MaskFound"}
    assert STATES["SegmentRequested"]["Default"] == "SegmentMode"
    assert (
        STATES["Segment"]["Next"] == STATES["SegmentAsync"]["Next"] == STATES["Masks"]["Next"] == "MaskFound"
    )
    compose, empty = STATES["MaskFound"]["Choices"]
    assert compose["Next"] == "Masks" and empty["Next"] == "NoGarmentFound"
    # compose first (once: the Masks answer is composed): $.segment.empty is read only once it exists
    assert compose["And"] == [
        {"Variable": "$.job.compose_masks", "BooleanEquals": True},
        {"Variable": "$.segment.composed", "BooleanEquals": False},
    ]
    # Prepare seeds $.segment so the path exists even when Segment is skipped
    assert get_type_hints(state.Prepared)["segment"] is state.SegmentStart
    assert STATES["Masks"]["ResultPath"] == "$.segment"
    assert {"needs_segment", "compose_masks", "garments"} <= set(get_type_hints(state.Job))
