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

S3 may also answer a conditional write that races another write to the same key with 409
``ConditionalRequestConflict`` and asks the caller to retry (botocore does not): the claim
re-reads and tries again, a few times with a short jittered pause, and only then fails with
:class:`ClaimConflict`. Conditional writes need a botocore that knows ``IfNoneMatch`` and
``IfMatch`` on PutObject; :func:`require_conditional_writes` checks the runtime's once.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import botocore
from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from tryon.workflow import clients, storage
from tryon.workflow.step_errors import ClaimConflict, RuntimeTooOld

#: File name of the claim inside the job's result prefix.
CLAIM = "claim.json"
#: Tries of one :func:`acquire` (each a conditional put, and a read when the put loses).
ATTEMPTS = 5
#: Longest pause before retrying a put that S3 answered with 409 (jittered: a random share of it).
CONFLICT_PAUSE_S = 0.2

logger = Logger(child=True)
_PRECONDITION_FAILED = {"PreconditionFailed", "412"}
_CONFLICT = {"ConditionalRequestConflict", "409"}


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


def _answered(exc: ClientError, codes: set[str]) -> bool:
    error = exc.response.get("Error", {})
    status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return error.get("Code", "") in codes or status in codes


@cache
def require_conditional_writes() -> None:
    """Fail with :class:`RuntimeTooOld` unless botocore sends ``If-None-Match``/``If-Match`` on PutObject.

    The Lambda runtime brings its own boto3 and AWS does not pin its version; an old botocore
    would refuse the parameters (``ParamValidationError``) on the first claim of a cold start.
    """
    members = clients.client("s3").meta.service_model.operation_model("PutObject").input_shape.members
    missing = [name for name in ("IfNoneMatch", "IfMatch") if name not in members]
    if missing:
        raise RuntimeTooOld(
            f"botocore {botocore.__version__} in this Lambda runtime cannot send {' and '.join(missing)} on "
            "PutObject (S3 conditional writes, which job claims need; botocore from late 2024 has both): "
            "update the function's runtime or ship a newer boto3/botocore in a layer (docs/deploy.md)"
        )


Outcome = Literal["written", "held", "conflict"]


def _put(bucket: str, key: str, claim: Claim, **condition: str) -> Outcome:
    """Conditional PutObject of the claim: written, held (412: the condition failed) or conflict (409)."""
    require_conditional_writes()
    try:
        clients.client("s3").put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps(claim.document()).encode(),
            ContentType="application/json",
            **condition,
        )
    except ClientError as exc:
        if _answered(exc, _PRECONDITION_FAILED):
            return "held"
        if _answered(exc, _CONFLICT):
            return "conflict"
        raise
    return "written"


def _read(bucket: str, key: str) -> tuple[Claim | None, str | None]:
    """The current claim and its ETag, or (None, None) when there is none."""
    try:
        obj = clients.client("s3").get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if storage.is_missing(exc):
            return None, None
        if storage.is_forbidden(exc):
            raise storage.not_readable(bucket, key, "claim") from exc
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
    except BotoCoreError:  # no answer at all (connection faults past botocore's retries): a doubt
        return True
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
    conflicts = 0
    for _ in range(ATTEMPTS):
        outcome = _put(bucket, key, mine, IfNoneMatch="*")
        if outcome == "written":
            return ClaimResult(acquired=True)
        if outcome == "conflict":  # 409: another write to the key was in flight; S3 says retry
            conflicts += 1
            time.sleep(random.uniform(0, CONFLICT_PAUSE_S))
            continue
        held, etag = _read(bucket, key)
        if held is None:
            continue  # released between our put and our read: try again
        if held.execution == execution:
            return ClaimResult(acquired=True)
        if held.expires_at > now and (is_running is None or is_running(held.execution)):
            return ClaimResult(acquired=False, holder=held.execution)
        if not etag:
            continue
        outcome = _put(bucket, key, mine, IfMatch=etag)
        if outcome == "written":
            return ClaimResult(acquired=True, took_over=held.execution)
        if outcome == "conflict":
            conflicts += 1
            time.sleep(random.uniform(0, CONFLICT_PAUSE_S))
    held, _ = _read(bucket, key)
    if held is not None and held.execution == execution:
        return ClaimResult(acquired=True)
    if held is None and conflicts:
        raise ClaimConflict(
            f"s3://{bucket}/{key}: S3 answered 409 ConditionalRequestConflict to {conflicts} of {ATTEMPTS} "
            "conditional PutObject calls and no execution holds the claim; the job did not start"
        )
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
    """:func:`release` for a job document (no-op for a job without a result prefix); best effort.

    Called once the job's outcome is recorded (Finalize after the manifest, RecordFailure after
    the failure record), so a release that fails must not fail the step: that would add a failure
    record to a finished job. A claim left behind blocks nothing: the manifest answers
    ``already-complete`` first, and a claim whose execution has ended is taken over at once.
    """
    out = job.get("output") or {}
    if not out.get("bucket") or not out.get("prefix"):
        return False
    try:
        return release(out["bucket"], out["prefix"], execution)
    except (ClientError, BotoCoreError, storage.ObjectNotReadable) as exc:
        logger.warning(
            "job claim not released (the next execution takes it over)",
            extra={"claim": f"s3://{out['bucket']}/{claim_key(out['prefix'])}", "error": str(exc)},
        )
        return False
