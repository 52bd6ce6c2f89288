"""Upscale: the SD x4 upscaler endpoint -> upscaled-<i>.png in S3.

Thin handler: the logic lives in :mod:`tryon.workflow.steps` (shipped in the shared layer).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from tryon.workflow import steps

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda entry point."""
    result = steps.upscale(event)
    metrics.add_metric(name="ImagesUpscaled", unit=MetricUnit.Count, value=len(result["keys"]))
    return result
