"""ValidateBatch: a manifest (CSV / JSON Lines) -> validated rows and the Distributed Map's items.

Every row is validated exactly as the single-image workflow validates a console input
(:func:`tryon.workflow.job.build_job`: the photo's bucket, prefix, size and decoding, every
parameter and its limit) before any model runs. A batch with bad rows is refused with every
bad row listed (report.json / report.csv under the batch's report prefix, and the first rows
in the error), unless ``allow_invalid_rows`` is set: then the good rows run and the bad ones
are reported. Rows whose result is already complete (same job id, a complete manifest) and
rows that repeat an earlier row's job are not run again.

What travels in the state is small (Step Functions caps a state at 256 KiB): the rows and the
map's items go to S3 (``rows.json``, ``items.json``).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections import defaultdict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tryon.core import aws_events, content_policy, imaging, validation
from tryon.core.errors import RequestError
from tryon.core.s3uri import parse_s3_uri, s3_uri, version_or_none
from tryon.workflow import batch_manifest, layout, storage
from tryon.workflow.batch_types import BatchRow, BatchState, RowError
from tryon.workflow.job import build_job, inspect_image, parse_trigger
from tryon.workflow.prepare import complete_manifest, within_handler_limits
from tryon.workflow.settings import Settings, _prefix
from tryon.workflow.state import Job
from tryon.workflow.step_errors import as_step_errors

ROWS_FILE = "rows.json"
ITEMS_FILE = "items.json"
#: Rows named in the error of a refused batch (the report lists them all).
ROWS_IN_ERROR = 20
#: Distributed Map limits (Step Functions): MaxConcurrency up to 10,000; a percentage.
MAX_CONCURRENCY_LIMITS = {"minimum": 1, "maximum": 10_000}
TOLERATED_LIMITS = {"minimum": 0.0, "maximum": 100.0}
#: Options a console input ``{"batch": ...}`` (or the manifest's S3 metadata) may carry.
OPTIONS = ("allow_invalid_rows", "max_concurrency", "tolerated_failure_percentage")

#: Threads validating rows (each row is a HeadObject and GetObjects; a photo decodes once).
VALIDATE_THREADS = 16


@dataclass(frozen=True)
class BatchSettings:
    """Where manifests and reports live and the Distributed Map's defaults (template parameters)."""

    batch_prefix: str = "batches/"
    reports_prefix: str = "results/" + layout.BATCH_REPORTS
    max_concurrency: int = 10
    tolerated_failure_percentage: float = 0.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BatchSettings:
        """From ``TRYON_BATCH_*`` variables (template.yaml sets them)."""
        env = os.environ if env is None else env
        return cls(
            batch_prefix=_prefix(env.get("TRYON_BATCH_PREFIX", "batches/")),
            reports_prefix=_prefix(env.get("TRYON_BATCH_REPORTS_PREFIX", "results/" + layout.BATCH_REPORTS)),
            max_concurrency=int(env.get("TRYON_BATCH_MAX_CONCURRENCY") or 10),
            tolerated_failure_percentage=float(env.get("TRYON_BATCH_TOLERATED_FAILURE_PERCENTAGE") or 0),
        )


def report_prefix(batch: BatchSettings, batch_id: str) -> str:
    """``results/batches/<batch-id>/``."""
    return f"{batch.reports_prefix}{batch_id}/"


def check_options(values: Mapping[str, Any], batch: BatchSettings) -> dict[str, Any]:
    """Batch options given as typed values (a console input, the CLI's options), defaults filled in."""
    return _options(values, batch, "input")


def _options(values: Mapping[str, Any], batch: BatchSettings, source: str) -> dict[str, Any]:
    """Validated batch options, defaults from the template; ``source`` ``metadata`` reads JSON text."""
    raw: dict[str, Any] = {}
    for name, value in values.items():
        if source == "metadata" and isinstance(value, str):
            with contextlib.suppress(ValueError):  # "20", "true", "12.5"; anything else is refused below
                value = json.loads(value)
        raw[name] = value
    try:
        return {
            "allow_invalid_rows": validation.get_bool(raw, "allow_invalid_rows", False),
            "max_concurrency": validation.get_int(
                raw, "max_concurrency", batch.max_concurrency, **MAX_CONCURRENCY_LIMITS
            ),
            "tolerated_failure_percentage": validation.get_float(
                raw, "tolerated_failure_percentage", batch.tolerated_failure_percentage, **TOLERATED_LIMITS
            ),
        }
    except RequestError as exc:
        field = exc.field if source == "input" else f"{exc.field} (from {source})"
        raise RequestError(field, exc.detail) from None


