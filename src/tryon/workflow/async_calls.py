"""The asynchronous path of an endpoint step: requests to S3, ``InvokeEndpointAsync``, token kept (light).

The state machine runs a step whose endpoint is in ``async`` mode as a
``lambda:invoke.waitForTaskToken`` task of the SubmitAsync function: :func:`submit` builds
the same requests the real-time path sends (:data:`tryon.workflow.steps.STEP_CALLS`), keeps
the task token (:mod:`tryon.workflow.async_tokens`), writes each request's JSON to S3 and
calls ``InvokeEndpointAsync``. The task then waits; the endpoint's SNS notification makes
:mod:`tryon.workflow.async_completion` finish it with the same result the real-time step gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from tryon.core import timeouts
from tryon.core.s3uri import s3_uri
from tryon.workflow import async_tokens, endpoints, layout, storage
from tryon.workflow.settings import Settings
from tryon.workflow.state import AsyncWait
from tryon.workflow.step_errors import EndpointNotFound, as_step_errors
from tryon.workflow.steps import STEP_CALLS

#: Keys of SubmitAsync's payload that are not part of the step's input state.
CONTROL_KEYS = ("step", "task_token")


class Submitted(TypedDict):
    """SubmitAsync's answer (the waiting task ignores it; it is in the execution history and logs)."""

    task_id: str
    inference_ids: list[str]


def waits(
    settings: Settings, num_images: int, *, segment_requests: int = 1, passes: int = 1
) -> dict[str, AsyncWait]:
    """How long each asynchronous step waits for its callback (the ASL's ``...SecondsPath``).

    :func:`tryon.core.timeouts.async_waits` has the rule: a heartbeat of one request's invocation
    time plus the grace, renewed as each answer arrives, and a time-out strictly above it (a step
    that sends several requests may take that many heartbeats). Segment sends one request per
    garment that asks CLIPSeg; the upscaler one per image; an outfit's passes after the first
    one per image (each inpaints one image of the previous pass).
    """
    return timeouts.async_waits(
        settings.async_invocation_seconds,
        settings.async_grace_seconds,
        num_images,
        segment_requests=segment_requests,
        passes=passes,
    )


@as_step_errors
def submit(payload: Mapping[str, Any]) -> Submitted:
    """Keep the task token, write the step's requests to S3 and send them to the asynchronous endpoint."""
    settings = Settings.from_env()
    step = payload["step"]
    calls = STEP_CALLS[step]
    state = {k: v for k, v in payload.items() if k not in CONTROL_KEYS}
    job = state["job"]
    endpoint = job["endpoints"][calls.kind] or ""
    if not settings.token_table:
        raise EndpointNotFound(
            "no task-token table is configured (TRYON_TOKEN_TABLE) for asynchronous endpoints"
        )
    requests = calls.requests(state)
    task_id = async_tokens.new_task_id(job["job_id"], step)
    wait = job["async_waits"][step]  # Prepare sized it for this job (garments, images)
    async_tokens.put(
        settings.token_table,
        task_id,
        token=payload["task_token"],
        step=step,
        state=state,
        parts=len(requests),
        timeout_s=wait["timeout_seconds"],
    )
    ids = []
    try:
        for index, request in enumerate(requests):
            inference_id = async_tokens.inference_id(task_id, index)
            key = layout.async_request_key(settings.async_prefix, job["job_id"], inference_id)
            storage.put_json(settings.output_bucket, key, request)
            uri = s3_uri(settings.output_bucket, key)
            endpoints.invoke_async(endpoint, uri, inference_id, settings.async_invocation_seconds)
            ids.append(inference_id)
    except Exception:
        # The task fails with this error (and may be retried with a new token): answers to
        # requests already sent find no task and are ignored.
        async_tokens.delete(settings.token_table, task_id)
        raise
    return {"task_id": task_id, "inference_ids": ids}
