"""ValidateBatch: a batch manifest (upload event or console input) -> validated rows and map items.

Thin handler: the logic lives in :mod:`tryon.workflow.batch_validate` (shipped in the shared layer).
"""

from __future__ import annotations

from tryon.workflow import batch_validate
from tryon.workflow.entry import lambda_handler

handler = lambda_handler(
    batch_validate.validate_batch,
    counts=lambda result: {"BatchRows": result["rows"], "BatchRowsToRun": result["to_run"]},
    log_keys=lambda result: {"batch_id": result["batch_id"]},
)
