"""The endpoint steps and the failure recorder; state in, small JSON out (images stay in S3).

The state machine threads one document through the states: ``{"job": ...}`` from Prepare
(:mod:`tryon.workflow.prepare`), then ``segment``, ``inpaint`` and ``upscale`` results added
under their own keys, then :mod:`tryon.workflow.finalize`. This module does not need Pillow:
the functions using it ship without the imaging layer.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from typing import Any

from tryon.workflow import aws, endpoints, layout, report, storage
from tryon.workflow.config import Settings
from tryon.workflow.errors import EndpointUnavailable, as_step_errors
from tryon.workflow.jobid import fallback_job_id

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: EventBridge ``source`` of the completion and failure events.
EVENT_SOURCE = "tryon.workflow"


def publish_event(settings: Settings, detail_type: str, detail: Mapping[str, Any]) -> None:
    """Put a job event on the configured EventBridge bus (nothing when none is configured)."""
    if not settings.event_bus:
        return
    response = aws.client("events").put_events(
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


def _response_png(text: Any, *, endpoint: str, field: str) -> bytes:
    """PNG bytes of an image field of an endpoint's response (base64; the PNG signature is checked).

    The images are decoded in full by Finalize (which has Pillow); here only their shape is checked.
    """
    try:
        data = base64.b64decode(text, validate=True) if isinstance(text, str) else b""
    except (binascii.Error, ValueError):
        data = b""
    if not data.startswith(PNG_SIGNATURE):
        raise EndpointUnavailable(f"endpoint {endpoint} returned no base64 PNG in {field!r}")
    return data


@as_step_errors
def segment(state: Mapping[str, Any]) -> dict[str, Any]:
    """CLIPSeg: text query -> mask.png in the result prefix, coverage and an empty flag."""
    start = time.perf_counter()
    job = state["job"]
    p = job["params"]
    endpoint = job["endpoints"]["clipseg"]
    result = endpoints.invoke_json(
        endpoint,
        {
            "image": job["input"]["uri"],
            "queries": [p["query"]],
            "negative_queries": p["negative_queries"],
            "threshold": p["threshold"],
            "dilate": p["dilate"],
            "feather": p["feather"],
        },
    )
    mask = _response_png(result.get("mask"), endpoint=endpoint, field="mask")
    key = job["output"]["prefix"] + layout.MASK
    storage.put_bytes(job["output"]["bucket"], key, mask, "image/png")
    coverage = float(result.get("coverage", 0.0))
    return {
        "mask_key": key,
        "coverage": coverage,
        "empty": coverage <= p["min_coverage"],
        "scores": result.get("scores", {}),
        "model": result.get("model"),
        "timings_ms": result.get("timings_ms", {}),
        "elapsed_ms": _elapsed_ms(start),
    }


@as_step_errors
def inpaint(state: Mapping[str, Any]) -> dict[str, Any]:
    """SD inpainting (+ LoRA adapter) -> inpainted-<i>.png in the result prefix."""
    start = time.perf_counter()
    job = state["job"]
    p = job["params"]
    out = job["output"]
    endpoint = job["endpoints"]["inpaint"]
    request: dict[str, Any] = {
        "image": job["input"]["uri"],
        "mask": layout.s3_uri(out["bucket"], state["segment"]["mask_key"]),
        "prompt": p["prompt"],
        "negative_prompt": p["negative_prompt"],
        "steps": p["steps"],
        "guidance_scale": p["guidance_scale"],
        "strength": p["strength"],
        "num_images": p["num_images"],
        "seed": p["seed"],
    }
    if p["sampler"]:
        request["sampler"] = p["sampler"]
    if p["adapter"]:
        request["adapter"] = p["adapter"]
        request["adapter_scale"] = p["adapter_scale"]
    result = endpoints.invoke_json(endpoint, request)
    images = result.get("images")
    if not isinstance(images, list) or not images:
        raise EndpointUnavailable(f"endpoint {endpoint} returned no images")
    keys = []
    for i, text in enumerate(images):
        key = layout.inpainted_key(out["prefix"], i)
        storage.put_bytes(
            out["bucket"], key, _response_png(text, endpoint=endpoint, field="images"), "image/png"
        )
        keys.append(key)
    return {
        "keys": keys,
        "seeds": result.get("seeds", []),
        "adapter": result.get("adapter"),
        "model": result.get("model"),
        "timings_ms": result.get("timings_ms", {}),
        "elapsed_ms": _elapsed_ms(start),
    }


@as_step_errors
def upscale(state: Mapping[str, Any]) -> dict[str, Any]:
    """SD x4 upscaler on each inpainted image -> upscaled-<i>.png."""
    start = time.perf_counter()
    job = state["job"]
    p = job["params"]
    out = job["output"]
    endpoint = job["endpoints"]["upscale"]
    seeds = state["inpaint"].get("seeds") or []
    keys, used_seeds, timings, model = [], [], [], None
    for i, source_key in enumerate(state["inpaint"]["keys"]):
        seed = seeds[i] if i < len(seeds) else p["seed"]
        result = endpoints.invoke_json(
            endpoint,
            {
                "image": layout.s3_uri(out["bucket"], source_key),
                "prompt": p["prompt"],
                "negative_prompt": p["negative_prompt"],
                "steps": p["upscale_steps"],
                "noise_level": p["noise_level"],
                "seed": seed,
            },
        )
        key = layout.upscaled_key(out["prefix"], i)
        data = _response_png(result.get("image"), endpoint=endpoint, field="image")
        storage.put_bytes(out["bucket"], key, data, "image/png")
        keys.append(key)
        used_seeds.append(result.get("seed", seed))
        timings.append(result.get("timings_ms", {}))
        model = result.get("model")
    return {
        "keys": keys,
        "seeds": used_seeds,
        "model": model,
        "timings_ms": timings,
        "elapsed_ms": _elapsed_ms(start),
    }


def failed_step(state: Mapping[str, Any]) -> str:
    """The step that failed: the first one whose result is missing from the state."""
    job = state.get("job") or {}
    order = [("prepare", "job"), ("segment", "segment")]
    if not (state.get("segment") or {}).get("empty"):
        order.append(("inpaint", "inpaint"))
        if job.get("upscale"):
            order.append(("upscale", "upscale"))
    for step, key in order:
        if not state.get(key):
            return step
    return "finalize"


def record_failure(payload: Mapping[str, Any]) -> dict[str, Any]:
    """failures/<job-id>.json plus a notification (SNS) when a topic is configured."""
    state = payload.get("state") or {}
    execution = payload.get("execution")
    settings = Settings.from_env()
    job = state.get("job") or {}
    job_id = job.get("job_id") or fallback_job_id({k: v for k, v in state.items() if k != "error"})
    step = failed_step(state)
    record = report.failure_record(state, job_id, step, execution)
    key = layout.failure_key(settings.failures_prefix, job_id)
    storage.put_json(settings.output_bucket, key, record)
    uri = layout.s3_uri(settings.output_bucket, key)
    publish_event(
        settings,
        "Try-on Job Failed",
        {k: record[k] for k in ("job_id", "step", "error", "cause", "execution")} | {"failure": uri},
    )
    if settings.notification_topic_arn:
        aws.client("sns").publish(
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
