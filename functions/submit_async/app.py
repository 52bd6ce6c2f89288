"""SubmitAsync: an endpoint step in async mode -> requests in S3, InvokeEndpointAsync, the task token kept.

Thin handler: the logic lives in :mod:`tryon.workflow.async_calls` (shipped in the shared layer).
"""

from __future__ import annotations

from tryon.workflow import async_calls
from tryon.workflow.entry import lambda_handler

handler = lambda_handler(
    async_calls.submit,
    counts=lambda result: {"AsyncRequestsSubmitted": len(result["inference_ids"])},
    log_keys=lambda result: {"task_id": result["task_id"], "inference_ids": result["inference_ids"]},
)
