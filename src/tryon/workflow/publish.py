"""Publishing a job's images: from the pending prefix the endpoints write to, to the result prefix.

The endpoints write every image of a job (mask, inpainted, upscaled) under
``pending/<job-id>/`` (:func:`tryon.workflow.layout.pending_prefix`), which no one but the
workflow reads. Only Finalize, after ModerateResults passed the images, copies them to
``results/<name>/<job-id>/`` (:func:`publish`) and deletes the pending copies
(:func:`discard`): a result prefix holds nothing a user can read until the job succeeded, and
a refused or failed job publishes nothing (a lifecycle rule expires what a failure leaves).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tryon.core.errors import RequestError
from tryon.core.s3uri import parse_versioned_s3_uri
from tryon.workflow import layout, storage


def published_key(job: Mapping[str, Any], key: str) -> str:
    """Where a pending image is published: the same file name under the job's result prefix."""
    out = job["output"]
    pending = out["pending_prefix"]
    if not key.startswith(pending):
        raise ValueError(f"{key} is not under the job's pending prefix {pending}")
    return layout.public_key(out, key)


def pending_keys(state: Mapping[str, Any]) -> list[str]:
    """Every image under the job's pending prefix that the state's results name, once, in order.

    The masks (CLIPSeg's, each garment's, an outfit's union, a console's painted one), every
    pass's images, the control images of keep_body and the upscaled ones: what Finalize publishes
    and what a refusal discards. Planned files no step wrote are not named by any result.
    """
    job = state["job"]
    bucket, pending = job["output"]["bucket"], job["output"]["pending_prefix"]
    found: dict[str, None] = {}

    def walk(value: Any) -> None:
        if isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str):
            key = value
            if value.startswith("s3://"):
                try:
                    named, key, _version = parse_versioned_s3_uri(value, field="key")
                except RequestError:
                    return
                if named != bucket:
                    return
            if key.startswith(pending):
                found[key] = None

    for part in ("segment", "inpaint", "upscale"):
        walk(state.get(part))
    for item in job.get("garments") or []:
        walk(item.get("painted"))
    return list(found)


def publish(job: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
    """Copy each pending image to the result prefix (server side); the published keys, in order.

    A retried Finalize finds an image already published and its pending copy gone: that is fine.
    """
    bucket = job["output"]["bucket"]
    published = []
    for key in keys:
        dest = published_key(job, key)
        storage.copy(bucket, key, dest)
        published.append(dest)
    return published


def discard(job: Mapping[str, Any], keys: Sequence[str]) -> None:
    """Delete the pending copies (after publishing, or when the job was refused)."""
    storage.delete_all(job["output"]["bucket"], list(keys))
