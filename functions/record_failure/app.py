"""RecordFailure: failures/<job-id>.json, a job-failed (or job-refused) event and the SNS notification.

Thin handler: the logic lives in :mod:`tryon.workflow.steps` (shipped in the shared layer).
"""

from __future__ import annotations

from tryon.workflow import steps
from tryon.workflow.entry import lambda_handler

handler = lambda_handler(
    steps.record_failure,
    counts=lambda result: {"JobsRefused" if result["status"] == "refused" else "JobsFailed": 1},
    log_keys=lambda result: {k: result[k] for k in ("job_id", "step", "error", "failure")},
    error_message="job failed",
)
