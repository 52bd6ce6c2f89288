"""Turning moderation off takes the explicit template parameter and a reason, and every manifest
records it; a safe job's result is the same image with moderation on or off (local stack)."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from support.workflow import failure_of

from tryon.core import content_policy
from tryon.local import LocalWorkflow
from tryon.local.samples import sample_photo

pytestmark = pytest.mark.slow

FAST = {"DefaultSteps": 1, "DefaultThreshold": 0.0, "DefaultNegativeQueries": ""}
OFF = {"ContentModeration": "off"}
REASON = "catalogue photos shot in our studio, reviewed before upload (trust & safety, ticket 42)"
SKIN = (224, 172, 105)


def skin_photo() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (96, 128), SKIN).save(buf, "PNG")
    return buf.getvalue()


def inpainted(wf, key: str, seed: int) -> tuple[dict, bytes]:
    """Run the photo at ``key`` with ``seed``; its manifest and its first result image."""
    result = wf.run({"image": f"s3://{wf.input_bucket}/{key}", "seed": seed}, timeout=180)
    assert result.succeeded and result.output["status"] == "succeeded", (result.error, result.cause)
    manifest = wf.read_json(result.output["manifest"])
    return manifest, wf.read_bytes(manifest["outputs"]["inpainted"][0])


def test_moderation_off_needs_the_parameter_and_a_reason_and_is_recorded(tiny_models, one_torch_thread):
    models = {"clipseg": tiny_models["clipseg"], "sd_inpaint": tiny_models["sd-inpaint"]}
    # Off without a reason: CloudFormation refuses the stack (template Rules); locally Prepare
    # refuses every job naming the missing parameter, before any model (none is even served here).
    with LocalWorkflow(endpoint_url="http://127.0.0.1:9", parameters={**FAST, **OFF}, upscale=False) as wf:
        key = wf.upload(skin_photo(), "inputs/off/skin.png")["key"]
        record = failure_of(wf, wf.run(key=key, timeout=120))
        assert record["error"] == "InvalidInput" and record["step"] == "prepare"
        assert record["cause"].startswith(
            "ContentModerationOffReason: is required when ContentModeration is off"
        )

    with LocalWorkflow(
        models, parameters={**FAST, **OFF, "ContentModerationOffReason": REASON}, upscale=False
    ) as wf:
        skin = wf.upload(skin_photo(), "inputs/off/skin.png")["key"]
        manifest, _ = inpainted(wf, skin, seed=5)  # not checked: it passes
        assert manifest["moderation"] == {
            "enabled": False,
            "off_reason": REASON,
            "categories": list(content_policy.DEFAULT_CATEGORIES),
            "allowed_labels": [],
            "min_confidence": 50.0,
            "policy_version": content_policy.POLICY_VERSION,
            "model_version": None,
            "calls": 0,
            "inputs": None,
            "results": None,
            "elapsed_ms": {},
        }
        assert manifest["cost"]["moderation_calls"] == 0 and wf.moderation.calls == []
        # the prompt policy is not the image check: it stays on
        refused = wf.run({"image": f"s3://{wf.input_bucket}/{skin}", "prompt": "topless"}, timeout=120)
        assert refused.succeeded and refused.output["status"] == "refused"
        safe = wf.upload(sample_photo((96, 128)), "inputs/off/safe.png")["key"]
        unmoderated_manifest, unmoderated = inpainted(wf, safe, seed=7)

    with LocalWorkflow(models, parameters=FAST, upscale=False) as wf:  # the default: on
        safe = wf.upload(sample_photo((96, 128)), "inputs/off/safe.png")["key"]
        moderated_manifest, moderated = inpainted(wf, safe, seed=7)
        assert (
            moderated_manifest["moderation"]["enabled"] is True
            and moderated_manifest["moderation"]["calls"] == 2
        )
        assert len(wf.moderation.calls) == 2
    # a safe job is unchanged by moderation: the same job, the same image, the same files
    assert moderated == unmoderated
    assert moderated_manifest["params"] == unmoderated_manifest["params"]  # (the upload's version differs)
    assert sorted(moderated_manifest["outputs"]) == sorted(unmoderated_manifest["outputs"])
