"""The local workflow under AWS's limits: large photos and many images travel as S3 keys, never as
pixels; upscaling a photo the upscaler cannot take is refused before any model runs; a job reads
the object version it was started for."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from tryon.local import LocalWorkflow
from tryon.local.harness import STATE_LIMIT_BYTES
from tryon.local.samples import sample_photo

pytestmark = pytest.mark.slow

FAST_PARAMETERS = {"DefaultSteps": 1, "DefaultUpscaleSteps": 1}


def open_image(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@pytest.fixture(scope="module")
def wf(tiny_models):
    models = {
        "clipseg": tiny_models["clipseg"],
        "sd_inpaint": tiny_models["sd-inpaint"],
        "sd_upscale": tiny_models["sd-x4-upscaler"],
    }
    with LocalWorkflow(models, parameters=FAST_PARAMETERS) as stack:
        yield stack


def _largest_state(result) -> int:
    """Bytes of the largest state input/output in the execution's history."""
    sizes = [0]
    for event in result.history:
        for details in event.values():
            if isinstance(details, dict):
                for field in ("input", "output"):
                    if isinstance(details.get(field), str):
                        sizes.append(len(details[field].encode()))
    return max(sizes)


def test_a_12_megapixel_photo_with_four_images_travels_as_keys(wf):
    data = sample_photo((4000, 3000), "JPEG")
    key = wf.upload(data, "inputs/big.jpg")["key"]
    console = {"image": f"s3://{wf.input_bucket}/{key}", "num_images": 4, "seed": 3, "query": "a shirt"}
    result = wf.run(console, timeout=300)
    assert result.succeeded, (result.error, result.cause)
    manifest = wf.read_json(result.output["manifest"])
    assert manifest["status"] == "succeeded"  # the tiny CLIPSeg masks this gradient photo
    assert len(manifest["outputs"]["inpainted"]) == 4
    for uri in manifest["outputs"]["inpainted"]:
        assert open_image(wf.read_bytes(uri)).size == (4000, 3000)
    # Each inpainted PNG alone is megabytes; only keys went through the endpoints and the states.
    assert 1000 < _largest_state(result) < 16 * 1024 < STATE_LIMIT_BYTES


def test_four_upscaled_images_of_a_512_px_photo(wf):
    key = wf.upload(sample_photo((512, 384), "PNG"), "inputs/upscale-me.png")["key"]
    console = {"image": f"s3://{wf.input_bucket}/{key}", "num_images": 4, "upscale": True, "seed": 5}
    result = wf.run(console, timeout=600)
    assert result.succeeded, (result.error, result.cause)
    manifest = wf.read_json(result.output["manifest"])
    if manifest["status"] == "succeeded":
        assert "Upscale" in result.states()
        assert [open_image(wf.read_bytes(u)).size for u in manifest["outputs"]["upscaled"]] == [
            (2048, 1536)
        ] * 4
    assert _largest_state(result) < 16 * 1024


def test_upscaling_a_photo_the_upscaler_refuses_fails_in_prepare(wf):
    key = wf.upload(sample_photo((2100, 64), "PNG"), "inputs/wide.png")["key"]
    calls = len(wf.invocations)
    result = wf.run({"image": f"s3://{wf.input_bucket}/{key}", "upscale": True}, timeout=120)
    assert not result.succeeded and result.error == "InvalidInput"
    assert "upscale: the photo is 2100x64; the x4 upscaler takes at most 2048 px per side" in result.cause
    assert [name for name, _, _ in wf.invocations[calls:]] == ["PrepareFunction", "RecordFailureFunction"]


def test_a_new_version_uploaded_while_the_job_runs_does_not_change_it(wf):
    """Segment starts after Prepare chose the version; a re-upload then must not reach the models."""
    first = sample_photo((48, 64), "PNG")
    buf = io.BytesIO()
    open_image(first).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(buf, format="PNG")
    uploaded = wf.upload(first, "inputs/racy.png")
    key = uploaded["key"]
    replaced, sent = [], []

    def reupload(request):
        sent.append(json.loads(request["body"]))
        if not replaced:
            replaced.append(wf.upload(buf.getvalue(), key)["version_id"])

    wf.before_endpoint_call("clipseg", reupload)
    wf.before_endpoint_call("sd_inpaint", lambda request: sent.append(json.loads(request["body"])))
    result = wf.run({"image": f"s3://{wf.input_bucket}/{key}", "seed": 9}, timeout=120)
    assert result.succeeded, (result.error, result.cause)
    assert replaced and replaced[0] != uploaded["version_id"]
    manifest = wf.read_json(result.output["manifest"])
    assert manifest["input"]["version_id"] == uploaded["version_id"]
    # every endpoint was told to read the version the job started from, and the handlers honour
    # it (tests/serving/test_handler_outputs.py::test_endpoint_reads_the_version_the_request_names)
    expected = f"s3://{wf.input_bucket}/{key}?versionId={uploaded['version_id']}"
    assert sent and all(body["image"] == expected for body in sent)
    assert manifest["status"] == "succeeded"
    mask = np.asarray(open_image(wf.read_bytes(manifest["outputs"]["mask"]))) > 127
    result_px = np.asarray(open_image(wf.read_bytes(manifest["outputs"]["inpainted"][0])))
    original = np.asarray(open_image(first).convert("RGB"))
    assert np.array_equal(result_px[~mask], original[~mask])
