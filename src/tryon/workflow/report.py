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


def _uri(bucket: str, key: str | None) -> str | None:
    return f"s3://{bucket}/{key}" if key else None


def garments(state: State) -> list[dict[str, Any]]:
    """Each garment of the job, in pass order: its mask, parameters, seed(s), outputs, timings and cost."""
    job = state["job"]
    bucket = job["output"]["bucket"]
    masks = {m["name"]: m for m in (state.get("segment") or {}).get("garments", [])}
    passes = {p["index"]: p for p in (state.get("inpaint") or {}).get("passes", [])}
    out = []
    for item in job.get("garments") or []:
        mask: Mapping[str, Any] = masks.get(item["name"]) or {}
        done: Mapping[str, Any] = passes.get(item["index"]) or {}
        clipseg = mask.get("clipseg") or None
        clipseg_seconds = float((clipseg or {}).get("compute_seconds") or 0.0)
        painted = item.get("painted")
        out.append(
            {
                "index": item["index"],
                "name": item["name"],
                "garment_class": item["garment_class"],
                "mask_mode": item["mask_mode"],
                "status": "painted" if done else "no-garment-found" if mask.get("empty") else "not-run",
                "mask": {
                    "uri": _uri(bucket, mask.get("mask_key")),
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
                "outputs": [_uri(bucket, key) for key in done.get("keys", [])],
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
        "outputs": dict(uris),
        "timings_ms": steps,
        "cost": cost(state, instance_types or {}),
        # where each garment went and what was painted there, in the order the passes ran
        "outfit": job.get("outfit", False),
        "garments": garments(state),
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
