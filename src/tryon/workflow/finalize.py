"""Finalize: the images published, preview.jpg (input | garment | mask overlay | controls |
result) and manifest.json (Pillow)."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from tryon.core import imaging
from tryon.core.s3uri import s3_uri
from tryon.workflow import claim, garment, layout, preview, publish, report, storage
from tryon.workflow.settings import Settings
from tryon.workflow.state import Envelope, FinalResult
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
    panels = [source]
    if job.get("garment"):  # input | garment | mask | result
        uris["garment"] = job["garment"]["uri"]
        panels.append(preview.garment_panel(garment.read_image(job["garment"], settings), source.size))
    # The endpoints wrote under the pending prefix; ModerateResults passed what is there: publish it
    # (the control images of keep_body are the photo's depth and pose, drawn: published with them).
    inpaint_part = state.get("inpaint") or {}
    mask_pending = [k for k in [(state.get("segment") or {}).get("mask_key")] if k]
    controls_pending = _control_keys(inpaint_part.get("controls"))
    inpainted_pending = inpaint_part.get("keys", [])
    upscaled_pending = (state.get("upscale") or {}).get("keys", [])
    pending = [*mask_pending, *controls_pending.values(), *inpainted_pending, *upscaled_pending]
    published = dict(zip(pending, publish.publish(job, pending), strict=True))
    if mask_pending:
        mask_key = published[mask_pending[0]]
        uris["mask"] = s3_uri(out["bucket"], mask_key)
        panels.append(preview.mask_overlay(source, _read_image(out["bucket"], mask_key)))
    controls = {name: published[key] for name, key in controls_pending.items()}
    if controls:  # keep_body: what the model was told, lined up with the photo
        uris["controls"] = {name: s3_uri(out["bucket"], key) for name, key in controls.items()}
        panels += [
            preview.control_panel(_read_image(out["bucket"], key), inpaint_part.get("crop_box"), source.size)
            for key in controls.values()
        ]
    inpainted = [published[k] for k in inpainted_pending]
    upscaled = [published[k] for k in upscaled_pending]
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
