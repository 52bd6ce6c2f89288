"""Outfits through the whole local workflow (moto, the real ASL, handlers, tiny models with two LoRA adapters
and the tiny IP-Adapter): 2 and 3 garments with different adapters and a packshot, the order of passes, each
pass changing only its mask, nothing changed outside the union, manifest, preview, job ids, upload metadata,
the stored-image limit, and the refusals naming the garment and the field."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from support.images import encode, noise_image
from support.outfits import (
    HEIGHT,
    PACKSHOT,
    PHOTO,
    WIDTH,
    as_sent,
    box,
    changed,
    largest_state,
    mask_of,
    outfit_stack,
    photo_pixels,
    pixels,
    png,
    record_requests,
    run_ok,
)
from support.workflow import DEADLINE_S, failure_of

pytestmark = pytest.mark.slow

#: Step Functions' limit is 256 KiB: an outfit's state stays far below it (references, not pixels).
FAR_BELOW_STATE_LIMIT = 32 * 1024


@pytest.fixture(scope="module")
def wf(tiny_models, tmp_path_factory):
    with outfit_stack(tiny_models, tmp_path_factory) as stack:
        stack.sent = record_requests(stack)
        stack.upload(PHOTO, "inputs/model.png")
        stack.upload(PACKSHOT, "garments/top.png", content_type="image/png")
        yield stack


@pytest.fixture
def sent(wf):
    for bodies in wf.sent.values():
        bodies.clear()
    return wf.sent


TWO = [
    # listed top first: the passes still run lower body first
    {"garment_class": "upper-body", "mask_mode": "box", "mask_box": "0,0,1,0.625", "prompt": "a silk blouse",
     "garment_image": "s3://{bucket}/garments/top.png"},
    {"garment_class": "lower-body", "mask_mode": "box", "mask_box": "0.25,0.5,0.75,1",
     "adapter": "garment-a"},
]  # fmt: skip


def _two(wf, **changes):
    garments = [{k: v.format(bucket=wf.input_bucket) for k, v in g.items()} for g in TWO]
    for garment in garments:
        garment.update(changes.get(garment["garment_class"], {}))
    # no keep-regions: the tiny CLIPSeg (threshold 0) would find them everywhere
    return {"garments": garments, "negative_queries": []}


def test_two_garments_each_pass_in_its_own_mask_in_the_order_they_are_worn(wf, sent):
    result, manifest = run_ok(wf, _two(wf))
    states = result.states()
    assert "Segment" not in states and sent["clipseg"] == []  # two boxes: no CLIPSeg call
    assert states.count("Inpaint") == 2 and states.index("Masks") < states.index("Inpaint")
    assert largest_state(result) < FAR_BELOW_STATE_LIMIT

    # masks on the original photo; the waistband (rows 32..40) goes to the top, worn over the trousers
    lower_mask = mask_of(wf, manifest["outputs"]["masks"]["lower-body"])
    upper_mask = mask_of(wf, manifest["outputs"]["masks"]["upper-body"])
    assert (upper_mask == box(0, 0, 48, 40)).all() and (lower_mask == box(12, 40, 36, 64)).all()
    union = mask_of(wf, manifest["outputs"]["mask"])
    assert (union == (upper_mask | lower_mask)).all()

    # pass 1 (lower body) on the photo, pass 2 (upper body) on pass 1's image
    first, second = sent["sd_inpaint"]
    prefix = manifest["outputs"]["prefix"]
    assert first["image"].startswith(manifest["input"]["uri"]) and first["mask"] == as_sent(
        manifest, prefix + "mask-lower-body.png"
    )
    assert first["adapter"] == "garment-a" and "garment_image" not in first
    assert second["image"] == as_sent(manifest, prefix + "inpainted-lower-body-0.png") and second[
        "mask"
    ] == as_sent(manifest, prefix + "mask-upper-body.png")
    assert second["garment_image"].startswith(f"s3://{wf.input_bucket}/garments/top.png?versionId=")
    assert "adapter" not in second and second["prompt"] == "a silk blouse"

    photo = photo_pixels()
    after_lower = pixels(wf, prefix + "inpainted-lower-body-0.png")
    final = pixels(wf, manifest["outputs"]["inpainted"][0])
    assert manifest["outputs"]["inpainted"] == [prefix + "inpainted-0.png"]
    assert changed(photo, after_lower).any() and not changed(photo, after_lower)[~lower_mask].any()
    assert changed(after_lower, final).any() and not changed(after_lower, final)[~upper_mask].any()
    assert not changed(photo, final)[~union].any()  # byte-identical outside the union

    lower, upper = manifest["garments"]
    assert manifest["outfit"] is True
    assert [lower["garment_class"], upper["garment_class"]] == ["lower-body", "upper-body"]
    assert [lower["index"], upper["index"]] == [0, 1] and lower["status"] == upper["status"] == "painted"
    assert lower["mask"]["given_up_pixels"] == 8 * 24 and upper["mask"]["given_up_pixels"] == 0
    assert lower["adapter"] == {"name": "garment-a", "scale": 1.0} and lower["packshot"] is None
    assert upper["packshot"]["used"]["scale"] == 0.6 and upper["params"]["prompt"] == "a silk blouse"
    assert lower["seeds"] == [lower["seed"]] and upper["seeds"] == [upper["seed"]]
    assert lower["outputs"] == [prefix + "inpainted-lower-body-0.png"]
    for garment in (lower, upper):
        assert garment["cost"]["compute_seconds"] > 0 and garment["timings_ms"]["inpaint"] > 0
    assert manifest["cost"]["compute_seconds"] == pytest.approx(
        lower["cost"]["compute_seconds"] + upper["cost"]["compute_seconds"], abs=0.002
    )
    preview = Image.open(io.BytesIO(wf.read_bytes(manifest["outputs"]["preview"])))
    # input | lower mask | upper packshot | upper mask | result
    assert preview.size == (5 * WIDTH, HEIGHT)

    # the job id covers every garment: the same outfit again is complete, another adapter is a new job
    again = wf.run({"image": f"s3://{wf.input_bucket}/inputs/model.png", **_two(wf)}, timeout=DEADLINE_S)
    assert again.output["status"] == "already-complete" and again.output["job_id"] == manifest["job_id"]
    other = _two(wf, **{"lower-body": {"adapter": "garment-b"}})
    _, other_manifest = run_ok(wf, other)
    assert other_manifest["job_id"] != manifest["job_id"]


def test_three_garments_with_clipseg_a_box_and_a_painted_mask_and_two_images(wf, sent):
    painted = Image.new("L", (WIDTH, HEIGHT), 0)
    painted.paste(255, (0, 56, WIDTH, HEIGHT))  # the feet
    wf.upload(png(painted), "masks/feet.png", content_type="image/png")
    console = {
        "num_images": 2,
        "negative_queries": [],
        "garments": [
            {"garment_class": "footwear", "mask_image": f"s3://{wf.input_bucket}/masks/feet.png",
             "adapter": "garment-b"},
            {"garment_class": "upper-body", "query": "a shirt", "mask_box": "0,0,1,0.5",
             "garment_image": f"s3://{wf.input_bucket}/garments/top.png"},
            {"garment_class": "lower-body", "mask_box": "0,0.5,1,1", "adapter": "garment-a",
             "adapter_scale": 0.5},
        ],
    }  # fmt: skip
    result, manifest = run_ok(wf, console)
    assert result.states().count("Inpaint") == 3
    assert largest_state(result) < FAR_BELOW_STATE_LIMIT
    # one CLIPSeg request per garment that asks: the class query and the text query, on the photo
    assert [r["query"] for r in sent["clipseg"]] == ["pants or a skirt", "a shirt"]
    assert [r["output_name"] for r in sent["clipseg"]] == ["clipseg-lower-body", "clipseg-upper-body"]
    assert all(r["image"].startswith(manifest["input"]["uri"]) for r in sent["clipseg"])

    names = [g["name"] for g in manifest["garments"]]
    assert names == ["lower-body", "upper-body", "footwear"]
    assert [g["mask_mode"] for g in manifest["garments"]] == ["class", "text", "image"]
    masks = {name: mask_of(wf, manifest["outputs"]["masks"][name]) for name in names}
    assert (masks["footwear"] == box(0, 56, 48, 64)).all()
    assert (masks["lower-body"] == box(0, 32, 48, 56)).all()  # its box, minus the feet painted later
    assert (masks["upper-body"] == box(0, 0, 48, 32)).all()

    # pass 1: one request for both images; passes 2 and 3: one request per image, on that image
    requests = sent["sd_inpaint"]
    assert [r["num_images"] for r in requests] == [2, 1, 1, 1, 1]
    prefix = manifest["outputs"]["prefix"]
    seed = manifest["garments"][1]["seed"]
    assert [r["image"] for r in requests[1:3]] == [
        as_sent(manifest, prefix + "inpainted-lower-body-0.png"),
        as_sent(manifest, prefix + "inpainted-lower-body-1.png"),
    ]
    assert [r["seed"] for r in requests[1:3]] == [seed, seed + 1]
    assert requests[0]["adapter"] == "garment-a" and requests[0]["adapter_scale"] == 0.5
    assert requests[3]["adapter"] == "garment-b" and "garment_image" in requests[1]
    final = manifest["outputs"]["inpainted"]
    assert final == [prefix + "inpainted-0-0.png", prefix + "inpainted-1-0.png"]
    photo = photo_pixels()
    for i in range(2):
        chain = [photo, *(pixels(wf, g["outputs"][i]) for g in manifest["garments"])]
        for before, after, name in zip(chain[:-1], chain[1:], names, strict=True):
            assert not changed(before, after)[~masks[name]].any(), (i, name)
    assert manifest["garments"][2]["outputs"] == final


def test_an_outfit_from_upload_metadata(wf, sent):
    metadata = {
        "lower-body.mask-mode": "box",
        "lower-body.mask-box": "0,0.5,1,1",
        "upper.mask-mode": "box",
        "upper.mask-box": "0,0,1,0.5",
        "upper.prompt": "a red top",
        "negative-queries": "",
    }
    key = wf.upload(PHOTO, "inputs/from-metadata.png", metadata=metadata)["key"]
    result = wf.wait(wf.start_from_s3_event(key), timeout=DEADLINE_S)
    assert result.succeeded, (result.error, result.cause)
    manifest = wf.read_json(result.output["manifest"])
    assert [g["garment_class"] for g in manifest["garments"]] == ["lower-body", "upper-body"]
    assert manifest["garments"][1]["params"]["prompt"] == "a red top" and manifest["ignored_metadata"] == []
    assert [r["prompt"] for r in sent["sd_inpaint"]][1] == "a red top"


@pytest.mark.parametrize(
    ("garments", "console", "step", "cause"),
    [
        ([{"garment_class": c} for c in ("upper-body", "lower-body", "footwear", "dress")], {}, "prepare",
         "garments: has 4 garments; the limit is 3 per job"),
        ([{"garment_class": "hat"}], {}, "prepare", "garments[0].garment_class: unknown garment class 'hat'"),
        ([{"garment_class": "upper-body", "mask_mode": "box", "mask_box": "0,0,48,100"}], {}, "prepare",
         "upper-body.mask_box: 0,0,48,100 lies outside the 48x64 photo"),
        ([{"garment_class": "footwear", "mask_image": "s3://{bucket}/masks/none.png"}], {}, "prepare",
         "footwear.mask_image: s3://{bucket}/masks/none.png does not exist"),
        ([{"garment_class": "upper-body", "garment_image": "s3://{bucket}/garments/none.png"}], {}, "prepare",
         "upper-body.garment_image: s3://{bucket}/garments/none.png does not exist"),
        ([{"garment_class": "upper-body", "mask_mode": "box", "mask_box": "0,0,1,0.6"},
          {"garment_class": "lower-body", "mask_mode": "box", "mask_box": "0,0.5,1,1"}],
         {"mask_overlap": "refuse", "negative_queries": []}, "masks",
         "mask_overlap: is refuse and the masks overlap: lower-body and upper-body share 336 pixels"),
    ],
)  # fmt: skip
def test_refusals_name_the_garment_and_the_field(wf, sent, garments, console, step, cause):
    bucket = wf.input_bucket
    garments = [{k: v.format(bucket=bucket) for k, v in g.items()} for g in garments]
    result = wf.run(
        {"image": f"s3://{bucket}/inputs/model.png", "garments": garments, **console}, timeout=DEADLINE_S
    )
    record = failure_of(wf, result)
    assert record["step"] == step and record["error"] == "InvalidInput"
    assert record["cause"].startswith(cause.format(bucket=bucket)), record["cause"]
    assert sent["sd_inpaint"] == []


def test_a_later_pass_reads_an_earlier_pass_over_the_upload_limit(wf, sent):
    """A noisy 3 MP photo is a small JPEG, but pass 1 writes a lossless PNG of over 8 MiB: pass 2's
    endpoint reads it (the stored-image limit), and nothing outside the masks changes."""
    noisy = encode(noise_image((1800, 1700), seed=9), "JPEG", quality=90)
    assert len(noisy) < 8 * 1024 * 1024
    wf.upload(noisy, "inputs/noisy.jpg", content_type="image/jpeg")
    garments = [
        {"garment_class": "lower-body", "mask_mode": "box", "mask_box": "0.3,0.6,0.5,0.7"},
        {"garment_class": "upper-body", "mask_mode": "box", "mask_box": "0.3,0.2,0.5,0.3"},
    ]
    result = wf.run(
        {"image": f"s3://{wf.input_bucket}/inputs/noisy.jpg", "negative_queries": [], "garments": garments},
        timeout=DEADLINE_S,
    )
    assert result.succeeded and result.output["status"] == "succeeded", (result.error, result.cause)
    manifest = wf.read_json(result.output["manifest"])
    first_pass = manifest["garments"][0]["outputs"][0]
    assert len(wf.read_bytes(first_pass)) > 8 * 1024 * 1024
    assert sent["sd_inpaint"][1]["image"] == as_sent(manifest, first_pass)
