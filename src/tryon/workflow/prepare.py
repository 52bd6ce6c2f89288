"""Prepare: the trigger (S3 event or console input) -> a validated job, or an existing result."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from tryon.core import imaging
from tryon.core.s3uri import s3_uri
from tryon.workflow import claim, layout, storage
from tryon.workflow.job import build_job
from tryon.workflow.settings import Settings
from tryon.workflow.state import Prepared
from tryon.workflow.step_errors import as_step_errors

#: Manifest statuses that mark a result complete (the models need not run again).
COMPLETE_STATUSES = ("succeeded", "no-garment-found")


def within_handler_limits(settings: Settings) -> Settings:
    """Upload limits capped at what the endpoints' handlers accept (:mod:`tryon.core.imaging`'s).

    One limit: an upload Prepare accepts is never refused by an endpoint for its size.
    template.yaml caps MaxInputBytes/MaxInputPixels the same way.
    """
    return dataclasses.replace(
        settings,
        max_input_bytes=min(settings.max_input_bytes, imaging.DEFAULT_MAX_BYTES),
        max_input_pixels=min(settings.max_input_pixels, imaging.DEFAULT_MAX_PIXELS),
    )


def complete_manifest(bucket: str, prefix: str) -> str | None:
    """The URI of a complete manifest under ``prefix``, else None."""
    key = prefix + layout.MANIFEST
    existing = storage.get_json(bucket, key)
    if isinstance(existing, dict) and existing.get("status") in COMPLETE_STATUSES:
        return s3_uri(bucket, key)
    return None


@as_step_errors
def prepare(event: Mapping[str, Any], *, execution: str | None = None) -> Prepared:
    """Validate the trigger into a job; report an existing complete result or a running one.

    With ``execution`` (the state machine passes its execution id) the job is claimed for it
    (:mod:`tryon.workflow.claim`): a second execution of the same job started while the first
    runs gets ``running: true`` and the holder's id, and calls no model.
    """
    settings = within_handler_limits(Settings.from_env())
    job = build_job(settings, event)
    bucket, prefix = settings.output_bucket, job["output"]["prefix"]
    manifest_uri = s3_uri(bucket, prefix + layout.MANIFEST)
    # no mask and no pass yet: the Choices read $.segment.composed and $.inpaint.done, which
    # always exist (a Choice on a missing path is an error), and Inpaint runs one pass per entry
    result: Prepared = {
        "job": job,
        "complete": False,
        "running": False,
        "manifest": None,
        "segment": {"composed": False},
        "inpaint": {"passes": [], "done": False},
    }
    if complete_manifest(bucket, prefix):
        return result | {"complete": True, "manifest": manifest_uri}
    if execution is None:
        return result
    held = claim.acquire(
        bucket, prefix, execution, hold_seconds=settings.claim_seconds, is_running=claim.execution_is_running
    )
    if not held.acquired:
        return result | {"running": True, "claimed_by": held.holder, "manifest": manifest_uri}
    if complete_manifest(bucket, prefix):
        # Finished (and released) between our first look and our claim: nothing to run.
        claim.release(bucket, prefix, execution)
        return result | {"complete": True, "manifest": manifest_uri}
    if held.took_over:
        result["took_over_claim_of"] = held.took_over
    return result


def prepare_step(payload: Mapping[str, Any]) -> Prepared:
    """The Prepare task's entry: ``{"trigger": <execution input>, "execution": <execution id>}``."""
    return prepare(payload["trigger"], execution=payload.get("execution"))
