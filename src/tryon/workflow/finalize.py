"""Finalize: the images published, preview.jpg (input | each garment's packshot and mask |
controls | result) and manifest.json (Pillow)."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from tryon.core import imaging
from tryon.core.s3uri import s3_uri
from tryon.workflow import claim, garment, layout, preview, publish, report, storage
from tryon.workflow.settings import Settings
from tryon.workflow.state import Envelope, FinalResult, State
from tryon.workflow.step_errors import as_step_errors
from tryon.workflow.steps import announce, publish_event

#: Largest image read back from S3 (results are PNGs of at most 4x the input).
MAX_RESULT_BYTES = 256 * 1024 * 1024


def _read_image(bucket: str, key: str) -> Image.Image:
    data = storage.get_bytes(bucket, key, max_bytes=MAX_RESULT_BYTES, field=key)
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.copy()


def _control_keys(controls: Any) -> dict[str, str]:
    """Control name -> key of the control image the inpainting endpoint wrote (keep_body), in its order."""
    if not isinstance(controls, dict):
        return {}
    return {
        name: part["output"]["key"]
        for name, part in controls.items()
        if isinstance(part, dict) and isinstance(part.get("output"), dict) and "key" in part["output"]
    }


def _garment_panels(state: State, source: Image.Image, settings: Settings) -> list[Image.Image]:
    """Each garment's packshot (if it has one) and mask overlay, in pass order (preview panels)."""
    job = state["job"]
    bucket = job["output"]["bucket"]
    masks = {  # published by now
        m["name"]: layout.public_key(job["output"], m["mask_key"])
        for m in (state.get("segment") or {}).get("garments", [])
    }
    panels = []
    for item in job.get("garments") or []:
        if item["packshot"]:
            panels.append(preview.garment_panel(garment.read_image(item["packshot"], settings), source.size))
        if item["name"] in masks:
            panels.append(preview.mask_overlay(source, _read_image(bucket, masks[item["name"]])))
    return panels


@as_step_errors
def finalize(payload: Envelope) -> FinalResult:
    """Publish the pending images, write preview.jpg and manifest.json (last: it marks the job complete)."""
    state = payload["state"]
    execution = payload.get("execution")
    job = state["job"]
    out = job["output"]
    status = state.get("status") or "succeeded"
    settings = Settings.from_env()
    inp = job["input"]
    source = imaging.decode_image(
        storage.get_bytes(
            inp["bucket"],
            inp["key"],
            max_bytes=settings.max_input_bytes,
            field="image",
            version_id=inp["version_id"],
        ),
        max_bytes=settings.max_input_bytes,
        max_pixels=settings.max_input_pixels,
    )
    uris: dict[str, Any] = {"input": inp["uri"], "prefix": s3_uri(out["bucket"], out["prefix"])}
    if job.get("garment"):
        uris["garment"] = job["garment"]["uri"]
    # The endpoints (and Masks) wrote under the pending prefix; ModerateResults passed what is
    # there: publish all of it (masks, every pass, keep_body's control images, upscaled images).
    pending = publish.pending_keys(state)
    publish.publish(job, pending)

    def public(key: str) -> str:
        return layout.public_key(out, key)

    panels = [source, *_garment_panels(state, source, settings)]
    segment_part = state.get("segment") or {}
    if segment_part.get("mask_key"):
        uris["mask"] = s3_uri(out["bucket"], public(segment_part["mask_key"]))
    if job.get("outfit"):
        uris["masks"] = {
            m["name"]: s3_uri(out["bucket"], public(m["mask_key"])) for m in segment_part["garments"]
        }
    inpaint_part = state.get("inpaint") or {}
    controls = {name: public(key) for name, key in _control_keys(inpaint_part.get("controls")).items()}
    if controls:  # keep_body: what the model was told, lined up with the photo
        uris["controls"] = {name: s3_uri(out["bucket"], key) for name, key in controls.items()}
        panels += [
            preview.control_panel(_read_image(out["bucket"], key), inpaint_part.get("crop_box"), source.size)
            for key in controls.values()
        ]
    inpainted = [public(k) for k in inpaint_part.get("keys", [])]
    upscaled = [public(k) for k in (state.get("upscale") or {}).get("keys", [])]
    uris["inpainted"] = [s3_uri(out["bucket"], k) for k in inpainted]
    uris["upscaled"] = [s3_uri(out["bucket"], k) for k in upscaled]
    final = upscaled or inpainted
    if final:
        panels.append(_read_image(out["bucket"], final[0]))
    preview_key = out["prefix"] + layout.PREVIEW
    storage.put_bytes(
        out["bucket"], preview_key, imaging.encode_jpeg(preview.compose_preview(panels)), "image/jpeg"
    )
    uris["preview"] = s3_uri(out["bucket"], preview_key)
    publish.discard(job, pending)
    manifest_key = out["prefix"] + layout.MANIFEST
    uris["manifest"] = s3_uri(out["bucket"], manifest_key)
    manifest = report.build_manifest(state, status, uris, execution, dict(settings.instance_types))
    storage.put_json(out["bucket"], manifest_key, manifest)
    claim.release_for(job, execution)  # the manifest now marks the job complete
    result: FinalResult = {
        "status": status,
        "job_id": job["job_id"],
        "manifest": uris["manifest"],
        "preview": uris["preview"],
    }
    announce(
        "the Try-on Job Completed event",
        lambda: publish_event(
            settings, "Try-on Job Completed", {**result, "input": inp["uri"], "execution": execution}
        ),
    )
    return result
