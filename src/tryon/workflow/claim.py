"""One execution per job at a time: a claim object written with an S3 conditional put.

EventBridge delivers at least once, so the same upload can start two executions at the
same moment. Prepare claims the job by writing ``<result prefix>claim.json`` with
``If-None-Match: *`` (S3 refuses the second writer with 412 ``PreconditionFailed``); the
execution that loses ends as ``already-running`` without calling a model. Finalize and the
failure recorder release the claim. A claim left behind by an execution that never reached
either (aborted, timed out, or the recorder itself failed) is stale as soon as that execution
has ended (DescribeExecution), and in any case once it is older than the longest an
execution can run; the next execution takes it over with an ``If-Match`` conditional
overwrite, so a crash does not block a retry.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from tryon.workflow import clients, storage

#: File name of the claim inside the job's result prefix.
CLAIM = "claim.json"

_PRECONDITION_FAILED = {"PreconditionFailed", "412"}


def claim_key(result_prefix: str) -> str:
    """``<result prefix>claim.json``."""
    return result_prefix + CLAIM


@dataclass(frozen=True)
class Claim:
    """Who holds a job: the execution, since when (epoch seconds), until when."""

    execution: str
    claimed_at: float
    expires_at: float

    def document(self) -> dict[str, Any]:
        """The claim object's JSON."""
        return {"execution": self.execution, "claimed_at": self.claimed_at, "expires_at": self.expires_at}


@dataclass(frozen=True)
class ClaimResult:
    """``acquired``: this execution holds the job; otherwise ``holder`` runs it."""

    acquired: bool
    holder: str | None = None
    took_over: str | None = None


def _is_precondition_failure(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return error.get("Code", "") in _PRECONDITION_FAILED or status == "412"


def _put(bucket: str, key: str, claim: Claim, **condition: str) -> bool:
    """Conditional PutObject of the claim; False when the condition did not hold."""
    try:
        clients.client("s3").put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps(claim.document()).encode(),
            ContentType="application/json",
            **condition,
        )
    except ClientError as exc:
        if _is_precondition_failure(exc):
            return False
        raise
    return True


def _read(bucket: str, key: str) -> tuple[Claim | None, str | None]:
    """The current claim and its ETag, or (None, None) when there is none."""
    try:
        obj = clients.client("s3").get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if storage.is_missing(exc):
            return None, None
        raise
    body = obj["Body"].read(64 * 1024)
    try:
        doc = json.loads(body)
        claim = Claim(str(doc["execution"]), float(doc["claimed_at"]), float(doc["expires_at"]))
    except (ValueError, KeyError, TypeError):
        # Unreadable claim: treat it as held by nobody in particular, expired at once.
        claim = Claim("unknown", 0.0, 0.0)
    return claim, obj.get("ETag")


def execution_is_running(execution: str) -> bool:
    """Whether a Step Functions execution still runs (DescribeExecution).

    An execution that does not exist (or a holder id that is not an execution ARN) is not
    running; any other error counts as running, so a doubt never starts a second run.
    """
    if not execution.startswith("arn:"):
        return True
    try:
        status = clients.client("stepfunctions").describe_execution(executionArn=execution)["status"]
    except ClientError as exc:
        return exc.response.get("Error", {}).get("Code", "") != "ExecutionDoesNotExist"
    return status == "RUNNING"


def acquire(
    bucket: str,
    result_prefix: str,
    execution: str,
    *,
    hold_seconds: int,
    now: float | None = None,
    is_running: Callable[[str], bool] | None = None,
) -> ClaimResult:
    """Claim the job for ``execution``.

    Re-entrant: an execution that already holds the claim (its Prepare retried) keeps it.
    A stale claim is taken over with a conditional overwrite, so two executions racing for
    the same stale claim cannot both win. A claim is stale past its ``expires_at``, or at once
    when ``is_running(holder)`` says its execution has ended (aborted, timed out, or failed
    without reaching the failure recorder).
    """
    key = claim_key(result_prefix)
    now = time.time() if now is None else now
    mine = Claim(execution, now, now + hold_seconds)
    for _ in range(3):
        if _put(bucket, key, mine, IfNoneMatch="*"):
            return ClaimResult(acquired=True)
        held, etag = _read(bucket, key)
        if held is None:
            continue  # released between our put and our read: try again
        if held.execution == execution:
            return ClaimResult(acquired=True)
        if held.expires_at > now and (is_running is None or is_running(held.execution)):
            return ClaimResult(acquired=False, holder=held.execution)
        if etag and _put(bucket, key, mine, IfMatch=etag):
            return ClaimResult(acquired=True, took_over=held.execution)
    held, _ = _read(bucket, key)
    return ClaimResult(acquired=False, holder=held.execution if held else None)


def release(bucket: str, result_prefix: str, execution: str | None) -> bool:
    """Delete the claim if ``execution`` holds it (or it is unreadable); True when deleted."""
    key = claim_key(result_prefix)
    held, _ = _read(bucket, key)
    if held is None or (held.execution not in (execution, "unknown")):
        return False
    clients.client("s3").delete_object(Bucket=bucket, Key=key)
    return True


def release_for(job: Mapping[str, Any], execution: str | None) -> bool:
    """:func:`release` for a job document (no-op for a job without a result prefix)."""
    out = job.get("output") or {}
    if not out.get("bucket") or not out.get("prefix"):
        return False
    return release(out["bucket"], out["prefix"], execution)