def _trigger(event: Any) -> tuple[str, str, str | None, dict[str, Any]]:
    """(bucket, key, version, console options) of an S3 "Object Created" event or ``{"batch": "s3://..."}``."""
    event = validation.require_mapping(event, field="input")
    if aws_events.is_s3_event(event):
        trigger = parse_trigger(event)
        return trigger.bucket, trigger.key, trigger.version_id, {}
    if "batch" in event:
        validation.reject_unknown(event, {"batch", *OPTIONS}, field="input")
        bucket, key = parse_s3_uri(event["batch"], field="batch")
        return bucket, key, None, {k: event[k] for k in OPTIONS if k in event}
    raise RequestError(
        "input",
        'must be an EventBridge S3 "Object Created" event for a manifest or a console input like '
        '{"batch": "s3://<input-bucket>/batches/catalogue.csv"}',
    )


#: An object read for a field: (bucket, key, version id or ETag, field).
_Ident = tuple[str, str, str, str]


class _Inspections:
    """Each photo and garment packshot is read and decoded once per batch, however many rows name it.

    Errors are kept too. A :data:`tryon.workflow.job.Inspector`.
    """

    def __init__(self) -> None:
        self._seen: dict[_Ident, Any] = {}
        self._lock = threading.Lock()
        self._photo_locks: defaultdict[_Ident, threading.Lock] = defaultdict(threading.Lock)

    def __call__(
        self, settings: Settings, bucket: str, key: str, head: Mapping[str, Any], field: str = "image"
    ) -> imaging.ImageHeader:
        # the field too: an error names the field that named the object (image, garment_image)
        ident: _Ident = (bucket, key, str(head.get("VersionId") or head.get("ETag")), field)
        with self._lock:
            photo_lock = self._photo_locks[ident]
        with photo_lock:  # rows naming the same object wait for its one decode
            known = self._seen.get(ident)
            if known is None:
                try:
                    known = inspect_image(settings, bucket, key, head, field)
                except RequestError as exc:
                    known = exc
                self._seen[ident] = known
        if isinstance(known, RequestError):
            raise RequestError(known.field, known.detail)
        return known


def _validate_row(settings: Settings, number: int, row: Any, inspect: _Inspections) -> BatchRow:
    """One row -> its record: pending (to run), already-complete, invalid (field and limit) or
    refused (the content policy refused its prompt, negative prompt, adapter or query)."""
    image = row.get("image") if isinstance(row, Mapping) else None
    try:
        console = batch_manifest.row_console_input(row, settings.input_bucket, settings.input_prefix)
        job = build_job(settings, console, inspect=inspect)
    except content_policy.ContentRefused as exc:  # the prompt policy: not run, reported as refused
        refusal: RowError = {"field": exc.field, "message": exc.detail, "stage": exc.stage}
        refusal["policy_version"] = exc.policy_version
        return {"row": number, "status": "refused", "image": str(image or ""), "error": refusal}
    except RequestError as exc:
        error: RowError = {"field": exc.field, "message": exc.detail}
        return {"row": number, "status": "invalid", "image": str(image or ""), "error": error}
    prefix, inp = job["output"]["prefix"], job["input"]
    done = complete_manifest(settings.output_bucket, prefix) is not None
    return {
        "row": number,
        "status": "already-complete" if done else "pending",
        "image": job["input"]["uri"],
        # The version validated is the version the row's execution reads, even if the photo
        # is replaced while the batch runs.
        "input": {**console, "image": s3_uri(inp["bucket"], inp["key"], inp["version_id"])},
        "job_id": job["job_id"],
        "result_prefix": prefix,
        "params": _row_params(job),
        "upscale": job["upscale"],
    }


#: A row's parameters the report shows: per garment (``lower-body=jeans; upper-body=...``) in an outfit.
_REPORTED = ("query", "prompt", "adapter", "garment_image")


def _row_params(job: Job) -> dict[str, Any]:
    values = {k: job["params"][k] for k in ("seed", "num_images")}
    for name in _REPORTED:
        if not job["outfit"]:
            values[name] = job["params"][name]
            continue
        given = [f"{g['name']}={g['params'][name]}" for g in job["garments"] if g["params"].get(name)]
        values[name] = "; ".join(given) or None
    return values


