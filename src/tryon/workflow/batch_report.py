"""SummarizeBatch: every row's outcome -> report.json, report.csv and the contact sheet pages.

Each row's outcome is read where the single-image workflow leaves it: the manifest under the
job's result prefix (complete), else ``failures/<job-id>.json`` recorded during this batch
(failed), else the row did not run (the map stopped first). The Distributed Map's own
ResultWriter files are not needed for this, so the report is the same however the map ended.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from tryon.core.s3uri import s3_uri
from tryon.workflow import batch_manifest, clients, layout, storage
from tryon.workflow.batch_types import BatchRow, BatchState, Report, ReportRow
from tryon.workflow.prepare import COMPLETE_STATUSES
from tryon.workflow.settings import Settings

REPORT_JSON = "report.json"
REPORT_CSV = "report.csv"
#: Row statuses that make a batch "completed-with-failures" (and the CLI exit non-zero).
FAILED_STATUSES = frozenset({"failed", "invalid", "not-run"})
#: The row status of a try-on the content policy refused (counted apart from failures).
REFUSED = "refused"
#: Largest rows.json read back (10,000 rows take about 5 MB).
MAX_ROWS_BYTES = 64 * 1024 * 1024
CSV_COLUMNS = (
    "row", "status", "image", "job_id", "adapter", "prompt", "garment", "results", "manifest", "preview",
    "seeds", "segment_ms", "inpaint_ms", "upscale_ms", "error", "cause",
)  # fmt: skip
READ_THREADS = 16


def _when(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).replace(microsecond=0)
    except ValueError:
        return None


def _blank(record: BatchRow) -> ReportRow:
    params = record.get("params") or (record.get("input") or {})
    return {
        "row": record["row"],
        "status": record["status"],
        "image": record["image"],
        "job_id": record.get("job_id"),
        "adapter": params.get("adapter"),
        "prompt": params.get("prompt"),
        "garment": params.get("garment_image"),
        "results": [],
        "manifest": None,
        "preview": None,
        "seeds": [],
        "timings_ms": {},
        "error": None,
        "cause": None,
    }


def report_row(settings: Settings, record: BatchRow, started_at: str | None) -> ReportRow:
    """One row's outcome, from its validation record and what its execution left in S3."""
    row = _blank(record)
    if record["status"] == "invalid":
        error = record["error"]
        return row | {"error": "InvalidInput", "cause": f"{error['field']}: {error['message']}"}
    if record["status"] == REFUSED:  # refused by the prompt policy when the batch was validated
        error = record["error"]
        return row | {"error": "ContentRefused", "cause": f"prompt: {error['field']}: {error['message']}"}
    if record["status"] == "duplicate":
        return row | {"cause": f"the same job as row {record['duplicate_of']}"}
    bucket = settings.output_bucket
    manifest = storage.get_json(bucket, record["result_prefix"] + layout.MANIFEST)
    if isinstance(manifest, dict) and manifest.get("status") in COMPLETE_STATUSES:
        outputs = manifest.get("outputs") or {}
        reused = record["status"] == "already-complete"
        return row | {
            "status": "already-complete" if reused else manifest["status"],
            "results": list(outputs.get("upscaled") or outputs.get("inpainted") or []),
            "manifest": outputs.get("manifest"),
            "preview": outputs.get("preview"),
            "seeds": list(manifest.get("seeds") or []),
            "timings_ms": _elapsed(manifest),
        }
    failure = storage.get_json(bucket, layout.failure_key(settings.failures_prefix, record["job_id"]))
    began, recorded = _when(started_at), _when((failure or {}).get("recorded_at"))
    if isinstance(failure, dict) and (began is None or (recorded is not None and recorded >= began)):
        if failure.get("status") == REFUSED:  # moderation refused its photo or its result: no image shown
            return row | {"status": REFUSED, "error": failure.get("error"), "cause": _refusal_cause(failure)}
        return row | {
            "status": "failed",
            "error": failure.get("error"),
            "cause": f"{failure.get('step')}: {failure.get('cause')}",
        }
    return row | {"status": "not-run", "cause": "no result and no failure record: the map stopped first"}


def _refusal_cause(failure: Mapping[str, Any]) -> str:
    """``output: inpainted-0.png: ... [Explicit Nudity 97.1%] (policy 2026-12-07)`` for the report."""
    labels = ", ".join(f"{c.get('name')} {c.get('confidence')}%" for c in failure.get("categories") or [])
    return (
        f"{failure.get('stage')}: {failure.get('cause')}"
        + (f" [{labels}]" if labels else "")
        + f" (policy {failure.get('policy_version')})"
    )


