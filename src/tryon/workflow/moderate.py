"""Moderate: the job's images through Amazon Rekognition, before any model runs and before any
result is published (Pillow).

One function, two states of the state machine (docs/responsible-use.md):

- ``ModerateInputs`` (right after Prepare): the photo and the garment's packshot, if any. A
  refused input ends the job before any endpoint is called.
- ``ModerateResults`` (before Finalize): every image the endpoints wrote (``inpainted-<i>``,
  ``upscaled-<i>``), still under the job's pending prefix, which no one but the workflow reads.
  A refused image is copied to the quarantine prefix (readable only by the operator role), the
  job's pending images are deleted and nothing reaches the results prefix. Images that pass
  stay where they are; Finalize publishes them.

Each image is one ``DetectModerationLabels`` call with the image's bytes (calls run
concurrently). Rekognition takes JPEG and PNG of at most 5 MB with sides of 80 to 10,000
pixels; anything else (WebP, a tiny or a huge image) is converted first
(:func:`rekognition_image`). Labels are judged by :func:`tryon.core.content_policy.blocking_labels`
against the settings Prepare recorded in the job. A refusal is raised as
:class:`~tryon.workflow.step_errors.ContentRefused`; the failure recorder writes it down.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tryon.core import content_policy, imaging
from tryon.core.content_policy import Label, ModerationConfig
from tryon.core.errors import RequestError
from tryon.core.s3uri import s3_uri
from tryon.workflow import clients, layout, publish, storage
from tryon.workflow.settings import Settings
from tryon.workflow.state import CheckedImage, Job, ModerateInput, ModerateResultsInput, ModerationResult
from tryon.workflow.step_errors import ContentRefused, ModerationFailed, ModerationUnavailable, as_step_errors

#: Rekognition Image limits (docs: "Guidelines and quotas in Amazon Rekognition").
MAX_BYTES = 5 * 1024 * 1024
MIN_SIDE = 80
MAX_SIDE = 10_000
FORMATS = ("JPEG", "PNG")
#: The longest side of an image converted for the check (plenty for moderation, ~1 MB as JPEG).
CONVERTED_MAX_SIDE = 2048
CONVERTED_QUALITY = 90
#: Largest result image read back (results are PNGs of at most 4x the input).
MAX_RESULT_BYTES = 256 * 1024 * 1024
#: Images checked at once (one Rekognition call each).
THREADS = 8
#: Rekognition error codes worth a retry.
TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "InternalServerError",
        "ServiceUnavailable",
    }
)


@dataclass(frozen=True)
class Sent:
    """What was sent to Rekognition for one image: the original bytes, or a converted JPEG."""

    format: str
    width: int
    height: int
    bytes: int
    converted: bool


def rekognition_image(data: bytes, *, field: str, max_bytes: int) -> tuple[bytes, Sent]:
    """The bytes Rekognition accepts for ``data``: the image itself when it can take it, else a JPEG.

    JPEG and PNG within 5 MB and 80..10,000 px per side go as they are (what the user uploaded
    is what is checked). Anything else is decoded (EXIF orientation applied), scaled so its
    longest side is at most 2048 px and its shortest at least 80 px, and sent as JPEG.
    """
    header = imaging.read_header(data, field=field, max_bytes=max_bytes, max_pixels=10**9)
    sides = (header.width, header.height)
    if (
        header.format in FORMATS
        and len(data) <= MAX_BYTES
        and min(sides) >= MIN_SIDE
        and max(sides) <= MAX_SIDE
    ):
        return data, Sent(header.format, header.width, header.height, len(data), False)
    from PIL import Image

    img = imaging.to_rgb(imaging.decode_image(data, field=field, max_bytes=max_bytes, max_pixels=10**9))
    scale = min(1.0, CONVERTED_MAX_SIDE / max(img.size))
    scale = max(scale, MIN_SIDE / min(img.size))
    size = (max(MIN_SIDE, round(img.width * scale)), max(MIN_SIDE, round(img.height * scale)))
    if max(size) > MAX_SIDE:
        raise RequestError(
            field,
            f"is {img.width}x{img.height} px: no scaling fits Rekognition's 80..10000 px per side "
            "(an aspect ratio above 125:1); upload a less elongated image",
        )
    if size != img.size:
        img = img.resize(size, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC)
    encoded = imaging.encode_jpeg(img, quality=CONVERTED_QUALITY)
    return encoded, Sent("JPEG", img.width, img.height, len(encoded), True)


def detect(image: bytes, min_confidence: float) -> tuple[list[Label], str | None]:
    """One ``DetectModerationLabels`` call: the labels at or above ``min_confidence``, the model version."""
    try:
        answer = clients.client("rekognition").detect_moderation_labels(
            Image={"Bytes": image}, MinConfidence=min_confidence
        )
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, status = (
            error.get("Code", ""),
            exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0),
        )
        text = (
            f"Amazon Rekognition DetectModerationLabels answered {code or status}: {error.get('Message', '')}"
        )
        if code in TRANSIENT_CODES or status >= 500:
            raise ModerationUnavailable(text) from exc
        raise ModerationFailed(text) from exc
    except BotoCoreError as exc:
        raise ModerationUnavailable(f"Amazon Rekognition DetectModerationLabels: {exc}") from exc
    labels = [Label.from_rekognition(label) for label in answer.get("ModerationLabels", [])]
    return labels, answer.get("ModerationModelVersion")


@dataclass(frozen=True)
class Check:
    """What one image's check found."""

    field: str
    bucket: str
    key: str
    labels: list[Label]
    blocking: list[Label]
    model_version: str | None
    sent: Sent
    elapsed_ms: float

    def record(self) -> CheckedImage:
        """The check as the state (and the manifest) carry it: labels, never the image."""
        return {
            "field": self.field,
            "uri": s3_uri(self.bucket, self.key),
            "labels": [label.as_dict() for label in self.labels],
            "blocked": [label.as_dict() for label in self.blocking],
            "sent": asdict(self.sent),
            "elapsed_ms": self.elapsed_ms,
        }


