"""Every time limit in template.yaml and both state machines equals tryon.core.timeouts' table.

Each test names the copy that disagrees and the value the table gives, so a change is made in
the table (and the copy updated to what the message says), never in one place alone.
"""

from __future__ import annotations

import json
import re

import pytest
from support.paths import BATCH_ASL, TEMPLATE, TRYON_ASL

from tryon.core import timeouts
from tryon.local.template import load_template
from tryon.workflow.step_errors import TRANSIENT_ERRORS

DOC = load_template(TEMPLATE)
RESOURCES = DOC["Resources"]
FUNCTIONS = {n: r for n, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"}
TRYON = json.loads(TRYON_ASL.read_text())
BATCH = json.loads(BATCH_ASL.read_text())
LAMBDA_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.ClientExecutionTimeoutException",
}


def _tasks(states: dict) -> dict[str, dict]:
    """Every Task state, those inside Map item processors included."""
    found = {}
    for name, state in states.items():
        if state["Type"] == "Task":
            found[name] = state
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            found |= _tasks(processor["States"])
    return found


def _function_of(task: dict) -> str | None:
    """The function a Lambda Task invokes (its ``${<Function>Arn}`` substitution), else None."""
    match = re.fullmatch(r"\$\{(\w+Function)Arn\}", task["Resource"])
    if match:
        return match.group(1)
    payload_fn = (task.get("Parameters") or {}).get("FunctionName", "")
    match = re.fullmatch(r"\$\{(\w+Function)Arn\}", payload_fn)
    return match.group(1) if match else None


def test_every_function_timeout_comes_from_the_table():
    assert set(FUNCTIONS) == set(timeouts.FUNCTION_TIMEOUTS), "a function is missing from FUNCTION_TIMEOUTS"
    assert DOC["Globals"]["Function"]["Timeout"] == timeouts.GLOBAL_FUNCTION_TIMEOUT
    for name, res in FUNCTIONS.items():
        want = timeouts.FUNCTION_TIMEOUTS[name]
        got = res["Properties"].get("Timeout")
        assert got == want, f"template.yaml {name}.Timeout is {got}; tryon.core.timeouts says {want}"
        assert 1 <= want <= timeouts.LAMBDA_MAX_SECONDS


def test_endpoint_steps_outlast_their_endpoint_calls():
    """A real-time step's function outlives all its calls at the client's read time-out."""
    per_call = timeouts.ENDPOINT_READ_SECONDS + timeouts.ENDPOINT_CONNECT_SECONDS
    assert timeouts.ENDPOINT_READ_SECONDS > timeouts.REALTIME_INVOCATION_SECONDS
    assert timeouts.FUNCTION_TIMEOUTS["SegmentFunction"] > per_call
    assert timeouts.FUNCTION_TIMEOUTS["InpaintFunction"] > per_call
    assert timeouts.FUNCTION_TIMEOUTS["UpscaleFunction"] > timeouts.MAX_IMAGES * per_call


@pytest.mark.parametrize(
    ("asl", "table"), [(TRYON, timeouts.TRYON_TASKS), (BATCH, timeouts.BATCH_TASKS)], ids=["tryon", "batch"]
)
def test_every_lambda_task_waits_its_function_timeout_plus_the_margin(asl, table):
    lambda_tasks = {
        name: _function_of(task)
        for name, task in _tasks(asl["States"]).items()
        if _function_of(task) and not task["Resource"].endswith(".waitForTaskToken")
    }
    assert lambda_tasks == table, "the table's Task -> function map differs from the ASL's Resources"
    for name, function in lambda_tasks.items():
        want = timeouts.task_timeout(function)
        got = _tasks(asl["States"])[name]["TimeoutSeconds"]
        assert got == want, f"{name}.TimeoutSeconds is {got}; tryon.core.timeouts.task_timeout gives {want}"
        assert got > timeouts.FUNCTION_TIMEOUTS[function]  # the function's own time-out ends it first


def test_asynchronous_tasks_wait_as_the_job_says():
    steps = {}
    for name, task in _tasks(TRYON["States"]).items():
        if task["Resource"].endswith(".waitForTaskToken"):
            step = task["Parameters"]["Payload"]["step"]
            steps[step] = name
            assert "TimeoutSeconds" not in task and "HeartbeatSeconds" not in task, name
            assert task["TimeoutSecondsPath"] == f"$.job.async_waits.{step}.timeout_seconds"
            assert task["HeartbeatSecondsPath"] == f"$.job.async_waits.{step}.heartbeat_seconds"
            assert _function_of(task) == "SubmitAsyncFunction"
    assert set(steps) == set(timeouts.ASYNC_STEPS)
    # the table's steps are the schema's kinds' steps, and only the upscaler sends one request per image
    from tryon.core.schema import ENDPOINT_KINDS

    assert {row.step for row in ENDPOINT_KINDS} == set(timeouts.ASYNC_STEPS)
    assert [s for s, per_image in timeouts.ASYNC_STEPS.items() if per_image] == ["upscale"]


