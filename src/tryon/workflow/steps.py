"""The endpoint steps and the failure recorder; state in, small JSON out (images stay in S3).

The state machine threads one document through the states, typed in
:mod:`tryon.workflow.state`: the job from Prepare, then the ``segment``, ``inpaint`` and
``upscale`` results under their own keys, then :mod:`tryon.workflow.finalize`. The endpoints read the input
version the job names and write their images under the job's pending prefix themselves
(Finalize publishes them once moderation passed them), so
only keys and metadata travel (SageMaker caps a real-time answer at 6 MB, Step Functions a
state at 256 KiB). This module does not need Pillow: the functions using it ship without
the imaging layer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from tryon.core.kinds import EndpointKind
from tryon.core.s3uri import s3_uri
from tryon.workflow import claim, clients, endpoints, layout, report, step_requests, storage
from tryon.workflow.jobid import fallback_job_id
from tryon.workflow.settings import Settings
from tryon.workflow.state import (
    Envelope,
    FailureResult,
    InpaintInput,
    InpaintResult,
    NamedStepEnvelope,
    SegmentInput,
    SegmentResult,
    State,
    UpscaleInput,
    UpscaleResult,
)
from tryon.workflow.step_errors import EndpointUnavailable, as_step_errors

#: The instance time a step's endpoint calls took (re-exported: the step's result records it).
compute_seconds = step_requests.compute_seconds
#: EventBridge ``source`` of the completion and failure events.
EVENT_SOURCE = "tryon.workflow"

logger = Logger(child=True)
#: Tries of a job event or notification, and the pause before the next (times the attempt).
ANNOUNCE_ATTEMPTS = 3
ANNOUNCE_PAUSE_S = 0.2


def publish_event(settings: Settings, detail_type: str, detail: Mapping[str, Any]) -> None:
    """Put a job event on the configured EventBridge bus (nothing when none is configured)."""
    if not settings.event_bus:
        return
    response = clients.client("events").put_events(
        Entries=[
            {
                "EventBusName": settings.event_bus,
                "Source": EVENT_SOURCE,
                "DetailType": detail_type,
                "Detail": json.dumps(detail),
            }
        ]
    )
    if response.get("FailedEntryCount"):
        raise EndpointUnavailable(f"EventBridge refused the {detail_type!r} event: {response['Entries']}")


def announce(what: str, send: Callable[[], Any]) -> bool:
    """Send a notification once the job's outcome is recorded; False (and an ERROR log) if it fails.

    The manifest or the failure record is the outcome; an event or a message about it that
    cannot be sent (EventBridge or SNS down past the retries) must not turn a recorded job into
    a failed step, which would record the job a second time. Tried :data:`ANNOUNCE_ATTEMPTS`
    times: botocore does not retry every throttle (SNS answers ``Throttled``, 429, which its
    standard mode leaves alone).
    """
    for attempt in range(1, ANNOUNCE_ATTEMPTS + 1):
        try:
            send()
        except (ClientError, BotoCoreError, EndpointUnavailable) as exc:
            if attempt < ANNOUNCE_ATTEMPTS:
                time.sleep(ANNOUNCE_PAUSE_S * attempt)
                continue
            logger.error(f"{what} not sent", extra={"error": f"{type(exc).__name__}: {exc}"})
            return False
        return True
    return False


def _elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 1)


@dataclass(frozen=True)
class StepCalls:
    """One endpoint step: its endpoint kind, the requests it sends, and how their answers become its result.

    The real-time path (:func:`run_realtime`) and the asynchronous one
    (:mod:`tryon.workflow.async_calls`) both use these, so a step has one definition.
    """

    kind: EndpointKind
    requests: Callable[[Any], list[dict[str, Any]]]
    result: Callable[[Any, list[dict[str, Any]], float], Any]


#: Workflow step -> its endpoint calls, in workflow order.
STEP_CALLS: dict[str, StepCalls] = {
    "segment": StepCalls("clipseg", step_requests.segment_requests, step_requests.segment_result),
    "inpaint": StepCalls("sd_inpaint", step_requests.inpaint_requests, step_requests.inpaint_result),
    "upscale": StepCalls("sd_upscale", step_requests.upscale_requests, step_requests.upscale_result),
}


def run_realtime(step: str, state: Any) -> Any:
    """Call the step's endpoint with ``invoke_endpoint`` (real-time or serverless), one request at a time."""
    start = time.perf_counter()
    calls = STEP_CALLS[step]
    endpoint = state["job"]["endpoints"][calls.kind] or ""
    component = (state["job"].get("components") or {}).get(calls.kind)
    results = [endpoints.invoke_json(endpoint, request, component) for request in calls.requests(state)]
    return calls.result(state, results, _elapsed_ms(start))


@as_step_errors
def segment(state: SegmentInput) -> SegmentResult:
    """CLIPSeg: each garment's query (or keep-regions) -> its mask, written by the endpoint, coverage."""
    return run_realtime("segment", state)


@as_step_errors
def inpaint(state: InpaintInput) -> InpaintResult:
    """The next garment's pass: SD inpainting (+ LoRA adapter, packshot) in its mask, on the last pass."""
    return run_realtime("inpaint", state)


