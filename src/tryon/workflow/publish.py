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

from tryon.workflow import storage


def published_key(job: Mapping[str, Any], key: str) -> str:
    """Where a pending image is published: the same file name under the job's result prefix."""
    out = job["output"]
    pending = out["pending_prefix"]
    if not key.startswith(pending):
        raise ValueError(f"{key} is not under the job's pending prefix {pending}")
    return out["prefix"] + key[len(pending) :]


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
