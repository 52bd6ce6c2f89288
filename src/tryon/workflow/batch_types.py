"""The batch workflow's documents, typed (beside :mod:`tryon.workflow.state`; standard library only).

``rows.json`` holds one :class:`BatchRow` per manifest row; ValidateBatch answers
:class:`BatchState` (``$.batch`` of the batch state machine); the report holds one
:class:`ReportRow` per row and a :class:`Report` around them.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class RowError(TypedDict):
    """Why a row is invalid (the field and the limit it breaks) or refused by the content policy."""

    field: str
    message: str
    stage: NotRequired[str]  # a refusal's: "prompt" (found when the batch was validated)
    policy_version: NotRequired[str]  # a refusal's: the content policy that refused it


class BatchRow(TypedDict):
    """One manifest row after validation (``status``: pending, already-complete, invalid, duplicate,
    refused)."""

    row: int
    status: str
    image: str
    input: NotRequired[dict[str, Any]]  # the single-image workflow's console input
    job_id: NotRequired[str]
    result_prefix: NotRequired[str]
    params: NotRequired[dict[str, Any]]
    upscale: NotRequired[bool]
    duplicate_of: NotRequired[int]
    error: NotRequired[RowError]


class ItemsLocation(TypedDict):
    """Where the Distributed Map's ItemReader finds the rows to run (a JSON array in S3)."""

    Bucket: str
    Key: str


class BatchState(TypedDict):
    """ValidateBatch's answer: the batch id, where its files are, counts and the map's settings."""

    batch_id: str
    manifest: str
    version_id: str | None
    bucket: str
    report_prefix: str
    rows: int
    to_run: int
    already_complete: int
    invalid: int
    duplicates: int
    refused: int  # rows the content policy refused (prompt, negative prompt, adapter, query): not run
    items: ItemsLocation
    allow_invalid_rows: bool
    max_concurrency: int
    tolerated_failure_percentage: float


class ReportRow(TypedDict):
    """One row of report.json / report.csv."""

    row: int
    status: str  # succeeded, no-garment-found, already-complete, failed, invalid, not-run, duplicate, refused
    image: str
    job_id: str | None
    adapter: Any
    prompt: str | None
    garment: str | None  # the row's garment_image (pinned to the version Prepare read), if any
    results: list[str]
    manifest: str | None
    preview: str | None
    seeds: list[int]
    timings_ms: dict[str, Any]
    error: str | None
    cause: str | None


class Report(TypedDict):
    """report.json: the batch, its outcome, counts and every row."""

    batch_id: str
    manifest: str
    status: str  # succeeded, completed-with-refusals, completed-with-failures, failed, refused
    execution: str | None
    counts: dict[str, int]
    contact_sheets: list[str]
    rows: list[ReportRow]
