"""What an execution leaves behind: the manifest and failure records (light: no Pillow)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tryon.core import content_policy, timeouts
from tryon.workflow import layout
from tryon.workflow.state import State

MANIFEST_VERSION = 1
#: The Step Functions errors of a Task that ran out of time; they carry no cause of their own.
TIMEOUT_ERRORS = ("States.Timeout", "States.HeartbeatTimeout")


def now_iso() -> str:
    """UTC time in ISO 8601, seconds precision."""
    return datetime.now(UTC).isoformat(timespec="seconds")


#: workflow step -> the endpoint kind it calls
STEP_ENDPOINTS = {"segment": "clipseg", "inpaint": "sd_inpaint", "upscale": "sd_upscale"}


def cost(state: State, instance_types: Mapping[str, str]) -> dict[str, Any]:
    """Per step that ran: its endpoint's compute seconds, serving mode and configured instance type."""
    modes = state["job"].get("modes") or {}
    components = state["job"].get("components") or {}
    steps: dict[str, Any] = {}
    for step, kind in STEP_ENDPOINTS.items():
        part: Mapping[str, Any] = state.get(step) or {}  # type: ignore[assignment]
        if part:
            steps[step] = {
                "endpoint": kind,
                "compute_seconds": part.get("compute_seconds"),
                "mode": modes.get(kind, "realtime"),
                # the shared endpoint's instance type for a component (it has no instance of its own)
                "instance_type": instance_types.get(kind) or None,
            }
            if components.get(kind):
                steps[step]["component"] = components[kind]
    total = sum(part["compute_seconds"] or 0.0 for part in steps.values())
    calls = int((state.get("moderation") or {}).get("calls") or 0)
    return {
        "compute_seconds": round(total, 3),
        "steps": steps,
        # one Amazon Rekognition DetectModerationLabels call per image checked (docs/cost.md)
        "moderation_calls": calls,
    }


def moderation(state: State) -> dict[str, Any]:
    """The manifest's ``moderation``: the stack's settings and policy version, and what each check found.

    Labels only, never an image; a result is named by its file (its pending copy is gone).
    """
    config = dict(state["job"].get("moderation") or {})
    done: Mapping[str, Any] = state.get("moderation") or {}  # type: ignore[assignment]

    def checks(stage: str, keep_uri: bool) -> list[dict[str, Any]] | None:
        found = done.get(stage)
        if found is None:
            return None
        return [{k: v for k, v in c.items() if keep_uri or k != "uri"} for c in found]

    return {
        **config,
        "model_version": done.get("model_version"),
        "calls": int(done.get("calls") or 0),
        "inputs": checks("inputs", True),
        "results": checks("results", False),
        "elapsed_ms": done.get("elapsed_ms") or {},
    }


def _uri(output: Mapping[str, Any], key: str | None) -> str | None:
    return f"s3://{output['bucket']}/{key}" if key else None


