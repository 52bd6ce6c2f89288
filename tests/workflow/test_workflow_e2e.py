"""End to end on moto: template.yaml + the real ASL + the real Lambda handlers + the real model
handlers on the tiny checkpoints behind the local endpoint server."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tryon.local.samples import sample_photo

WIDTH, HEIGHT = 48, 64

pytestmark = pytest.mark.slow


def photo(fmt: str) -> bytes:
    return sample_photo((WIDTH, HEIGHT), fmt)


def open_image(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


MANIFEST_KEYS = {
    "manifest_version", "status", "job_id", "source", "preset", "execution", "created_at", "input", "params",
    "upscale", "upscale_plan", "ignored_metadata", "seeds", "coverage", "scores", "models", "endpoints",
    "components", "adapter", "garment", "refiner", "controls", "outputs",
    "timings_ms", "cost", "moderation", "outfit", "garments",
}  # fmt: skip


def assert_input_unchanged(wf, key, data, metadata):
    s3 = wf.client("s3")
    head = s3.head_object(Bucket=wf.input_bucket, Key=key)
    assert wf.read_bytes(f"s3://{wf.input_bucket}/{key}") == data
    assert head["Metadata"] == metadata
    versions = s3.list_object_versions(Bucket=wf.input_bucket, Prefix=key)["Versions"]
    assert len(versions) == 1


def test_s3_event_with_upscale_and_adapter_from_metadata(wf):
    data = photo("PNG")
    metadata = {"adapter": "garment-a", "adapter-scale": "0.8", "upscale": "true"}
    key = wf.upload(data, "inputs/shop/model-1.png", metadata=metadata)["key"]
    seen = []
    job_events = wf.subscribe_job_events()
    result = wf.wait(wf.start_from_s3_event(key), timeout=120, on_event=seen.append)
    assert result.succeeded, (result.error, result.cause)
    assert result.states() == [
        "Receive", "Prepare", "AlreadyComplete", "ModerateInputs", "SegmentRequested", "SegmentMode",
        "Segment", "MaskFound",
        "InpaintMode", "Inpaint", "UpscaleRequested", "UpscaleMode", "Upscale", "ModerateResults", "Finalize",
    ]  # fmt: skip
    assert all(e.duration_s is not None for e in seen if e.phase == "exited")
    assert result.output["status"] == "succeeded"
    [completed] = job_events()
    assert completed["detail-type"] == "Try-on Job Completed" and completed["source"] == "tryon.workflow"
    assert completed["detail"]["manifest"] == result.output["manifest"]
    assert completed["detail"]["execution"] == result.execution_arn

    manifest = wf.read_json(result.output["manifest"])
    assert set(manifest) == MANIFEST_KEYS
    job_id = manifest["job_id"]
    prefix = f"results/shop/model-1/{job_id}/"
    assert manifest["outputs"]["prefix"] == f"s3://{wf.output_bucket}/{prefix}"
    assert manifest["source"] == "s3-event" and manifest["upscale"] is True
    # the mode the upscale ran in and Prepare's estimate against that mode's limit
    plan = manifest["upscale_plan"]
    assert (plan["mode"], plan["tiles"], plan["steps"], plan["limit_seconds"]) == ("realtime", 1, 2, 60.0)
    assert 0 < plan["estimated_seconds"] <= 0.8 * plan["limit_seconds"]
    assert manifest["adapter"] == {"name": "garment-a", "scale": 0.8}
    assert manifest["refiner"] is None and manifest["params"]["use_refiner"] is None  # SD 2: none asked
    assert manifest["controls"] is None and manifest["params"]["keep_body"] is None  # no body kept
    assert manifest["params"]["adapter"] == "garment-a" and manifest["params"]["steps"] == 2
    assert len(manifest["seeds"]) == 1 and manifest["seeds"][0] == manifest["params"]["seed"]
    assert manifest["input"]["version_id"] and manifest["input"]["image"]["width"] == WIDTH
    assert all(manifest["models"].values()) and set(manifest["timings_ms"]) == {
        "segment",
        "inpaint",
        "upscale",
    }
    # what it cost: each endpoint's own work and the instance type the template configured
    cost = manifest["cost"]["steps"]
    assert set(cost) == {"segment", "inpaint", "upscale"}
    assert all(
        0 < part["compute_seconds"] <= manifest["timings_ms"][step]["elapsed_ms"] / 1000
        for step, part in cost.items()
    )
    assert manifest["cost"]["compute_seconds"] == pytest.approx(
        sum(p["compute_seconds"] for p in cost.values()), abs=0.002
    )
    assert (cost["segment"]["instance_type"], cost["inpaint"]["instance_type"]) == (
        "ml.m5.xlarge",
        "ml.g5.xlarge",
    )
    assert cost["inpaint"]["mode"] == "realtime" and cost["inpaint"]["endpoint"] == "sd_inpaint"
    assert sorted(wf.list_keys(prefix)) == sorted(
        prefix + name
        for name in ("mask.png", "inpainted-0.png", "upscaled-0.png", "preview.jpg", "manifest.json")
    )
    # published from the pending prefix, which the job leaves empty; every image was checked first
    assert wf.list_keys(f"pending/{job_id}/") == []
    moderation = manifest["moderation"]
    assert moderation["enabled"] is True and moderation["calls"] == 3 == manifest["cost"]["moderation_calls"]
    assert [c["field"] for c in moderation["inputs"]] == ["image"]
    assert [c["field"] for c in moderation["results"]] == ["inpainted-0.png", "upscaled-0.png"]

    mask = open_image(wf.read_bytes(manifest["outputs"]["mask"]))
    assert (mask.format, mask.mode, mask.size) == ("PNG", "L", (WIDTH, HEIGHT))
    inpainted = open_image(wf.read_bytes(manifest["outputs"]["inpainted"][0]))
    assert (inpainted.mode, inpainted.size) == ("RGB", (WIDTH, HEIGHT))
    upscaled = open_image(wf.read_bytes(manifest["outputs"]["upscaled"][0]))
    assert (upscaled.mode, upscaled.size) == ("RGB", (4 * WIDTH, 4 * HEIGHT))
    preview = open_image(wf.read_bytes(manifest["outputs"]["preview"]))
    # input | mask overlay | result, each scaled to the tallest panel's height (the 4x result)
    assert (preview.format, preview.mode, preview.size) == ("JPEG", "RGB", (3 * 4 * WIDTH, 4 * HEIGHT))
    assert_input_unchanged(wf, key, data, metadata)

    # A re-delivered event (same object version, same parameters) reuses the result.
    calls = len(wf.invocations)
    again = wf.wait(wf.start_from_s3_event(key), timeout=60)
    assert again.succeeded and again.output == {
        "status": "already-complete", "job_id": job_id, "manifest": result.output["manifest"],
    }  # fmt: skip
    assert [name for name, _, _ in wf.invocations[calls:]] == ["PrepareFunction"]
    assert wf.read_json(result.output["manifest"])["created_at"] == manifest["created_at"]


def test_console_input_without_upscale(wf, tmp_path):
    data = photo("JPEG")
    key = wf.upload(data, "inputs/model-2.jpg")["key"]
    console = {"image": f"s3://{wf.input_bucket}/{key}", "query": "a dress", "num_images": 2, "seed": 7}
    result = wf.run(console, timeout=120)
    assert result.succeeded, (result.error, result.cause)
    assert "Upscale" not in result.states()
    manifest = wf.read_json(result.output["manifest"])
    assert manifest["source"] == "console" and manifest["upscale"] is False and manifest["adapter"] is None
    assert manifest["upscale_plan"] is None
    assert manifest["params"]["query"] == "a dress" and manifest["params"]["seed"] == 7
    assert len(manifest["seeds"]) == 2 and manifest["seeds"][0] == 7
    assert len(manifest["outputs"]["inpainted"]) == 2 and manifest["outputs"]["upscaled"] == []
    for uri in manifest["outputs"]["inpainted"]:
        img = open_image(wf.read_bytes(uri))
        assert (img.format, img.mode, img.size) == ("PNG", "RGB", (WIDTH, HEIGHT))
    files = wf.download_results(result.output["manifest"], tmp_path)
    assert sorted(p.name for p in files) == [
        "inpainted-0.png", "inpainted-1.png", "manifest.json", "mask.png", "preview.jpg",
    ]  # fmt: skip
    assert_input_unchanged(wf, key, data, {})