def _elapsed(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Step -> milliseconds, from a manifest's ``timings_ms``."""
    return {step: (t or {}).get("elapsed_ms") for step, t in (manifest.get("timings_ms") or {}).items()}


def batch_status(rows: list[ReportRow], map_error: Mapping[str, Any] | None) -> str:
    """``failed`` (the map failed: too many failures), ``completed-with-failures``,
    ``completed-with-refusals`` (no failure, but the content policy refused rows) or ``succeeded``."""
    if map_error:
        return "failed"
    if any(r["status"] in FAILED_STATUSES for r in rows):
        return "completed-with-failures"
    return "completed-with-refusals" if any(r["status"] == REFUSED for r in rows) else "succeeded"


def _csv(rows: list[ReportRow]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")  # RFC 4180; quotes \r
    writer.writeheader()
    for row in rows:
        timings = row["timings_ms"]
        writer.writerow(
            _safe_cells(
                {
                    k: row.get(k)
                    for k in ("row", "status", "image", "job_id", "adapter", "prompt", "garment", "manifest")
                }
                | {
                    "preview": row["preview"],
                    "results": " ".join(row["results"]),
                    "seeds": " ".join(str(s) for s in row["seeds"]),
                    "segment_ms": timings.get("segment"),
                    "inpaint_ms": timings.get("inpaint"),
                    "upscale_ms": timings.get("upscale"),
                    "error": row["error"],
                    "cause": row["cause"],
                }
            )
        )
    return out.getvalue()


def _safe_cells(cells: Mapping[str, Any]) -> dict[str, Any]:
    """Text cells a spreadsheet cannot run as formulas (prompts, adapters and causes are the caller's)."""
    return {k: batch_manifest.spreadsheet_safe(v) if isinstance(v, str) else v for k, v in cells.items()}


def write_report(state: BatchState, report: Report) -> str:
    """report.csv, then report.json (written last: it marks the report complete); the report.json URI.

    A batch whose summary fails ends in a failure record instead, so a batch has one or the other.
    """
    bucket, prefix = state["bucket"], state["report_prefix"]
    storage.put_bytes(bucket, prefix + REPORT_CSV, _csv(report["rows"]).encode(), "text/csv")
    storage.put_json(bucket, prefix + REPORT_JSON, report)
    return s3_uri(bucket, prefix + REPORT_JSON)


def _counts(rows: list[ReportRow]) -> dict[str, int]:
    counts: dict[str, int] = {"rows": len(rows)}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def write_refusal(state: BatchState, records: list[BatchRow]) -> str:
    """The report of a refused batch (no row ran): every row, the bad ones with field and limit."""
    settings = Settings.from_env()
    rows = [
        report_row(settings, r, None) if r["status"] in ("invalid", REFUSED) else _blank(r) for r in records
    ]
    for row in rows:
        if row["status"] not in ("invalid", REFUSED):
            row["status"] = "not-run"
    report: Report = {
        "batch_id": state["batch_id"],
        "manifest": state["manifest"],
        "status": "refused",
        "execution": None,
        "counts": _counts(rows),
        "contact_sheets": [],
        "rows": rows,
    }
    write_report(state, report)
    return s3_uri(state["bucket"], state["report_prefix"] + REPORT_CSV)


def summarize(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The SummarizeBatch task: ``{"state": <batch document>, "execution": ..., "started_at": ...}``."""
    from tryon.workflow import batch_sheet

    state: BatchState = payload["state"]["batch"]
    map_error = payload["state"].get("map_error")
    settings = Settings.from_env()
    raw = storage.get_bytes(
        state["bucket"], state["report_prefix"] + "rows.json", max_bytes=MAX_ROWS_BYTES, field="rows"
    )
    records: list[BatchRow] = json.loads(raw)
    started = payload.get("started_at")
    clients.client("s3")  # made here: the threads below reuse it (they see the process environment)
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        rows = list(pool.map(lambda r: report_row(settings, r, started), records))
    sheets = batch_sheet.write_contact_sheets(state, rows)
    status = batch_status(rows, map_error)
    report: Report = {
        "batch_id": state["batch_id"],
        "manifest": state["manifest"],
        "status": status,
        "execution": payload.get("execution"),
        "counts": _counts(rows),
        "contact_sheets": sheets,
        "rows": rows,
    }
    uri = write_report(state, report)
    cause = None
    if map_error:
        cause = f"{map_error.get('Error')}: {str(map_error.get('Cause') or '')[:1000]} (report: {uri})"
    counts = report["counts"]
    return {"status": status, "batch_id": state["batch_id"], "report": uri, "counts": counts, "cause": cause}
