"""Where a batch execution stands: its Distributed Map run's item counts (AWS and local alike; light)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BatchProgress:
    """Rows to run, and how many ended well, failed, or are running now."""

    total: int
    done: int
    failed: int
    running: int

    @property
    def finished(self) -> int:
        """Rows that ended, well or not."""
        return self.done + self.failed


def map_run_progress(sfn: Any, execution_arn: str, total: int = 0) -> BatchProgress | None:
    """The batch's map run counts (None before the map starts); ``total``: the rows to run, if known.

    ``describe_map_run`` counts items as they start on some engines (moto), so the larger of
    its total and ``total`` is used.
    """
    runs = sfn.list_map_runs(executionArn=execution_arn).get("mapRuns", [])
    if not runs:
        return None
    counts = sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"])["itemCounts"]
    failed = counts.get("failed", 0) + counts.get("timedOut", 0) + counts.get("aborted", 0)
    return BatchProgress(
        total=max(total, counts.get("total", 0)),
        done=counts.get("succeeded", 0),
        failed=failed,
        running=counts.get("running", 0),
    )


def report_uri(output: Any, cause: str | None) -> str | None:
    """The ``report.json`` URI of an ended batch: from its output, else from its failure cause.

    A refused batch names its report (every bad row) in the cause; a batch refused before its
    rows were read (not CSV, empty, ...) has none.
    """
    if isinstance(output, dict) and isinstance(output.get("report"), str):
        return output["report"]
    for word in (cause or "").split():
        word = word.rstrip(";,).")
        if word.startswith("s3://") and word.endswith(("/report.csv", "/report.json")):
            return word.rsplit("/", 1)[0] + "/report.json"
    return None
