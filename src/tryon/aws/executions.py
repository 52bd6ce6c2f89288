"""Follow a Step Functions execution state by state (light: boto3 only).

The same code follows an execution in a deployed stack (``tryon submit``) and in the local
moto-backed workflow (``tryon demo`` / ``tryon run``): both speak the Step Functions API.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})


@dataclass(frozen=True)
class StateEvent:
    """A state starting, ending or failing, read from the execution history."""

    phase: str  # "entered" | "exited" | "error"
    state: str
    timestamp: datetime
    duration_s: float | None = None
    error: str | None = None
    cause: str | None = None


@dataclass
class ExecutionResult:
    """How an execution ended."""

    execution_arn: str
    status: str
    output: Any
    error: str | None
    cause: str | None
    events: list[StateEvent] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"

    def states(self) -> list[str]:
        """Names of the states entered, in order."""
        return [e.state for e in self.events if e.phase == "entered"]

    @property
    def artifact_uri(self) -> str | None:
        """Where the outcome lies: the manifest (success, no garment found) or the failure record."""
        if isinstance(self.output, dict) and self.output.get("manifest"):
            return self.output["manifest"]
        return (self.failure or {}).get("failure")

    @property
    def failure(self) -> dict[str, Any] | None:
        """What the failure recorder returned (job id, step, error, cause, record URI), if it ran."""
        state = self.state_output("RecordFailure")  # its result sits at $.failure of its output
        return state.get("failure") if isinstance(state, dict) else None

    def state_output(self, state: str) -> Any:
        """The JSON output of the last time ``state`` exited (None if it never did)."""
        for item in reversed(self.history):
            details = item.get("stateExitedEventDetails")
            if details and details.get("name") == state and details.get("output"):
                return json.loads(details["output"])
        return None


def state_event(item: Mapping[str, Any], entered: dict[str, datetime]) -> StateEvent | None:
    """The StateEvent a history item stands for (None for items that are not about states)."""
    ts = item["timestamp"]
    if "stateEnteredEventDetails" in item:
        name = item["stateEnteredEventDetails"]["name"]
        entered[name] = ts
        return StateEvent("entered", name, ts)
    if "stateExitedEventDetails" in item:
        name = item["stateExitedEventDetails"]["name"]
        start = entered.get(name)
        return StateEvent("exited", name, ts, (ts - start).total_seconds() if start else None)
    for key, details in item.items():
        if key == "executionFailedEventDetails":
            return None  # the execution's own end: the caller reports its cause once
        if key.endswith("FailedEventDetails") and isinstance(details, dict):
            state = next(reversed(entered), "") if entered else ""
            return StateEvent("error", state, ts, error=details.get("error"), cause=details.get("cause"))
    return None


def execution_history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    """Every history event of an execution, across pages."""
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events.extend(page["events"])
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def snapshot(sfn: Any, execution_arn: str) -> ExecutionResult:
    """The execution as it stands now (its status may still be RUNNING)."""
    desc = sfn.describe_execution(executionArn=execution_arn)
    history = execution_history(sfn, execution_arn)
    entered: dict[str, datetime] = {}
    events = [e for e in (state_event(item, entered) for item in history) if e is not None]
    output = json.loads(desc["output"]) if desc.get("output") else None
    return ExecutionResult(
        execution_arn, desc["status"], output, desc.get("error"), desc.get("cause"), events, history
    )


def follow_execution(
    sfn: Any,
    execution_arn: str,
    *,
    timeout: float = 3600.0,
    poll_s: float = 1.0,
    on_event: Callable[[StateEvent], None] | None = None,
    stop_on_timeout: bool = False,
) -> ExecutionResult:
    """Poll until the execution ends, reporting states as they start, fail and end.

    Raises TimeoutError if it runs past ``timeout`` seconds (after stopping it, with
    ``stop_on_timeout``).
    """
    deadline = time.monotonic() + timeout
    seen: set[int] = set()
    entered: dict[str, datetime] = {}
    events: list[StateEvent] = []
    while True:
        desc = sfn.describe_execution(executionArn=execution_arn)
        history = execution_history(sfn, execution_arn)
        for item in history:
            if item["id"] in seen:
                continue
            seen.add(item["id"])
            event = state_event(item, entered)
            if event is not None:
                events.append(event)
                if on_event is not None:
                    on_event(event)
        if desc["status"] in TERMINAL_STATUSES:
            output = json.loads(desc["output"]) if desc.get("output") else None
            return ExecutionResult(
                execution_arn, desc["status"], output, desc.get("error"), desc.get("cause"), events, history
            )
        if time.monotonic() > deadline:
            if stop_on_timeout:
                sfn.stop_execution(executionArn=execution_arn, error="Timeout")
            raise TimeoutError(f"execution {execution_arn} still {desc['status']} after {timeout:.0f} s")
        time.sleep(poll_s)


def plain_cause(cause: str | None) -> str:
    """A failure's cause in words: a Lambda error's ``errorMessage`` without its JSON and stack trace."""
    if not cause:
        return ""
    text = cause.strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            return text
        if isinstance(parsed, dict) and parsed.get("errorMessage") is not None:
            return str(parsed["errorMessage"])
    return text


def failure_summary(result: ExecutionResult) -> tuple[str, str, str]:
    """``(error name, "step: cause", failure record URI or "")`` of a failed execution, in words."""
    failure = result.failure or {}
    error = failure.get("error") or result.error or result.status
    cause = plain_cause(failure.get("cause") or result.cause) or error
    step = failure.get("step")
    if step and not cause.startswith(f"{step}:"):
        cause = f"{step}: {cause}"
    return str(error), cause, failure.get("failure") or ""


def format_event(event: StateEvent) -> str:
    """One human line per state event, as ``tryon demo`` and ``tryon submit`` print them.

    A failed state shows its error name only: the cause, in words, is the command's one
    ``error:`` line (a Lambda error's cause is JSON with a stack trace).
    """
    if event.phase == "entered":
        return f"  -> {event.state}"
    if event.phase == "error":
        return f"  !! {event.state}: {event.error}"
    took = f" ({event.duration_s:.2f} s)" if event.duration_s is not None else ""
    return f"  <- {event.state}{took}"
