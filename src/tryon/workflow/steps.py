"""The endpoint steps and the failure recorder; state in, small JSON out (images stay in S3).

The state machine threads one document through the states, typed in
:mod:`tryon.workflow.state`: the job from Prepare, then the ``segment``, ``inpaint`` and
``upscale`` results under their own keys, then :mod:`tryon.workflow.finalize`. The endpoints read the input
version the job names and write their images into the job's result prefix themselves, so
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


def failed_step(state: State) -> str:
    """The step that failed: the first one whose result is missing (or unfinished) in the state."""
    job = state.get("job") or {}
    segment = state.get("segment") or {}
    if not job:
        return "prepare"
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
    return "finalize"


def record_failure(payload: Envelope | NamedStepEnvelope) -> FailureResult:
    """failures/<job-id>.json plus a notification (SNS) when a topic is configured."""
    state = payload.get("state") or {}
    execution = payload.get("execution")
    settings = Settings.from_env()
    job = state.get("job") or {}
    raw = state.get("trigger", {k: v for k, v in state.items() if k != "error"})
    job_id = job.get("job_id") or fallback_job_id(raw)
    step = payload["step"] if "step" in payload else failed_step(state)
    record = report.failure_record(state, job_id, step, execution)
    key = layout.failure_key(settings.failures_prefix, job_id)
    storage.put_json(settings.output_bucket, key, record)
    claim.release_for(job, execution)  # a redelivered event may retry the job
    uri = s3_uri(settings.output_bucket, key)
    publish_event(
        settings,
        "Try-on Job Failed",
        {k: record[k] for k in ("job_id", "step", "error", "cause", "execution")} | {"failure": uri},
    )
    if settings.notification_topic_arn:
        clients.client("sns").publish(
            TopicArn=settings.notification_topic_arn,
            Subject=f"Try-on job {job_id} failed at {step}"[:100],
            Message=f"{record['error']}: {record['cause']}\n\nFailure record: {uri}\nExecution: {execution}",
        )
    return {
        "status": "failed",
        "job_id": job_id,
        "step": step,
        "error": record["error"],
        "cause": f"{step}: {record['cause']}"[:2000],
        "failure": uri,
    }
