"""What an execution leaves behind: the manifest and failure records (light: no Pillow)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tryon.workflow.state import State

MANIFEST_VERSION = 1


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
    return {"compute_seconds": round(total, 3), "steps": steps}


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
    return {
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
    }


def failure_record(state: State, job_id: str, step: str, execution: str | None) -> dict[str, Any]:
    """``failures/<job-id>.json``: input, step, error, cause."""
    error = state.get("error") or {}
    cause_text = error.get("Cause", "")
    message = cause_text
    try:
        cause = json.loads(cause_text)
        if isinstance(cause, dict):
            message = cause.get("errorMessage") or cause_text
    except (TypeError, ValueError):
        pass
    job = state.get("job") or {}
    return {
        "status": "failed",
        "job_id": job_id,
        "step": step,
        "error": error.get("Error", "Unknown"),
        "cause": message,
        "input": job.get("input") or state.get("trigger", {k: v for k, v in state.items() if k != "error"}),
        "params": job.get("params"),
        "execution": execution,
        "recorded_at": now_iso(),
    }
