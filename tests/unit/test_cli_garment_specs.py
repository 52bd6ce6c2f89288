"""``--garment`` and ``--mask-mode`` specs of tryon run/submit: overrides and uploads (no AWS, no models)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tryon.cli import garment_specs
from tryon.core.errors import RequestError


def test_the_issue_example_is_an_outfit_of_two():
    specs = garment_specs.parse(["upper=packshot.jpg", "lower=adapter:jeans"], ["lower=box:0,0.5,1,1"])
    assert specs.overrides == {
        "lower-body.adapter": "jeans",
        "lower-body.mask_mode": "box",
        "lower-body.mask_box": "0,0.5,1,1",
    }
    assert specs.uploads == [
        garment_specs.Upload("upper-body.garment_image", Path("packshot.jpg"), "garment", "--garment")
    ]


def test_a_lone_garment_as_before_outfits():
    specs = garment_specs.parse(["packshot.png"], ["image:painted.png"])
    assert specs.overrides == {"mask_mode": "image"}
    assert [(u.override, u.kind) for u in specs.uploads] == [
        ("garment_image", "garment"),
        ("mask_image", "mask"),
    ]
    assert garment_specs.parse([], ["text:a denim skirt"]).overrides == {
        "mask_mode": "text",
        "query": "a denim skirt",
    }
    assert garment_specs.parse([], ["class:lower"]).overrides == {
        "mask_mode": "class",
        "garment_class": "lower-body",
    }
    uri = "s3://in/masks/m.png"
    assert garment_specs.parse([], [f"shoes=image:{uri}"]).overrides == {
        "footwear.mask_mode": "image",
        "footwear.mask_image": uri,
    }


def test_a_class_given_twice_adds_to_its_garment():
    specs = garment_specs.parse(
        ["lower=adapter:jeans+jeans.jpg", "upper=class-free-top.png"], ["upper=class"]
    )
    assert specs.overrides == {"lower-body.adapter": "jeans", "upper-body.mask_mode": "class"}
    assert [u.override for u in specs.uploads] == ["lower-body.garment_image", "upper-body.garment_image"]


@pytest.mark.parametrize(
    ("garments", "masks", "message"),
    [
        (["hat=top.jpg"], [], "unknown garment class 'hat'"),
        ([], ["upper=lasso"], "unknown mask mode 'lasso'"),
        ([], ["upper=box:0,0,1"], "four numbers"),
        ([], ["text"], "text needs a query"),
        ([], ["class"], "class needs a garment class"),
        ([], ["upper=image"], "image needs a mask file"),
        (["upper=adapter:"], [], "adapter: needs a name"),
        (["top.jpg"], ["lower=box:0,0.5,1,1"], "mixes a lone garment"),
        (["upper=a.jpg", "upper=b.jpg"], [], "upper-body.garment_image named twice"),
    ],
)
def test_bad_specs_name_the_option(garments, masks, message):
    with pytest.raises(RequestError, match=message):
        garment_specs.parse(garments, masks)
