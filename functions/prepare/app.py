"""Prepare: an EventBridge S3 event or a console input -> a validated job (or an existing result).

Thin handler: the logic lives in :mod:`tryon.workflow.prepare` (shipped in the shared layer).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from tryon.workflow import prepare

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda entry point."""
    result = prepare.prepare(event)
    logger.append_keys(job_id=result["job"]["job_id"])
    metrics.add_metric(name="JobsPrepared", unit=MetricUnit.Count, value=1)
    if result["complete"]:
        metrics.add_metric(name="JobsAlreadyComplete", unit=MetricUnit.Count, value=1)
    return result
