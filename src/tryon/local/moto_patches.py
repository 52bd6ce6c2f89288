"""Where moto differs from AWS in ways the workflow notices, and the patches that close the gap.

- Lambda: moto runs functions in Docker; :func:`lambda_invoke` runs them in-process instead
  (``LambdaFunction._invoke_lambda`` is the one patch point that works: Step Functions tasks,
  SNS subscriptions and ``Invoke`` calls all go through it).
- EventBridge: moto drops Step Functions targets silently; :func:`deliver_to_state_machines`
  hands the matching events to a callback that starts the execution.
- Step Functions: moto's ``SendTaskFailure`` handler drops ``cause``, so a failed callback
  would lose the endpoint's message; :func:`send_task_failure_with_cause` passes it on.
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
