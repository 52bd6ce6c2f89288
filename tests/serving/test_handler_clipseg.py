"""CLIPSeg endpoint handler through its four functions on the tiny random checkpoint."""

from __future__ import annotations

import io
import json
from unittest import mock

import numpy as np
import pytest
from PIL import Image, ImageOps
from support.handlers import invoke
from support.images import b64, decode, pixels, structured_photo

from tryon.core import imaging
from tryon.core.contract import CLIPSEG
from tryon.core.errors import RequestError
from tryon.handlers import clipseg

CT = "application/json"


@pytest.fixture(scope="module")
def model(clipseg_model):
    return clipseg_model


def photo(width: int = 90, height: int = 60) -> Image.Image:
    """A deterministic structured RGB picture (gradients and a block), non-square by default."""
    return structured_photo(width, height, block=True)


def run(model, body: dict | str, content_type: str = CT) -> dict:
    """input_fn -> predict_fn -> output_fn, parsed back from JSON."""
    return invoke(clipseg, model, body, content_type)


def mask_of(response: dict) -> Image.Image:
    return decode(response["mask"])


def mask_array(response: dict) -> np.ndarray:
    return pixels(response["mask"])


def test_happy_path_contract(model):
    out = run(model, {"image": b64(photo(90, 60)), "queries": ["a shirt", "trousers"]})
    mask = mask_of(out)
    assert mask.format == "PNG" and mask.mode == "L" and mask.size == (90, 60)
    assert out["size"] == [90, 60]
    assert 0.0 <= out["coverage"] <= 1.0
    assert out["coverage"] == pytest.approx(np.count_nonzero(np.asarray(mask) > 127) / (90 * 60))
    assert set(out["scores"]) == {"a shirt", "trousers"}
    assert all(0.0 <= s <= 1.0 for s in out["scores"].values())
    assert out["negative_scores"] == {}
    assert set(out["timings_ms"]) == {"decode", "queue", "preprocess", "inference", "postprocess", "encode"}
    assert out["model"] == model.model_id
    assert out["threshold"] == CLIPSEG["threshold"].default == 0.4


def test_query_string_is_accepted(model):
    single = run(model, {"image": b64(photo()), "query": "a shirt"})
    listed = run(model, {"image": b64(photo()), "queries": ["a shirt"]})
    assert list(single["scores"]) == ["a shirt"]
    assert single["mask"] == listed["mask"]


def test_positive_mask_is_partial_for_this_photo(model):
    # Precondition for the negative / dilate / feather tests below.
    out = run(model, {"image": b64(photo()), "query": "a shirt"})
    assert 0.0 < out["coverage"] < 1.0


def test_same_text_as_negative_empties_the_mask(model):
    out = run(model, {"image": b64(photo()), "query": "a shirt", "negative_queries": ["a shirt"]})
    assert out["coverage"] == 0.0
    assert not mask_array(out).any()
    assert out["negative_scores"]["a shirt"] == pytest.approx(out["scores"]["a shirt"])


def test_negative_queries_only_remove_pixels(model):
    plain = mask_array(run(model, {"image": b64(photo()), "query": "a shirt"}))
    minus = mask_array(run(model, {"image": b64(photo()), "query": "a shirt", "negative_queries": ["face"]}))
    assert not (minus & ~plain).any()  # nothing added


def test_threshold_extremes(model):
    everything = run(model, {"image": b64(photo()), "query": "a shirt", "threshold": 0})
    nothing = run(model, {"image": b64(photo()), "query": "a shirt", "threshold": 1})
    assert everything["coverage"] == 1.0 and (mask_array(everything) == 255).all()
    assert nothing["coverage"] == 0.0 and (mask_array(nothing) == 0).all()


