"""Where things live in S3 (one home for every key the workflow reads or writes)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from tryon.core.s3uri import s3_uri as s3_uri  # URIs of the keys below: one formatter (tryon.core.s3uri)

#: File stems the endpoints are asked to write under the result prefix (``output_name``): the
#: mask is ``mask.png``, the inpainting endpoint numbers its images (``inpainted-<i>.png``).
MASK_STEM = "mask"
INPAINTED_STEM = "inpainted"
UPSCALED_STEM = "upscaled"
MASK = f"{MASK_STEM}.png"
#: When the workflow composes a garment's mask (box, painted mask, keep-regions, outfit), CLIPSeg
#: writes its own mask as ``clipseg[-<garment>].png`` (the garment) or ``keep[-<garment>].png`` (only
#: its keep-regions), and a console's base64 mask is stored as ``painted[-<garment>].png``.
CLIPSEG_STEM = "clipseg"
KEEP_STEM = "keep"
PAINTED_STEM = "painted"
MANIFEST = "manifest.json"
PREVIEW = "preview.jpg"

_UNSAFE = re.compile(r"[^A-Za-z0-9._/-]+")


def result_name(key: str, input_prefix: str) -> str:
    """The upload's name under the input prefix, without its suffix (``inputs/a/b.jpg`` -> ``a/b``)."""
    rel = key[len(input_prefix) :] if input_prefix and key.startswith(input_prefix) else key
    stem = str(PurePosixPath(rel).with_suffix("")) if PurePosixPath(rel).suffix else rel
    safe = _UNSAFE.sub("_", stem).strip("/")
    safe = re.sub(r"/{2,}", "/", safe).replace("..", "_")
    return safe or "input"


def result_prefix(results_prefix: str, name: str, job_id: str) -> str:
    """``results/<name>/<job-id>/``."""
    return f"{results_prefix}{name}/{job_id}/"


def pending_prefix(pending: str, job_id: str) -> str:
    """``pending/<job-id>/``: where the endpoints write a job's images until Finalize publishes them."""
    return f"{pending}{job_id}/"


def file_name(key: str) -> str:
    """The last part of a key (``pending/<job-id>/inpainted-0.png`` -> ``inpainted-0.png``)."""
    return key.rpartition("/")[2]


def quarantine_key(quarantine_prefix: str, job_id: str, key: str) -> str:
    """``quarantine/<job-id>/<file>``: a refused result image, readable only by the operator role."""
    return f"{quarantine_prefix}{job_id}/{file_name(key)}"


def garment_stem(stem: str, garment: str) -> str:
    """A garment's file stem: ``mask-upper-body`` in an outfit; ``mask`` for a job that is no outfit."""
    return f"{stem}-{garment}" if garment else stem


def png(prefix: str, stem: str) -> str:
    """``<prefix><stem>.png``."""
    return f"{prefix}{stem}.png"


def upscaled_stem(index: int) -> str:
    """``upscaled-<i>``: the upscaler takes one image a call, so the workflow numbers them."""
    return f"{UPSCALED_STEM}-{index}"


def failure_key(failures_prefix: str, job_id: str) -> str:
    """``failures/<job-id>.json``."""
    return f"{failures_prefix}{job_id}.json"


#: Under the asynchronous prefix (template parameter ``AsyncPrefix``): the requests the steps
#: write, and the endpoints' answers (``S3OutputPath``) and errors (``S3FailurePath``).
ASYNC_REQUESTS = "requests/"
ASYNC_OUTPUTS = "outputs/"
ASYNC_ERRORS = "errors/"


#: Under the results prefix: the catalogue batches' reports (``<ResultsPrefix>batches/<batch-id>/``)
#: and, below them, the Distributed Map's ResultWriter files (``.../batches/map-runs/``).
BATCH_REPORTS = "batches/"
MAP_RUNS = "map-runs"


def async_request_key(async_prefix: str, job_id: str, inference_id: str) -> str:
    """``async/requests/<job-id>/<inference-id>.json``: one asynchronous request's JSON body."""
    return f"{async_prefix}{ASYNC_REQUESTS}{job_id}/{inference_id}.json"


def public_key(output: Mapping[str, Any], key: str) -> str:
    """Where a key of the job's pending prefix is published (the same file name under its result
    prefix); any other key as it is. ``output`` is the job's ``output``."""
    pending = output.get("pending_prefix") or ""
    return output["prefix"] + key[len(pending) :] if pending and key.startswith(pending) else key
