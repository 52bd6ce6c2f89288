"""CompleteAsync: an asynchronous endpoint's SNS notification -> SendTaskSuccess / SendTaskFailure.

Thin handler: the logic lives in :mod:`tryon.workflow.async_completion` (shipped in the shared layer).
"""

from __future__ import annotations

from tryon.workflow import async_completion
from tryon.workflow.entry import lambda_handler


def _counts(result: dict) -> dict[str, float]:
    outcomes = [o["outcome"] for o in result["outcomes"]]
    return {f"AsyncNotifications-{name}": outcomes.count(name) for name in set(outcomes)}


handler = lambda_handler(
    async_completion.complete,
    counts=_counts,
    log_keys=lambda result: {"outcomes": result["outcomes"]},
)