@as_step_errors
def upscale(state: UpscaleInput) -> UpscaleResult:
    """SD x4 upscaler on each inpainted image -> upscaled-<i>.png, written by the endpoint."""
    return run_realtime("upscale", state)


#: The stage of a content refusal -> the step that refused it.
REFUSING_STEPS = {"prompt": "prepare", "input": "moderate-inputs", "output": "moderate-results"}


def failed_step(state: State) -> str:
    """The step that failed: the first one whose result is missing (or unfinished) in the state.

    In workflow order: prepare, moderate-inputs, segment, masks, inpaint (every pass), upscale
    (when asked), moderate-results (unless no garment was found or moderation is off), finalize.
    """
    job = state.get("job") or {}
    moderation = state.get("moderation") or {}
    segment = state.get("segment") or {}
    if not job:
        return "prepare"
    if not moderation:
        return "moderate-inputs"
    if job.get("needs_segment", True) and "garments" not in segment:
        return "segment"
    if job.get("compose_masks") and not segment.get("composed"):
        return "masks"
    if segment.get("empty"):
        return "finalize"
    if not (state.get("inpaint") or {}).get("done", bool(state.get("inpaint"))):
        return "inpaint"
    if job.get("upscale") and not state.get("upscale"):
        return "upscale"
    if moderation.get("enabled") and moderation.get("results") is None:
        return "moderate-results"
    return "finalize"


def _notify(settings: Settings, record: Mapping[str, Any], where: str, execution: str | None) -> None:
    """The job-failed (or job-refused) event and the SNS notification an operator reviews.

    Best effort (:func:`announce`): the failure record is the outcome.
    """
    job_id, step = record["job_id"], record["step"]
    refused = record["status"] == "refused"
    detail = {k: record[k] for k in ("job_id", "step", "error", "cause", "execution")} | {"failure": where}
    if refused:
        detail |= {k: record[k] for k in ("stage", "field", "categories", "policy_version", "quarantine")}
    event = "Try-on Job Refused" if refused else "Try-on Job Failed"
    announce(f"the {event} event", lambda: publish_event(settings, event, detail))
    if not settings.notification_topic_arn:
        return
    if refused:
        subject = f"Try-on job {job_id} refused by content moderation ({record['stage']})"
        labels = ", ".join(f"{c['name']} {c['confidence']:g}%" for c in record["categories"]) or "none"
        lines = [
            f"{record['error']}: {record['cause']}",
            "",
            f"Stage: {record['stage']} (field {record['field']}), policy {record['policy_version']}",
            f"Labels: {labels}",
            *[f"Quarantined (operator role only): {q}" for q in record["quarantine"]],
        ]
    else:
        subject = f"Try-on job {job_id} failed at {step}"
        lines = [f"{record['error']}: {record['cause']}"]
    lines += ["", f"Failure record: {where}", f"Execution: {execution}"]
    announce(
        "the refusal notification" if refused else "the failure notification",
        lambda: clients.client("sns").publish(
            TopicArn=settings.notification_topic_arn, Subject=subject[:100], Message="\n".join(lines)
        ),
    )


def record_failure(payload: Envelope | NamedStepEnvelope) -> FailureResult:
    """failures/<job-id>.json plus an event and a notification (SNS) when a topic is configured.

    A content refusal (error ``ContentRefused``) is a first-class outcome: its record says the
    stage, the labels and the policy version, and its event is ``Try-on Job Refused``.
    """
    state = payload.get("state") or {}
    execution = payload.get("execution")
    settings = Settings.from_env()
    job = state.get("job") or {}
    raw = state.get("trigger", {k: v for k, v in state.items() if k != "error"})
    job_id = job.get("job_id") or fallback_job_id(raw)
    _, refusal = report.error_message(state)
    if "step" in payload:
        step = payload["step"]
    elif refusal is not None:
        step = REFUSING_STEPS.get(str(refusal.get("stage")), failed_step(state))
    else:
        step = failed_step(state)
    error = (state.get("error") or {}).get("Error", "")
    explained = None
    if error in report.TIMEOUT_ERRORS:
        explained = report.timeout_cause(
            state,
            step,
            error,
            async_errors=layout.s3_uri(settings.output_bucket, settings.async_prefix + layout.ASYNC_ERRORS),
            dead_letters=settings.async_dead_letters,
        )
    record = report.failure_record(state, job_id, step, execution, cause=explained)
    key = layout.failure_key(settings.failures_prefix, job_id)
    uri = s3_uri(settings.output_bucket, key)
    try:
        storage.put_json(settings.output_bucket, key, record)
    except (ClientError, BotoCoreError) as exc:
        # No record can be written: the notifications carry it, then the step fails with the cause.
        _notify(settings, record, f"not written ({type(exc).__name__}: {exc})", execution)
        raise
    claim.release_for(job, execution)  # a redelivered event may retry the job
    _notify(settings, record, uri, execution)
    return {
        "status": record["status"],
        "job_id": job_id,
        "step": step,
        "error": record["error"],
        "cause": f"{step}: {record['cause']}"[:2000],
        "failure": uri,
    }
