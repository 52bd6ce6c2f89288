"""The ASL and the typed state document (tryon.workflow.state) describe the same JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_type_hints

import pytest

from tryon.workflow import state

ASL = json.loads((Path(__file__).resolve().parents[1] / "statemachine" / "tryon.asl.json").read_text())
STATES = ASL["States"]

#: Task state -> the TypedDict its Parameters build (the step's input).
TASK_INPUTS = {
    "Segment": state.SegmentInput,
    "Inpaint": state.InpaintInput,
    "Upscale": state.UpscaleInput,
    "Finalize": state.Envelope,
    "RecordFailure": state.Envelope,
}


def _parameter_names(task: dict) -> set[str]:
    params = task.get("Parameters", {})
    params = params.get("Payload", params)  # lambda:invoke integrations wrap the input
    return {name.removesuffix(".$") for name in params}


@pytest.mark.parametrize("name", sorted(TASK_INPUTS))
def test_task_parameters_are_the_typed_input(name: str) -> None:
    assert _parameter_names(STATES[name]) == set(get_type_hints(TASK_INPUTS[name]))


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
    assert list(state.STEP_RESULT_KEYS) == ["prepare", "segment", "inpaint", "upscale"]
    for key in state.STEP_RESULT_KEYS.values():
        assert key in keys
    assert get_type_hints(state.State)["segment"] is state.SegmentResult


def test_failed_step_uses_the_result_keys() -> None:
    from tryon.workflow.steps import failed_step

    job = {"upscale": True}
    assert failed_step({"trigger": {}}) == "prepare"
    assert failed_step({"job": job}) == "segment"
    assert failed_step({"job": job, "segment": {"empty": False}}) == "inpaint"
    assert failed_step({"job": job, "segment": {"empty": False}, "inpaint": {"keys": ["a"]}}) == "upscale"
    assert failed_step({"job": job, "segment": {"empty": True}}) == "finalize"