def validate_rows(settings: Settings, rows: list[Any]) -> list[BatchRow]:
    """Every row's record, in order; a row repeating an earlier row's job is marked ``duplicate``."""
    inspect = _Inspections()
    # Rows are S3 round trips (HeadObject, ranged and full GetObject) more than CPU: threads.
    with ThreadPoolExecutor(max_workers=VALIDATE_THREADS) as pool:
        records = list(
            pool.map(lambda numbered: _validate_row(settings, *numbered, inspect), enumerate(rows, 1))
        )
    first: dict[str, int] = {}
    for record in records:
        job_id = record.get("job_id")
        if job_id is None:
            continue
        if job_id in first:
            record["status"] = "duplicate"
            record["duplicate_of"] = first[job_id]
        else:
            first[job_id] = record["row"]
    return records


def describe_invalid(records: list[BatchRow], limit: int = ROWS_IN_ERROR) -> str:
    """``row 3: steps: must be <= 150, got 500; row 7: image: ...`` (the first ``limit`` bad rows)."""
    bad = [r for r in records if r["status"] == "invalid"]
    text = "; ".join(f"row {r['row']}: {r['error']['field']}: {r['error']['message']}" for r in bad[:limit])
    return text + (f"; and {len(bad) - limit} more" if len(bad) > limit else "")


@as_step_errors
def validate_batch(event: Mapping[str, Any]) -> BatchState:
    """ValidateBatch: check the manifest and every row, write rows and items, answer the map's settings."""
    from tryon.workflow import batch_report

    settings = within_handler_limits(Settings.from_env())
    batch = BatchSettings.from_env()
    bucket, key, version, console_options = _trigger(event)
    where = s3_uri(bucket, key)
    if bucket != settings.input_bucket:
        raise RequestError("batch", f"{where} is not in the input bucket {settings.input_bucket}")
    if not key.startswith(batch.batch_prefix):
        raise RequestError("batch", f"{where} is not under the batch prefix {batch.batch_prefix}")
    batch_manifest.manifest_format(key)
    head = storage.head(bucket, key, version, field="batch")
    if head is None:
        raise RequestError("batch", f"{where} does not exist (or the version is gone)")
    size = int(head.get("ContentLength", 0))
    if size == 0:
        raise RequestError("batch", f"{where} is empty (0 bytes): it needs a header and at least one row")
    version_id = head.get("VersionId")
    version_id = version_or_none(version_id)
    content = storage.get_bytes(
        bucket, key, max_bytes=batch_manifest.MAX_MANIFEST_BYTES, field="batch", version_id=version_id
    )
    metadata = {k.lower().replace("-", "_"): v for k, v in head.get("Metadata", {}).items()}
    # The console input wins over the manifest's metadata, which is read only for the rest.
    from_metadata = {k: metadata[k] for k in OPTIONS if k in metadata and k not in console_options}
    options = _options(from_metadata, batch, "metadata")
    given = _options(console_options, batch, "input")
    options.update({k: v for k, v in given.items() if k in console_options})
    batch_id = batch_manifest.batch_id_for(content, version_id or str(head.get("ETag", "")).strip('"'))
    prefix = report_prefix(batch, batch_id)
    out = settings.output_bucket
    records = validate_rows(settings, batch_manifest.parse_manifest(content, key))
    statuses = ("pending", "already-complete", "invalid", "duplicate", "refused")
    counts = {s: sum(r["status"] == s for r in records) for s in statuses}
    storage.put_json(out, prefix + ROWS_FILE, records)
    state: BatchState = {
        "batch_id": batch_id,
        "manifest": where,
        "version_id": version_id,
        "bucket": out,
        "report_prefix": prefix,
        "rows": len(records),
        "to_run": counts["pending"],
        "already_complete": counts["already-complete"],
        "invalid": counts["invalid"],
        "duplicates": counts["duplicate"],
        "refused": counts["refused"],
        "items": {"Bucket": out, "Key": prefix + ITEMS_FILE},
        **options,  # type: ignore[typeddict-item]
    }
    if counts["invalid"] and not options["allow_invalid_rows"]:
        report = batch_report.write_refusal(state, records)
        raise RequestError(
            "batch",
            f"{counts['invalid']} of {len(records)} rows are invalid (every bad row: {report}; "
            f"set allow_invalid_rows to run the good ones): {describe_invalid(records)}",
        )
    items = [{"row": r["row"], "input": r["input"]} for r in records if r["status"] == "pending"]
    storage.put_json(out, prefix + ITEMS_FILE, items)
    return state
