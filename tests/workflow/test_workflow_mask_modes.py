"""Each mask mode alone through the whole local workflow (moto, the real ASL, handlers, tiny models):
text with a box, class, a painted mask (S3 object or console base64; no CLIPSeg call), a box, keep-regions
in box and painted modes, and Prepare's refusals of painted masks and boxes naming the field."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from PIL import Image
from support.outfits import (
    EXACT_MASKS,
    HEIGHT,
    PHOTO,
    WIDTH,
    box,
    changed,
    mask_of,
    photo_pixels,
    pixels,
    png,
    record_requests,
    run_ok,
)
from support.workflow import DEADLINE_S, failure_of

from tryon.local import LocalWorkflow

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wf(tiny_models):
    models = {"clipseg": tiny_models["clipseg"], "sd_inpaint": tiny_models["sd-inpaint"]}
    with LocalWorkflow(models, upscale=False, parameters=EXACT_MASKS, stack_name="tryon-mask-modes") as stack:
        stack.sent = record_requests(stack)
        stack.upload(PHOTO, "inputs/model.png")
        yield stack


@pytest.fixture
def sent(wf):
    for bodies in wf.sent.values():
        bodies.clear()
    return wf.sent


def test_text_mode_with_a_box_restricting_clipseg(wf, sent):
    result, manifest = run_ok(wf, {"query": "a shirt", "mask_box": "0,0,1,0.5"})
    assert "Segment" in result.states() and "Masks" in result.states()
    [request] = sent["clipseg"]
    assert request["query"] == "a shirt" and request["output_name"] == "clipseg"
    [garment] = manifest["garments"]
    assert garment["mask_mode"] == "text" and garment["mask"]["box_role"] == "restrict"
    assert garment["mask"]["box"] == [0, 0, WIDTH, HEIGHT // 2]
    # CLIPSeg (threshold 0) marks the whole photo; the box keeps its upper half
    assert garment["mask"]["clipseg"]["coverage"] == 1.0
    mask = mask_of(wf, manifest["outputs"]["mask"])
    assert (mask == box(0, 0, WIDTH, HEIGHT // 2)).all()
    diff = changed(photo_pixels(), pixels(wf, manifest["outputs"]["inpainted"][0]))
    assert diff.any() and not diff[~mask].any()


def test_class_mode_uses_the_class_query_and_its_settings(wf, sent):
    _, manifest = run_ok(wf, {"garment_class": "footwear", "negative_queries": []})
    [request] = sent["clipseg"]
    assert request["query"] == "shoes" and request["negative_queries"] == []
    assert request["dilate"] == 4 and request["output_name"] == "mask"  # a lone CLIPSeg mask is final
    [garment] = manifest["garments"]
    assert garment["mask_mode"] == "class" and garment["garment_class"] == "footwear"
    assert manifest["params"]["query"] == "shoes" and manifest["params"]["dilate"] == 4


def test_a_painted_mask_skips_segment_and_is_resized_to_the_photo(wf, sent):
    painted = Image.new("L", (WIDTH // 2, HEIGHT // 2), 0)
    painted.paste(255, (0, 0, WIDTH // 4, HEIGHT // 2))  # the left half, at half the photo's size
    put = wf.upload(png(painted), "masks/left-half.png", content_type="image/png")
    uri = f"s3://{wf.input_bucket}/masks/left-half.png"
    result, manifest = run_ok(wf, {"mask_image": uri})
    assert "Segment" not in result.states() and "SegmentMode" not in result.states()
    assert sent["clipseg"] == []  # no CLIPSeg call at all
    [garment] = manifest["garments"]
    pinned = f"{uri}?versionId={put['version_id']}"
    assert garment["mask_mode"] == "image" and garment["mask"]["painted"] == pinned
    assert manifest["params"]["mask_image"] == pinned  # the job id names that version
    mask = mask_of(wf, manifest["outputs"]["mask"])
    assert (mask == box(0, 0, WIDTH // 2, HEIGHT)).all()
    diff = changed(photo_pixels(), pixels(wf, manifest["outputs"]["inpainted"][0]))
    assert diff.any() and not diff[~mask].any()
    # the inpainting endpoint was sent the composed mask, never the painted object
    [request] = sent["sd_inpaint"]
    assert request["mask"].endswith("/mask.png")


def test_a_console_mask_in_base64_is_stored_and_named_by_its_digest(wf, sent):
    painted = Image.new("L", (WIDTH, HEIGHT), 0)
    painted.paste(255, (8, 8, 24, 40))
    data = png(painted)
    text = "data:image/png;base64," + base64.b64encode(data).decode()
    result, manifest = run_ok(wf, {"mask_image": text})
    assert sent["clipseg"] == [] and "Segment" not in result.states()
    assert manifest["params"]["mask_image"] == "sha256:" + hashlib.sha256(data).hexdigest()
    [garment] = manifest["garments"]
    assert garment["mask"]["painted"].endswith(f"{manifest['job_id']}/painted.png")
    assert (mask_of(wf, garment["mask"]["painted"]) == box(8, 8, 24, 40)).all()
    assert (mask_of(wf, manifest["outputs"]["mask"]) == box(8, 8, 24, 40)).all()
    assert len(json.dumps(manifest["params"])) < 4096  # a reference, never the pixels


def test_box_mode_is_the_box_and_calls_no_model_for_it(wf, sent):
    result, manifest = run_ok(wf, {"mask_mode": "box", "mask_box": "0,32,48,64"})
    assert sent["clipseg"] == [] and "Segment" not in result.states()
    mask = mask_of(wf, manifest["outputs"]["mask"])
    assert (mask == box(0, 32, 48, 64)).all()
    [garment] = manifest["garments"]
    assert garment["mask"]["box_role"] == "mask" and garment["mask"]["coverage"] == 0.5
    diff = changed(photo_pixels(), pixels(wf, manifest["outputs"]["inpainted"][0]))
    assert diff.any() and not diff[~mask].any()


@pytest.mark.parametrize(
    ("threshold", "status", "coverage"), [(1.0, "succeeded", 0.5), (0.0, "no-garment-found", 0.0)]
)
def test_keep_regions_are_taken_out_of_abox(wf, sent, threshold, status, coverage):
    """A box with a class brings the class's keep-regions: CLIPSeg finds them (threshold 1: nothing,
    threshold 0: the whole photo) and they are subtracted from the box."""
    result = wf.run(
        {
            "image": f"s3://{wf.input_bucket}/inputs/model.png",
            "garment_class": "lower-body",
            "mask_mode": "box",
            "mask_box": "0,0.5,1,1",
            "threshold": threshold,
        },
        timeout=DEADLINE_S,
    )
    assert result.succeeded and result.output["status"] == status, (result.error, result.cause)
    manifest = wf.read_json(result.output["manifest"])
    [request] = sent["clipseg"]
    assert request["queries"] == ["face", "hair", "hands", "shirt", "shoes"]  # the class's keep-regions alone
    assert request["negative_queries"] == [] and request["output_name"] == "keep"
    [garment] = manifest["garments"]
    assert garment["mask"]["coverage"] == coverage and garment["mask"]["clipseg"]["role"] == "keep"
    assert wf.list_keys(manifest["outputs"]["prefix"].split("/", 3)[3] + "keep.png")


def _bomb() -> bytes:
    return png(Image.new("1", (7000, 7000)))


@pytest.mark.parametrize(
    ("key", "data", "message"),
    [
        (None, None, "does not exist"),
        ("masks/empty.png", b"", "is empty (0 bytes)"),
        ("masks/text.png", b"hello, not an image", "not a decodable PNG, JPEG or WebP"),
        ("masks/black.png", png(Image.new("L", (WIDTH, HEIGHT), 0)), "all black: it paints nothing"),
        ("masks/white.png", png(Image.new("L", (WIDTH, HEIGHT), 255)), "all white"),
        ("masks/turned.png", png(Image.new("L", (HEIGHT, WIDTH), 200)), "aspect ratio"),
        ("masks/bomb.png", _bomb(), "pixels; the limit is"),
        ("inputs/mask.png", png(Image.new("L", (WIDTH, HEIGHT), 200)), "is not under s3://"),
    ],
)
def test_bad_painted_masks_are_refused_by_prepare_naming_the_field(wf, sent, key, data, message):
    if key is not None:
        wf.upload(data, key, content_type="image/png")
    uri = f"s3://{wf.input_bucket}/{key or 'masks/missing.png'}"
    result = wf.run(
        {"image": f"s3://{wf.input_bucket}/inputs/model.png", "mask_image": uri},
        timeout=DEADLINE_S,
    )
    record = failure_of(wf, result)
    assert record["step"] == "prepare" and record["error"] == "InvalidInput"
    assert record["cause"].startswith("mask_image: ") and message in record["cause"]
    assert sent["clipseg"] == sent["sd_inpaint"] == []


def test_a_box_outside_the_photo_is_refused_with_its_size(wf, sent):
    result = wf.run(
        {"image": f"s3://{wf.input_bucket}/inputs/model.png", "mask_mode": "box", "mask_box": "0,0,48,100"},
        timeout=DEADLINE_S,
    )
    record = failure_of(wf, result)
    assert record["step"] == "prepare"
    assert record["cause"].startswith("mask_box: 0,0,48,100 lies outside the 48x64 photo")