def _published(output: Mapping[str, Any], value: Any) -> Any:
    """``value`` with each key or ``s3://`` URI under the job's pending prefix replaced by where
    Finalize published it (the same file name under the result prefix; a URI loses its
    ``versionId``, which named the pending object, not the published copy)."""
    if isinstance(value, Mapping):
        return {k: _published(output, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_published(output, v) for v in value]
    if isinstance(value, str) and output.get("pending_prefix"):
        bucket_uri = f"s3://{output['bucket']}/"
        if value.startswith(bucket_uri):
            key = value[len(bucket_uri) :]
            if key.startswith(output["pending_prefix"]):
                return bucket_uri + layout.public_key(output, key.split("?versionId=")[0])
            return value
        return layout.public_key(output, value)
    return value


def garments(state: State) -> list[dict[str, Any]]:
    """Each garment of the job, in pass order: its mask, parameters, seed(s), outputs, timings and cost."""
    job = state["job"]
    output = job["output"]
    masks = {m["name"]: m for m in (state.get("segment") or {}).get("garments", [])}
    passes = {p["index"]: p for p in (state.get("inpaint") or {}).get("passes", [])}
    out = []
    for item in job.get("garments") or []:
        mask: Mapping[str, Any] = masks.get(item["name"]) or {}
        done: Mapping[str, Any] = passes.get(item["index"]) or {}
        clipseg = mask.get("clipseg") or None
        clipseg_seconds = float((clipseg or {}).get("compute_seconds") or 0.0)
        painted = item.get("painted")  # a console's, stored with the job's images: published (build_manifest)
        out.append(
            {
                "index": item["index"],
                "name": item["name"],
                "garment_class": item["garment_class"],
                "mask_mode": item["mask_mode"],
                "status": "painted" if done else "no-garment-found" if mask.get("empty") else "not-run",
                "mask": {
                    "uri": _uri(output, mask.get("mask_key")),
                    "coverage": mask.get("coverage"),
                    "empty": mask.get("empty"),
                    "box": item["box"],
                    "box_role": item["box_role"],
                    "painted": painted["uri"] if painted else None,
                    "segment": item["segment"],
                    "clipseg": clipseg,
                    "given_up_pixels": mask.get("given_up", 0),
                },
                "params": item["params"],
                "seed": item["params"]["seed"],
                "seeds": done.get("seeds", []),
                "packshot": {**item["packshot"], "used": done.get("packshot")} if item["packshot"] else None,
                "adapter": done.get("adapter"),
                "outputs": [_uri(output, key) for key in done.get("keys", [])],
                "timings_ms": {"inpaint": done.get("elapsed_ms"), "endpoint": done.get("timings_ms")},
                "cost": {
                    "compute_seconds": round(clipseg_seconds + float(done.get("compute_seconds") or 0.0), 3)
                },
            }
        )
    return out


def build_manifest(
    state: State,
    status: str,
    uris: Mapping[str, Any],
    execution: str | None,
    instance_types: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The manifest: job, effective parameters, seeds, all URIs, per-step timings and cost, model ids."""
    job = state["job"]
    segment = state.get("segment") or {}
    inpaint = state.get("inpaint") or {}
    upscale = state.get("upscale") or {}
    steps = {
        name: {"elapsed_ms": part.get("elapsed_ms"), "endpoint_timings_ms": part.get("timings_ms")}
        for name, part in (("segment", segment), ("inpaint", inpaint), ("upscale", upscale))
        if part
    }
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "status": status,
        "job_id": job["job_id"],
        "source": job["source"],
        "preset": job.get("preset"),
        "execution": execution,
        "created_at": now_iso(),
        "input": job["input"],
        "params": job["params"],
        "upscale": job["upscale"],
        # the upscaler's mode and Prepare's time estimate against its limit (None without upscaling)
        "upscale_plan": job.get("upscale_plan"),
        "ignored_metadata": job.get("ignored_metadata", []),
        "seeds": inpaint.get("seeds", []),
        "coverage": segment.get("coverage"),
        "scores": segment.get("scores"),
        "models": {
            "clipseg": segment.get("model"),
            "inpaint": inpaint.get("model"),
            "upscale": upscale.get("model"),
        },
        "endpoints": job["endpoints"],
        # the shared layout's inference components each kind was called through (None: its own endpoint)
        "components": job.get("components") or {},
        "adapter": inpaint.get("adapter"),
        # the packshot Prepare checked, and what the endpoint did with it (IP-Adapter, scale)
        "garment": {**job["garment"], "used": inpaint.get("garment")} if job.get("garment") else None,
        # the SDXL refiner pass the endpoint ran ({"steps", "strength"}), None when it ran none
        "refiner": inpaint.get("refiner"),
        # keep_body: the controls used (scale, start, end, estimator) and their control images, else None
        "controls": inpaint.get("controls"),
        "outputs": dict(uris),
        "timings_ms": steps,
        "cost": cost(state, instance_types or {}),
        # on or off (and why), the policy version, categories, minimum confidence, each check's labels
        "moderation": moderation(state),
        # where each garment went and what was painted there, in the order the passes ran
        "outfit": job.get("outfit", False),
        "garments": garments(state),
    }
    # every key or URI of the job's pending prefix in it (endpoints' reports) as published
    return _published(job["output"], manifest)


def timeout_cause(state: State, step: str, error: str, *, async_errors: str, dead_letters: str) -> str:
    """What a Task that ran out of time waited for, how long, and what to check (Step Functions says nothing).

    ``async_errors`` is where the asynchronous endpoints write their failures (their
    ``S3FailurePath``), ``dead_letters`` the queue that keeps notifications CompleteAsync could
    not handle.
    """
    job = state.get("job") or {}
    kind = STEP_ENDPOINTS.get(step)
    endpoint = (job.get("endpoints") or {}).get(kind or "") or ""
    wait = (job.get("async_waits") or {}).get(step) or {}
    if kind and (job.get("modes") or {}).get(kind) == "async" and wait:
        heartbeat, limit = wait.get("heartbeat_seconds"), wait.get("timeout_seconds")
        waited = (
            f"within {heartbeat} s (the step's heartbeat: AsyncInvocationTimeoutSeconds + AsyncGraceSeconds)"
            if error == "States.HeartbeatTimeout"
            else f"within {limit} s (the step's time-out: {heartbeat} s per request and a grace)"
        )
        where = f" and its on-failure queue {dead_letters}" if dead_letters else ""
        return (
            f"no notification from the asynchronous {kind} endpoint {endpoint} arrived {waited}. Check the "
            f"endpoint's failure path {async_errors}, the SNS topic's deliveries to CompleteAsync{where}, "
            f"and the endpoint's CloudWatch logs (/aws/sagemaker/Endpoints/{endpoint})"
        )
    function = f"{step.capitalize()}Function"
    if function in timeouts.FUNCTION_TIMEOUTS:
        limit, runs = timeouts.task_timeout(function), timeouts.FUNCTION_TIMEOUTS[function]
        return (
            f"the {step} step ran past its TimeoutSeconds ({limit} s; its function may run {runs} s): "
            "see the function's CloudWatch logs"
            + (f" and the endpoint {endpoint}'s (/aws/sagemaker/Endpoints/{endpoint})" if endpoint else "")
        )
    return f"the {step} step ran out of time ({error})"


def error_message(state: State) -> tuple[str, dict[str, Any] | None]:
    """(the error's message, a content refusal's details or None) from the ``Catch``'s error."""
    cause_text = (state.get("error") or {}).get("Cause", "")
    message = cause_text
    try:
        cause = json.loads(cause_text)
        if isinstance(cause, dict):
            message = cause.get("errorMessage") or cause_text
    except (TypeError, ValueError):
        pass
    return content_policy.parse_error_message(message)


def failure_record(
    state: State, job_id: str, step: str, execution: str | None, *, cause: str | None = None
) -> dict[str, Any]:
    """``failures/<job-id>.json``: input, step, error, cause (``cause`` replaces an empty one).

    A refusal of the content policy (error ``ContentRefused``) is recorded with status
    ``refused`` and its stage (``prompt``, ``input``, ``output``), field, the blocking labels
    with their confidences, the policy version and where refused results were quarantined:
    never an image.
    """
    error = state.get("error") or {}
    message, refusal = error_message(state)
    job = state.get("job") or {}
    record = {
        "status": "failed",
        "job_id": job_id,
        "step": step,
        "error": error.get("Error", "Unknown"),
        "cause": message or cause or "",
        "input": job.get("input") or state.get("trigger", {k: v for k, v in state.items() if k != "error"}),
        "params": job.get("params"),
        "execution": execution,
        "recorded_at": now_iso(),
    }
    if refusal is not None:
        record |= {
            "status": "refused",
            "stage": refusal.get("stage"),
            "field": refusal.get("field"),
            "categories": refusal.get("categories", []),
            "policy_version": refusal.get("policy_version"),
            "quarantine": [
                image["quarantine"] for image in refusal.get("images", []) if "quarantine" in image
            ],
            "moderation": job.get("moderation"),
        }
    return record