def _retriers(asl: dict) -> list[tuple[str, dict]]:
    return [(name, r) for name, task in _tasks(asl["States"]).items() for r in task.get("Retry", [])]


@pytest.mark.parametrize("asl", [TRYON, BATCH], ids=["tryon", "batch"])
def test_every_retry_is_one_of_the_tables_retriers(asl):
    for name, retrier in _retriers(asl):
        errors = set(retrier["ErrorEquals"])
        if errors == LAMBDA_ERRORS:
            want = timeouts.LAMBDA_RETRY
        elif errors == set(TRANSIENT_ERRORS):
            want = timeouts.ENDPOINT_RETRY
        elif all(e.startswith("StepFunctions.") for e in errors):
            want = timeouts.CHILD_START_RETRY
        elif errors == {"EndpointNoCapacity"}:
            want = timeouts.NO_CAPACITY_RETRY
        elif errors == {"ModerationUnavailable"}:
            want = timeouts.MODERATION_RETRY
        else:
            raise AssertionError(f"{name}: a Retry on {sorted(errors)} tryon.core.timeouts does not know")
        got = (
            retrier["IntervalSeconds"],
            retrier["MaxAttempts"],
            retrier["BackoffRate"],
            retrier["MaxDelaySeconds"],
        )
        table = (want.interval_seconds, want.max_attempts, want.backoff_rate, want.max_delay_seconds)
        assert got == table, name
        assert retrier.get("JitterStrategy") == want.jitter, name


def test_async_parameter_ranges_are_the_tables():
    params = DOC["Parameters"]
    invocation, grace = params["AsyncInvocationTimeoutSeconds"], params["AsyncGraceSeconds"]
    assert invocation["Default"] == timeouts.ASYNC_INVOCATION_DEFAULT_SECONDS
    assert invocation["MaxValue"] == timeouts.ASYNC_INVOCATION_MAX_SECONDS
    assert grace["Default"] == timeouts.ASYNC_GRACE_DEFAULT_SECONDS
    assert grace["MaxValue"] == timeouts.ASYNC_GRACE_MAX_SECONDS
    assert invocation["MinValue"] >= 1 and grace["MinValue"] >= 1


def test_the_execution_outlasts_the_longest_job_at_the_template_maxima():
    """Every wait ends in a Task's own time-out (and a failure record) before the execution's."""
    params = DOC["Parameters"]
    longest = timeouts.longest_job_seconds(
        params["AsyncInvocationTimeoutSeconds"]["MaxValue"], params["AsyncGraceSeconds"]["MaxValue"]
    )
    assert TRYON["TimeoutSeconds"] == timeouts.EXECUTION_TIMEOUT_SECONDS >= longest


def test_a_batch_row_waits_for_its_child_to_end_by_its_own_limit():
    """Issue 17 item 1: the row's limit follows from the child state machine's, read from both ASLs."""
    [row] = BATCH["States"]["RunRows"]["ItemProcessor"]["States"].values()
    child_limit = TRYON["TimeoutSeconds"]
    assert row["TimeoutSeconds"] == timeouts.BATCH_ROW_TIMEOUT_SECONDS
    assert row["TimeoutSeconds"] >= child_limit + timeouts.SYNC_MARGIN_SECONDS, (
        f"the batch row gives up after {row['TimeoutSeconds']} s; its child may run {child_limit} s"
    )


def test_a_batch_outlasts_one_row_at_its_worst():
    assert BATCH["TimeoutSeconds"] == timeouts.BATCH_EXECUTION_TIMEOUT_SECONDS
    assert BATCH["TimeoutSeconds"] >= timeouts.batch_minimum_seconds()
    assert BATCH["TimeoutSeconds"] <= 365 * 24 * 3600  # a Standard workflow runs at most a year


def test_a_claim_outlives_every_execution():
    from tryon.workflow.settings import Settings

    assert Settings.from_env({}).claim_seconds == timeouts.CLAIM_SECONDS >= TRYON["TimeoutSeconds"]
