"""Where moto differs from AWS in ways the workflow notices, and the patches that close the gap.

- Lambda: moto runs functions in Docker; :func:`lambda_invoke` runs them in-process instead
  (``LambdaFunction._invoke_lambda`` is the one patch point that works: Step Functions tasks,
  SNS subscriptions and ``Invoke`` calls all go through it).
- SNS -> Lambda: moto invokes the function once and forgets an error; AWS invokes it
  asynchronously, retries and then uses the function's on-failure destination:
  :func:`sns_invokes_asynchronously` hands the delivery to a callback that does the same.
- EventBridge: moto drops Step Functions targets silently; :func:`deliver_to_state_machines`
  hands the matching events to a callback that starts the execution.
- Step Functions: moto's ``SendTaskFailure`` handler drops ``cause``, so a failed callback
  would lose the endpoint's message; :func:`send_task_failure_with_cause` passes it on.
- Step Functions: a task whose heartbeat runs out fails with ``States.Timeout`` in moto, with
  ``States.HeartbeatTimeout`` on AWS; :func:`heartbeat_timeout_error` names it as AWS does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any
from unittest import mock


def lambda_invoke(invoke: Callable[[str, Any], tuple[str, bool, str]]) -> Any:
    """A patch making moto run a function with ``invoke(function name, event)``."""
    from moto.awslambda.models import LambdaFunction

    def _invoke_lambda(fn: Any, event: Any = None) -> tuple[str, bool, str]:
        return invoke(fn.function_name, event)

    return mock.patch.object(LambdaFunction, "_invoke_lambda", _invoke_lambda)


def deliver_to_state_machines(start: Callable[[str, Mapping[str, Any]], None], lock: threading.RLock) -> Any:
    """A patch of moto's rule dispatch: ``start(state machine ARN, event)`` for Step Functions targets."""
    from moto.events.models import Rule

    original = Rule.send_to_targets

    def send_to_targets(rule: Any, event: Any, transform_input: bool = True) -> None:
        machines = [t for t in rule.targets if t["Arn"].startswith("arn:aws:states:")]
        if machines and rule.event_pattern.matches_event(event):
            for target in machines:
                start(target["Arn"], event)
        others = [t for t in rule.targets if t not in machines]
        if others:
            with lock:
                all_targets, rule.targets = rule.targets, others
                try:
                    original(rule, event, transform_input)
                finally:
                    rule.targets = all_targets

    return mock.patch.object(Rule, "send_to_targets", send_to_targets)


def send_task_failure_with_cause() -> Any:
    """A patch of moto's ``SendTaskFailure`` handler that passes ``cause`` to the interpreter, as AWS does."""
    from moto.core.responses import EmptyResult
    from moto.stepfunctions.responses import StepFunctionResponse

    def send_task_failure(self: Any) -> Any:
        self.stepfunction_backend.send_task_failure(
            self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause")
        )
        return EmptyResult()

    return mock.patch.object(StepFunctionResponse, "send_task_failure", send_task_failure)


def heartbeat_timeout_error() -> Any:
    """A patch naming a heartbeat time-out ``States.HeartbeatTimeout``, as AWS does (moto: States.Timeout)."""
    from moto.stepfunctions.parser.api import HistoryEventType, TaskTimedOutEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task import StateTask
    from moto.stepfunctions.parser.asl.eval.callback.callback import HeartbeatTimeoutError
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    original = StateTask._from_error

    def from_error(self: Any, env: Any, ex: Exception) -> Any:
        if isinstance(ex, HeartbeatTimeoutError):
            name = StatesErrorNameType.StatesHeartbeatTimeout
            return FailureEvent(
                env=env,
                error_name=StatesErrorName(typ=name),
                event_type=HistoryEventType.TaskTimedOut,
                event_details=EventDetails(
                    taskTimedOutEventDetails=TaskTimedOutEventDetails(error=name.to_name())
                ),
            )
        return original(self, env, ex)

    return mock.patch.object(StateTask, "_from_error", from_error)


def sns_invokes_asynchronously(invoke_async: Callable[[str, Any], None]) -> Any:
    """A patch of moto's SNS -> Lambda delivery: ``invoke_async(function name, event)``, as AWS invokes it.

    moto builds the SNS event and calls the function's ``invoke`` once; the patch lets it build
    the event, takes the call and hands it to ``invoke_async`` (retries, on-failure destination).
    """
    from moto.awslambda.models import LambdaBackend, LambdaFunction

    original = LambdaBackend.send_sns_message

    def send_sns_message(backend: Any, function_name: str, message: str, *args: Any, **kwargs: Any) -> None:
        taken: list[tuple[str, str]] = []

        def take(fn: Any, body: str, *_: Any, **__: Any) -> bytes:
            taken.append((fn.function_name, body))
            return b""

        with mock.patch.object(LambdaFunction, "invoke", take):
            original(backend, function_name, message, *args, **kwargs)
        for name, body in taken:
            invoke_async(name, body)

    return mock.patch.object(LambdaBackend, "send_sns_message", send_sns_message)