@dataclass(frozen=True)
class ToCheck:
    """One image to check: the field (or file) it is, and the object version to read."""

    field: str
    bucket: str
    key: str
    version_id: str | None
    max_bytes: int


def check_image(image: ToCheck, config: ModerationConfig) -> Check:
    """Read one image, send it to Rekognition, judge its labels."""
    start = time.perf_counter()
    data = storage.get_bytes(
        image.bucket, image.key, max_bytes=image.max_bytes, field=image.field, version_id=image.version_id
    )
    payload, sent = rekognition_image(data, field=image.field, max_bytes=image.max_bytes)
    labels, model_version = detect(payload, config.min_confidence)
    blocking = content_policy.blocking_labels(labels, config)
    elapsed = round((time.perf_counter() - start) * 1000.0, 1)
    return Check(image.field, image.bucket, image.key, labels, blocking, model_version, sent, elapsed)


def check_all(images: list[ToCheck], config: ModerationConfig) -> list[Check]:
    """Every image checked, concurrently (one call each), in the order given."""
    if not images:
        return []
    clients.client("s3"), clients.client("rekognition")  # made once, shared by the threads
    with ThreadPoolExecutor(max_workers=min(THREADS, len(images))) as pool:
        return list(pool.map(lambda image: check_image(image, config), images))


def describe(labels: list[Label]) -> str:
    """``Explicit Nudity 97.1% (under Explicit)``, for messages."""
    parts = []
    for label in labels:
        parents = content_policy.ancestors(label.name, label.parent)
        parts.append(f"{label.name} {label.confidence:g}%" + (f" (under {parents[-1]})" if parents else ""))
    return ", ".join(parts)


def blocked_by(config: ModerationConfig) -> str:
    """``blocked by this stack's moderation (categories ...; minimum confidence 50)``."""
    return (
        f"blocked by this stack's moderation (categories {', '.join(config.categories)}; "
        f"minimum confidence {config.min_confidence:g})"
    )


def _config(job: Job) -> ModerationConfig:
    return ModerationConfig.from_dict(job["moderation"])


def _off() -> ModerationResult:
    return {
        "enabled": False,
        "model_version": None,
        "calls": 0,
        "inputs": None,
        "results": None,
        "elapsed_ms": {},
    }