def test_dilate_grows_and_feather_softens(model):
    base = {"image": b64(photo()), "query": "a shirt"}
    plain = mask_array(run(model, base))
    grown_out = run(model, {**base, "dilate": 3})
    grown = mask_array(grown_out)
    assert mask_of(grown_out).mode == "L"
    assert set(np.unique(grown)) <= {0, 255}
    assert (grown[plain == 255] == 255).all() and grown_out["coverage"] > np.mean(plain > 127)
    soft_out = run(model, {**base, "feather": 6})
    soft = mask_array(soft_out)
    assert mask_of(soft_out).mode == "L" and soft.shape == plain.shape
    assert ((soft > 0) & (soft < 255)).any()  # a soft edge appeared
    assert not np.array_equal(soft, plain)


def test_same_request_gives_the_same_mask(model):
    body = {"image": b64(photo()), "queries": ["a shirt", "jeans"], "negative_queries": ["hands"]}
    first, second = run(model, body), run(model, body)
    assert first["mask"] == second["mask"] and first["scores"] == second["scores"]


def test_exif_rotated_jpeg_gives_mask_in_display_orientation(model):
    stored = photo(80, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", exif=exif, quality=95)
    jpeg = buf.getvalue()
    out = run(model, {"image": imaging.b64encode(jpeg), "query": "a shirt"})
    assert mask_of(out).size == (40, 80) and out["size"] == [40, 80]
    # The same pixels, already upright and lossless, give the same mask.
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(jpeg)))
    assert run(model, {"image": b64(upright), "query": "a shirt"})["mask"] == out["mask"]


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_grayscale_rgba_and_palette_inputs(model, mode):
    img = photo(50, 70).convert(mode)
    out = run(model, {"image": b64(img), "query": "a shirt"})
    assert mask_of(out).mode == "L" and mask_of(out).size == (50, 70)


def test_image_from_s3(model):
    import boto3
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="photos-in")
        s3.put_object(Bucket="photos-in", Key="inputs/p.png", Body=imaging.encode_png(photo()))
        via_s3 = run(model, {"image": "s3://photos-in/inputs/p.png", "query": "a shirt"})
        missing = json.dumps({"image": "s3://photos-in/inputs/nope.png", "query": "a shirt"})
        with pytest.raises(RequestError, match=r"^image: s3://photos-in/inputs/nope.png does not exist"):
            clipseg.input_fn(missing, CT)
    assert via_s3["mask"] == run(model, {"image": b64(photo()), "query": "a shirt"})["mask"]


def test_all_queries_go_through_one_batched_forward(model):
    body = json.dumps({"image": b64(photo()), "queries": ["a", "b", "c"], "negative_queries": ["d", "e"]})
    request = clipseg.input_fn(body, CT)
    with mock.patch.object(model.model, "forward", wraps=model.model.forward) as spy:
        clipseg.predict_fn(request, model)
    assert spy.call_count == 1
    kwargs = spy.call_args.kwargs
    assert kwargs["input_ids"].shape[0] == 5 and kwargs["pixel_values"].shape[0] == 5


