"""Batch manifests without AWS: formats, limits, typed rows, the cross product (fast)."""

from __future__ import annotations

import json

import pytest

from tryon.core.errors import RequestError
from tryon.workflow import batch_manifest as bm


def test_csv_and_jsonl_give_the_same_rows():
    rows = [{"image": "a.jpg", "adapter": "skirt", "num_images": "2"}, {"image": "s3://in/inputs/b.png"}]
    csv_text = bm.write_manifest(rows, "csv")
    assert csv_text.splitlines()[0] == "image,adapter,num_images"
    assert bm.parse_manifest(csv_text.encode(), "x.csv") == rows  # empty cells are left out
    assert bm.parse_manifest(bm.write_manifest(rows, "jsonl").encode(), "x.jsonl") == rows
    assert bm.parse_manifest(b"\xef\xbb\xbfimage\na.jpg\n\n", "bom.csv") == [{"image": "a.jpg"}]


def test_row_becomes_a_typed_console_input():
    console = bm.row_console_input(
        {"image": "look/a.jpg", "steps": "20", "upscale": "true", "negative_queries": "face,hands"},
        "bucket",
        "inputs/",
    )
    assert console == {
        "image": "s3://bucket/inputs/look/a.jpg",
        "steps": 20,
        "upscale": True,
        "negative_queries": ["face", "hands"],
    }
    assert (
        bm.row_console_input({"image": "inputs/a.jpg"}, "bucket", "inputs/")["image"]
        == "s3://bucket/inputs/a.jpg"
    )


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ({"image": "a.jpg", "steps": "0"}, "steps", "must be >= 1, got 0"),
        ({"image": "a.jpg", "num_images": "9"}, "num_images", "must be <= 4, got 9"),
        ({"image": "a.jpg", "colour": "red"}, "row", "unknown field(s) colour"),
        ({"steps": 4}, "image", "must be an s3:// URI or a key"),
        (["a.jpg"], "row", "must be a JSON object, got list"),
    ],
)
def test_bad_rows_name_field_and_limit(row, field, message):
    with pytest.raises(RequestError) as caught:
        bm.row_console_input(row, "bucket", "inputs/")
    assert caught.value.field == field and message in caught.value.detail


@pytest.mark.parametrize(
    ("key", "body", "message"),
    [
        ("m.txt", b"image\na.jpg\n", "must end with one of .csv, .jsonl, .ndjson"),
        ("m.csv", b"  \n", "the manifest is empty"),
        ("m.csv", b"image,colour\na.jpg,red\n", "unknown column(s) colour"),
        ("m.csv", b"image\na.jpg,extra\n", "line 2 has more cells than the header"),
        ("m.jsonl", b'{"image": "a.jpg"}\nnot json\n', "line 2 is not JSON"),
        ("m.csv", b"image\n" + b"a.jpg\n" * (bm.MAX_ROWS + 1), f"the limit is {bm.MAX_ROWS} rows"),
    ],
)
def test_bad_manifests_are_refused_with_the_reason(key, body, message):
    with pytest.raises(RequestError) as caught:
        bm.parse_manifest(body, key)
    assert caught.value.field == "batch" and message in caught.value.detail


def test_cross_product_and_batch_id():
    rows = bm.cross_product(
        ["a.jpg", "b.jpg"], [{"adapter": "skirt"}, {"adapter": "coat", "prompt": "a coat"}]
    )
    assert [(r["image"], r["adapter"]) for r in rows] == [
        ("a.jpg", "skirt"),
        ("a.jpg", "coat"),
        ("b.jpg", "skirt"),
        ("b.jpg", "coat"),
    ]
    with pytest.raises(RequestError, match="steps"):
        bm.cross_product(["a.jpg"], [{"steps": "1000"}])
    with pytest.raises(RequestError, match="unknown field"):
        bm.cross_product(["a.jpg"], [{"image": "b.jpg"}])
    content = json.dumps(rows).encode()
    assert bm.batch_id_for(content, "v1") == bm.batch_id_for(content, "v1") != bm.batch_id_for(content, "v2")


OUTFIT_CSV = (
    "image,prompt,lower-body.adapter,lower-body.mask_mode,lower-body.mask_box,upper.garment_image,upper.prompt\n"
    'a.jpg,studio photo,jeans,box,"0,0.5,1,1",s3://in/garments/top.png,a silk blouse\n'
    "b.jpg,studio photo,,,,,\n"
)


def test_class_prefixed_columns_make_a_row_an_outfit():
    first, second = (
        bm.row_console_input(row, "in", "inputs/") for row in bm.parse_manifest(OUTFIT_CSV.encode(), "o.csv")
    )
    assert first == {
        "image": "s3://in/inputs/a.jpg",
        "prompt": "studio photo",
        "garments": [
            {"garment_class": "lower-body", "adapter": "jeans", "mask_mode": "box", "mask_box": "0,0.5,1,1"},
            {
                "garment_class": "upper-body",
                "garment_image": "s3://in/garments/top.png",
                "prompt": "a silk blouse",
            },
        ],
    }
    assert "garments" not in second  # no garment cell set: a job as before
    # a JSON Lines row may list garments as a console input does, and mix in columns
    jsonl = {
        "image": "c.jpg",
        "garments": [{"garment_class": "upper", "adapter": "tee"}],
        "upper.prompt": "a tee",
    }
    console = bm.row_console_input(jsonl, "in", "inputs/")
    assert console["garments"] == [{"garment_class": "upper-body", "adapter": "tee", "prompt": "a tee"}]
    # and the CSV writer spells garments back as columns
    text = bm.write_manifest([{"image": "a.jpg", **{"garments": first["garments"]}}], "csv")
    assert text.splitlines()[0] == (
        "image,lower-body.adapter,lower-body.mask_mode,lower-body.mask_box,upper-body.garment_image,upper-body.prompt"
    )


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ({"image": "a.jpg", "hat.adapter": "x"}, "row", "unknown field(s) hat.adapter"),
        ({"image": "a.jpg", "upper.num_images": "2"}, "row", "unknown field(s) upper.num_images"),
        ({"image": "a.jpg", "upper.steps": "500"}, "upper-body.steps", "must be <= 150"),
        ({"image": "a.jpg", "upper.mask_box": "1,2"}, "upper-body.mask_box", "four numbers"),
        ({"image": "a.jpg", **{f"{c}.prompt": "p" for c in ("upper", "lower", "shoes", "dress")}}, "garments",
         "has 4 garments; the limit is 3"),
        ({"image": "a.jpg", "upper.mask_image": "data:image/png;base64,iVBORw0KGgo="},
         "upper-body.mask_image", "by s3:// URI"),
    ],
)  # fmt: skip
def test_bad_outfit_cells_name_the_garment_and_the_column(row, field, message):
    with pytest.raises(RequestError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        bm.row_console_input(row, "in", "inputs/")
    assert caught.value.field == field


def test_an_unknown_garment_column_in_the_header_is_refused_with_the_convention():
    with pytest.raises(RequestError, match=r"unknown column\(s\) hat.adapter; known: .*<class>.<parameter>"):
        bm.parse_manifest(b"image,hat.adapter\na.jpg,x\n", "o.csv")