def moderate_inputs(job: Job) -> ModerationResult:
    """The photo and the packshot, before any model runs (ContentRefused at stage ``input``)."""
    config = _config(job)
    if not config.enabled:
        return _off()
    settings = Settings.from_env()
    start = time.perf_counter()
    inp = job["input"]
    images = [ToCheck("image", inp["bucket"], inp["key"], inp["version_id"], settings.max_input_bytes)]
    garment = job.get("garment")
    if garment:
        images.append(
            ToCheck(
                "garment_image",
                garment["bucket"],
                garment["key"],
                garment["version_id"],
                settings.max_input_bytes,
            )
        )
    checks = check_all(images, config)
    refused = [check for check in checks if check.blocking]
    if refused:
        first = refused[0]
        what = "the photo" if first.field == "image" else "the garment image"
        raise ContentRefused.from_refusal(
            content_policy.ContentRefused(
                first.field,
                f"{what} {s3_uri(first.bucket, first.key)} shows {describe(first.blocking)}, "
                f"{blocked_by(config)}; no model ran",
                stage="input",
                labels=[label for check in refused for label in check.blocking],
                images=[{"field": c.field, "uri": s3_uri(c.bucket, c.key)} for c in refused],
                policy_version=config.policy_version,
            )
        )
    return {
        "enabled": True,
        "model_version": next((c.model_version for c in checks if c.model_version), None),
        "calls": len(checks),
        "inputs": [check.record() for check in checks],
        "results": None,
        "elapsed_ms": {"inputs": round((time.perf_counter() - start) * 1000.0, 1)},
    }


def result_keys(state: Mapping[str, Any]) -> list[str]:
    """The images of the person the endpoints made for the job (pending), in the manifest's order:
    every pass of an outfit (each is published), then the upscaled ones."""
    inpaint = state.get("inpaint") or {}
    upscale = state.get("upscale") or {}
    passes = [key for done in inpaint.get("passes") or [] for key in done.get("keys", [])]
    return list(dict.fromkeys([*passes, *inpaint.get("keys", []), *upscale.get("keys", [])]))


def quarantine(job: Job, refused: list[Check], settings: Settings) -> list[dict[str, Any]]:
    """Copy the refused images to the quarantine prefix; what the refusal records of each."""
    out = job["output"]
    records = []
    for check in refused:
        dest = layout.quarantine_key(settings.quarantine_prefix, job["job_id"], check.key)
        storage.copy(out["bucket"], check.key, dest)
        records.append(
            {
                "name": layout.file_name(check.key),
                "quarantine": s3_uri(out["bucket"], dest),
                "categories": [label.as_dict() for label in check.blocking],
            }
        )
    return records


def moderate_results(state: Mapping[str, Any]) -> ModerationResult:
    """Every result image before it is published (ContentRefused at stage ``output``)."""
    job: Job = state["job"]
    done: ModerationResult = state.get("moderation") or _off()
    config = _config(job)
    if not config.enabled:
        return {**done, "results": None}
    settings = Settings.from_env()
    start = time.perf_counter()
    out = job["output"]
    keys = result_keys(state)
    images = [ToCheck(layout.file_name(key), out["bucket"], key, None, MAX_RESULT_BYTES) for key in keys]
    checks = check_all(images, config)
    refused = [check for check in checks if check.blocking]
    if refused:
        quarantined = quarantine(job, refused, settings)
        # nothing of the job is published: every pending image goes (masks and controls too)
        storage.delete_all(out["bucket"], list(dict.fromkeys([*keys, *publish.pending_keys(state)])))
        first = refused[0]
        raise ContentRefused.from_refusal(
            content_policy.ContentRefused(
                first.field,
                f"the result shows {describe(first.blocking)}, {blocked_by(config)}; "
                f"{len(refused)} of {len(checks)} image(s) quarantined under "
                f"{s3_uri(out['bucket'], settings.quarantine_prefix + job['job_id'] + '/')} "
                "(operator role only), nothing published",
                stage="output",
                labels=[label for check in refused for label in check.blocking],
                images=quarantined,
                policy_version=config.policy_version,
            )
        )
    elapsed = dict(done.get("elapsed_ms") or {})
    elapsed["results"] = round((time.perf_counter() - start) * 1000.0, 1)
    return {
        **done,
        "model_version": done.get("model_version")
        or next((c.model_version for c in checks if c.model_version), None),
        "calls": int(done.get("calls") or 0) + len(checks),
        "results": [check.record() for check in checks],
        "elapsed_ms": elapsed,
    }


@as_step_errors
def moderate(payload: ModerateInput | ModerateResultsInput) -> ModerationResult:
    """The Moderate function: ``{"stage": "input", "job": ...}`` or ``{"stage": "output", "state": ...}``."""
    if payload.get("stage") == "input":
        return moderate_inputs(payload["job"])  # type: ignore[typeddict-item]
    if payload.get("stage") == "output":
        return moderate_results(payload["state"])  # type: ignore[typeddict-item]
    raise ValueError(f"stage must be 'input' or 'output', got {payload.get('stage')!r}")
