"""The one shape of every Lambda entry point: powertools logs, traces and metrics around a step."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

Step = Callable[[dict[str, Any]], dict[str, Any]]
Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def _nothing(_result: Mapping[str, Any]) -> Mapping[str, Any]:
    return {}


def lambda_handler(
    step: Step,
    *,
    counts: Callable[[Mapping[str, Any]], Mapping[str, float]] = _nothing,
    log_keys: Callable[[Mapping[str, Any]], Mapping[str, Any]] = _nothing,
    error_message: str | None = None,
) -> Handler:
    """Wrap ``step`` as a Lambda handler.

    ``counts`` turns the step's result into Count metrics, ``log_keys`` into keys added to
    the structured log; with ``error_message`` the result is also logged at ERROR level.
    Errors raised by the step propagate: their class names are the Step Functions errors.
    """
    logger, tracer, metrics = Logger(), Tracer(), Metrics()

    @logger.inject_lambda_context(log_event=False)
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        result = step(event)
        logger.append_keys(**log_keys(result))
        if error_message:
            logger.error(error_message)
        for name, value in counts(result).items():
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        return result

    return handler