def _truncated_png() -> str:
    data = imaging.encode_png(Image.effect_noise((64, 64), 50).convert("RGB"))
    return imaging.b64encode(data[: len(data) // 2])


def _bomb_png() -> str:
    # 6100 x 6100 1-bit PNG: a few KB on the wire, 37.2 MP decoded (> 36 MP limit).
    return b64(Image.new("1", (6100, 6100)))


GOOD = {"query": "a shirt"}


@pytest.mark.parametrize(
    ("body", "content_type", "field", "detail"),
    [
        ("{not json", CT, "body", "not valid JSON"),
        ("[1, 2]", CT, "body", "must be a JSON object"),
        ({"image": "x", **GOOD}, "text/plain", "content_type", "must be application/json"),
        (GOOD, CT, "image", "is required"),
        ({"image": 123, **GOOD}, CT, "image", "must be a base64 string"),
        ({"image": "%%%", **GOOD}, CT, "image", "neither valid base64"),
        ({"image": imaging.b64encode(b"not an image at all"), **GOOD}, CT, "image", "not a decodable"),
        ({"image": "TRUNCATED", **GOOD}, CT, "image", "truncated or corrupt"),
        ({"image": "BOMB", **GOOD}, CT, "image", "the limit is 36000000 pixels"),
        ({"image": "OK"}, CT, "queries", "at least one query"),
        ({"image": "OK", "queries": []}, CT, "queries", "at least one query"),
        ({"image": "OK", "queries": 5}, CT, "queries", "must be a list of strings"),
        ({"image": "OK", "queries": ["ok", 3]}, CT, "queries[1]", "non-empty string"),
        ({"image": "OK", "query": ["a"]}, CT, "query", "must be a string"),
        ({"image": "OK", "query": "a", "queries": ["b"]}, CT, "query", "not both"),
        ({"image": "OK", "queries": [f"q{i}" for i in range(17)]}, CT, "queries", "the limit is 16"),
        ({"image": "OK", **GOOD, "negative_queries": ["n"] * 17}, CT, "negative_queries", "limit is 16"),
        ({"image": "OK", **GOOD, "threshold": "high"}, CT, "threshold", "must be a number"),
        ({"image": "OK", **GOOD, "threshold": 1.5}, CT, "threshold", "must be <= 1.0"),
        ({"image": "OK", **GOOD, "threshold": -0.1}, CT, "threshold", "must be >= 0.0"),
        ({"image": "OK", **GOOD, "dilate": 300}, CT, "dilate", "must be <= 256"),
        ({"image": "OK", **GOOD, "dilate": 1.5}, CT, "dilate", "must be an integer"),
        ({"image": "OK", **GOOD, "feather": -1}, CT, "feather", "must be >= 0"),
        ({"image": "OK", **GOOD, "thresh": 0.5}, CT, "body", "unknown field(s) thresh"),
    ],
)
def test_bad_requests_name_the_field(body, content_type, field, detail):
    if isinstance(body, dict):
        replacements = {"OK": b64(photo(8, 8)), "TRUNCATED": _truncated_png(), "BOMB": _bomb_png()}
        body = json.dumps({k: replacements.get(v, v) if isinstance(v, str) else v for k, v in body.items()})
    with pytest.raises(RequestError) as info:
        clipseg.input_fn(body, content_type)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ") and detail in str(info.value)


def test_output_fn_refuses_other_accept_types():
    with pytest.raises(RequestError, match=r"^accept: "):
        clipseg.output_fn({"mask": ""}, "image/png")


def test_long_queries_are_truncated_to_the_text_encoder_length(model):
    # 200 characters is 200+ tokens for the tiny char-level tokenizer (> 77 positions).
    out = run(model, {"image": b64(photo()), "queries": ["x" * 200, "a shirt"]})
    assert set(out["scores"]) == {"x" * 200, "a shirt"}


def test_dilate_is_a_euclidean_disk_and_feather_keeps_far_pixels():
    from tryon.handlers import mask_ops

    dot = np.zeros((21, 21), dtype=bool)
    dot[10, 10] = True
    assert np.count_nonzero(mask_ops.dilate(dot, 2)) == 13  # x^2 + y^2 <= 4
    assert mask_ops.dilate(dot, 0) is dot
    half = np.zeros((40, 40), dtype=bool)
    half[:, :20] = True
    soft = mask_ops.feather(half, 4)
    assert soft.dtype == np.uint8 and (soft[:, :12] == 255).all() and (soft[:, 28:] == 0).all()
    assert 0 < soft[0, 20] < 255 and mask_ops.coverage(soft) == pytest.approx(0.5)


def test_sagemaker_entry_point_reexports_the_handler(repo_root):
    import importlib.util

    path = repo_root / "models/clipseg/code/inference.py"
    spec = importlib.util.spec_from_file_location("clipseg_entry", path)
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    assert sorted(entry.__all__) == ["input_fn", "model_fn", "output_fn", "predict_fn"]
    assert entry.predict_fn is clipseg.predict_fn and entry.model_fn is clipseg.model_fn
