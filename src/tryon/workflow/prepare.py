"""Prepare: the trigger (S3 event or console input) -> a validated job, or an existing result."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from tryon import imaging
from tryon.workflow import layout, storage
from tryon.workflow.config import Settings
from tryon.workflow.errors import as_step_errors
from tryon.workflow.job import build_job

#: Manifest statuses that mark a result complete (the models need not run again).
COMPLETE_STATUSES = ("succeeded", "no-garment-found")


def within_handler_limits(settings: Settings) -> Settings:
    """Upload limits capped at what the endpoints' handlers accept (:mod:`tryon.imaging`'s).

    One limit: an upload Prepare accepts is never refused by an endpoint for its size.
    template.yaml caps MaxInputBytes/MaxInputPixels the same way.
    """
    return dataclasses.replace(
        settings,
        max_input_bytes=min(settings.max_input_bytes, imaging.DEFAULT_MAX_BYTES),
        max_input_pixels=min(settings.max_input_pixels, imaging.DEFAULT_MAX_PIXELS),
    )


@as_step_errors
def prepare(event: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the trigger into a job; report an existing complete result (idempotency)."""
    settings = within_handler_limits(Settings.from_env())
    job = build_job(settings, event)
    manifest_key = job["output"]["prefix"] + layout.MANIFEST
    existing = storage.get_json(settings.output_bucket, manifest_key)
    complete = isinstance(existing, dict) and existing.get("status") in COMPLETE_STATUSES
    return {
        "job": job,
        "complete": complete,
        "manifest": layout.s3_uri(settings.output_bucket, manifest_key) if complete else None,
    }
