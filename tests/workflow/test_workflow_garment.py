"""A garment's reference image through the whole local workflow (moto, the real ASL, handlers and
tiny models with the tiny IP-Adapter): from upload metadata and from a console input; Prepare's checks."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from support.images import encode, noise_image, sample_photo

from tryon.workflow import params

pytestmark = pytest.mark.slow

WIDTH, HEIGHT = 48, 64
GARMENT_SIZE = (30, 40)
DEADLINE_S = 120


GARMENT = encode(noise_image(GARMENT_SIZE, 3))


def _unchanged(wf, key: str, data: bytes) -> None:
    s3 = wf.client("s3")
    assert wf.read_bytes(f"s3://{wf.input_bucket}/{key}") == data
    assert len(s3.list_object_versions(Bucket=wf.input_bucket, Prefix=key)["Versions"]) == 1


def test_garment_from_metadata_with_a_garment_class_preset_and_a_lora(wf):
    put = wf.upload(GARMENT, "garments/skirt.png", content_type="image/png")
    photo = sample_photo((WIDTH, HEIGHT), "PNG")
    metadata = {"garment-image": f"s3://{wf.input_bucket}/garments/skirt.png", "adapter": "garment-a"}
    # negative-queries: the tiny CLIPSeg's random logits (+-700) would subtract the whole mask
    # threshold 0: the tiny CLIPSeg's mask is never empty, so the job reaches Inpaint
    metadata |= {"preset": "lower-body,draft", "negative-queries": "", "threshold": "0"}
    key = wf.upload(photo, "inputs/look-1.png", metadata=metadata)["key"]
    result = wf.wait(wf.start_from_s3_event(key), timeout=DEADLINE_S)
    assert result.succeeded and result.output["status"] == "succeeded", (result.error, result.cause)

    manifest = wf.read_json(result.output["manifest"])
    pinned = f"s3://{wf.input_bucket}/garments/skirt.png?versionId={put['version_id']}"
    garment = manifest["garment"]
    assert garment["uri"] == pinned and manifest["params"]["garment_image"] == pinned
    assert garment["image"]["width"] == GARMENT_SIZE[0] and garment["size"] == len(GARMENT)
    assert garment["used"] == {
        "ip_adapter": "ip-adapter.safetensors",
        "scale": 0.6,
        "size": list(GARMENT_SIZE),
    }
    assert manifest["adapter"] == {"name": "garment-a", "scale": 1.0}
    # the garment class set the mask's query (metadata overrode what it keeps out); draft the steps
    assert manifest["params"]["query"] == params.GARMENT_CLASSES["lower-body"]["query"]
    assert manifest["params"]["negative_queries"] == []
    assert manifest["params"]["steps"] == 15 and manifest["preset"] == "lower-body,draft"
    assert manifest["outputs"]["garment"] == pinned
    preview = Image.open(io.BytesIO(wf.read_bytes(manifest["outputs"]["preview"])))
    # input | garment (fitted into a panel of the photo's size) | mask overlay | result
    assert preview.size == (4 * WIDTH, HEIGHT)
    _unchanged(wf, key, photo)
    _unchanged(wf, "garments/skirt.png", GARMENT)


def test_garment_from_the_console_and_what_prepare_refuses(wf):
    photo = sample_photo((WIDTH, HEIGHT), "JPEG")
    key = wf.upload(photo, "inputs/look-2.jpg")["key"]
    wf.upload(GARMENT, "garments/top.png")
    image = f"s3://{wf.input_bucket}/{key}"
    garment = f"s3://{wf.input_bucket}/garments/top.png"
    result = wf.wait(
        wf.start(
            {
                "image": image,
                "garment_image": garment,
                "garment_scale": 1.0,
                "negative_queries": [],
                "threshold": 0.0,  # the tiny CLIPSeg's mask is never empty
            }
        ),
        timeout=DEADLINE_S,
    )
    assert result.succeeded and result.output["status"] == "succeeded", (result.error, result.cause)
    manifest = wf.read_json(result.output["manifest"])
    assert manifest["source"] == "console" and manifest["garment"]["used"]["scale"] == 1.0

    wf.upload(GARMENT[: len(GARMENT) // 2], "garments/cut.png")
    wf.upload(GARMENT, "inputs/packshot.png")
    for garment_uri, needle in [
        (f"s3://{wf.input_bucket}/inputs/packshot.png", "is not under s3://"),
        ("s3://another-bucket/garments/top.png", "is not under s3://"),
        (f"s3://{wf.input_bucket}/garments/missing.png", "does not exist"),
        (f"s3://{wf.input_bucket}/garments/cut.png", "could not be decoded (truncated or corrupt)"),
        ("garments/top.png", "must be an s3://bucket/key URI"),
    ]:
        before = len(wf.invocations)
        failed = wf.wait(wf.start({"image": image, "garment_image": garment_uri}), timeout=DEADLINE_S)
        assert failed.status == "FAILED" and failed.error == "InvalidInput", garment_uri
        assert "garment_image" in failed.cause and needle in failed.cause, failed.cause
        assert [n for n, _, _ in wf.invocations[before:]] == ["PrepareFunction", "RecordFailureFunction"]
    _unchanged(wf, "garments/cut.png", GARMENT[: len(GARMENT) // 2])
