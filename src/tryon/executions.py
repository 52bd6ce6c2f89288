"""Follow a Step Functions execution state by state (light: boto3 only).

The same code follows an execution in a deployed stack (``tryon submit``) and in the local
moto-backed workflow (``tryon demo`` / ``tryon run``): both speak the Step Functions API.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})


@dataclass(frozen=True)
class StateEvent:
    """A state was entered or exited; ``duration_ms`` is set on exit."""

    state: str
    phase: str  # "entered" | "exited"
    timestamp: datetime
    duration_ms: float | None = None
    state_type: str = ""


@dataclass
class ExecutionResult:
    """How an execution ended."""

    execution_arn: str
    status: str
    output: dict[str, Any] | None = None
    error: str | None = None
    cause: str | None = None
    states: list[StateEvent] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"


def _state_events(history: list[dict[str, Any]], entered_at: dict[str, datetime]) -> Iterator[StateEvent]:
    for event in history:
        kind: str = event["type"]
        if kind.endswith("StateEntered"):
            details = event["stateEnteredEventDetails"]
            entered_at[details["name"]] = event["timestamp"]
            yield StateEvent(
                details["name"], "entered", event["timestamp"], state_type=kind[: -len("StateEntered")]
            )
        elif kind.endswith("StateExited"):
            details = event["stateExitedEventDetails"]
            start = entered_at.get(details["name"], event["timestamp"])
            duration = (event["timestamp"] - start).total_seconds() * 1000.0
            yield StateEvent(
                details["name"],
                "exited",
                event["timestamp"],
                round(duration, 1),
                state_type=kind[: -len("StateExited")],
            )


def follow_execution(
    sfn: Any,
    execution_arn: str,
    *,
    on_event: Callable[[StateEvent], None] = lambda _e: None,
    poll_seconds: float = 1.0,
    timeout_seconds: float = 3600.0,
) -> ExecutionResult:
    """Poll the execution history, report each state as it starts and ends, return the outcome.

    Raises TimeoutError if the execution is still running after ``timeout_seconds``.
    """
    deadline = time.monotonic() + timeout_seconds
    seen = 0
    entered_at: dict[str, datetime] = {}
    states: list[StateEvent] = []
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        history = _full_history(sfn, execution_arn)
        for state_event in _state_events(history[seen:], entered_at):
            states.append(state_event)
            on_event(state_event)
        seen = len(history)
        status = described["status"]
        if status in TERMINAL_STATUSES:
            # The history may have grown between the two calls: one last read.
            for state_event in _state_events(_full_history(sfn, execution_arn)[seen:], entered_at):
                states.append(state_event)
                on_event(state_event)
            output = json.loads(described["output"]) if described.get("output") else None
            return ExecutionResult(
                execution_arn, status, output, described.get("error"), described.get("cause"), states
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"execution {execution_arn} still {status} after {timeout_seconds:.0f} s")
        time.sleep(poll_seconds)


def _full_history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events.extend(page["events"])
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def format_event(event: StateEvent) -> str:
    """One human line per state event, as ``tryon demo`` and ``tryon submit`` print them."""
    if event.phase == "entered":
        return f"  -> {event.state}"
    return f"  <- {event.state} ({event.duration_ms / 1000.0:.2f} s)"
