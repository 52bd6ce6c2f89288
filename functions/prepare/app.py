"""Prepare: an EventBridge S3 event or a console input -> a validated job (or an existing result).

Thin handler: the logic lives in :mod:`tryon.workflow.prepare` (shipped in the shared layer).
"""

from __future__ import annotations

from tryon.workflow import prepare
from tryon.workflow.entry import lambda_handler

handler = lambda_handler(
    prepare.prepare_step,
    counts=lambda result: {
        "JobsPrepared": 1,
        "JobsAlreadyComplete": int(result["complete"]),
        "JobsAlreadyRunning": int(result["running"]),
    },
    log_keys=lambda result: {"job_id": result["job"]["job_id"]},
)
