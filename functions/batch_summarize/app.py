"""SummarizeBatch: every row's outcome -> report.json, report.csv, contact sheet pages.

Thin handler: the logic lives in :mod:`tryon.workflow.batch_report` (shipped in the shared layer).
"""

from __future__ import annotations

from tryon.workflow import batch_report
from tryon.workflow.entry import lambda_handler

handler = lambda_handler(
    batch_report.summarize,
    counts=lambda result: {"BatchesSummarized": 1, "BatchRowsFailed": result["counts"].get("failed", 0)},
    log_keys=lambda result: {"batch_id": result["batch_id"], "batch_status": result["status"]},
)
