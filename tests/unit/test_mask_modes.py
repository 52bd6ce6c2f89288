"""Mask modes without models: boxes, garment classes, mode resolution, what CLIPSeg is asked, mask pixels."""

from __future__ import annotations

import pytest
from PIL import Image, ImageChops
from support.images import encode

from tryon.core import mask_modes
from tryon.core.errors import RequestError
from tryon.workflow import mask_pixels as masks
from tryon.workflow import params

# --- boxes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size", "pixels"),
    [
        ("0,0.5,1,1", (640, 480), (0, 240, 640, 480)),  # fractions: the lower half
        ("0.1,0.1,0.2,0.2", (33, 33), (3, 3, 7, 7)),  # rounded outwards: no touched pixel is lost
        ("10,20,110,220", (640, 480), (10, 20, 110, 220)),  # pixels
        ("0, 0, 640, 480", (640, 480), (0, 0, 640, 480)),  # spaces; the whole photo
        ("0,0,1,1", (640, 480), (0, 0, 640, 480)),  # all within 0..1: fractions, not a 1-pixel box
        ("0,0,2,1", (640, 480), (0, 0, 2, 1)),  # a value above 1: pixels
    ],
)
def test_a_box_is_fractions_when_all_four_lie_in_0_to_1_else_pixels(text, size, pixels):
    assert mask_modes.parse_box(text).pixels(*size) == pixels


def test_a_box_from_a_json_list_reads_as_its_text():
    assert mask_modes.parse_box([0, 0.5, 1, 1]) == mask_modes.parse_box("0,0.5,1,1")
    assert mask_modes.parse_box("0, .5, 1, 1").text() == "0,0.5,1,1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0,0,1", "four numbers"),
        ("a,b,c,d", "four numbers"),
        ("0,0,1,1,1", "four numbers"),
        ("-1,0,10,10", "negative"),
        ("0.5,0,0.5,1", "empty"),
        ("10,10,5,20", "empty"),
        ("0,0,0.5,100", "mixes pixels and fractions"),
        ("0,0,10.5,20", "mixes pixels and fractions"),
    ],
)
def test_bad_boxes_are_refused_naming_the_field(text, message):
    with pytest.raises(RequestError, match=message) as caught:
        mask_modes.parse_box(text)
    assert caught.value.field == "mask_box"


def test_a_pixel_box_outside_the_photo_is_refused_with_the_photo_size():
    box = mask_modes.parse_box("0,0,900,600")
    with pytest.raises(RequestError, match="outside the 640x480 photo") as caught:
        box.pixels(640, 480, field="lower-body.mask_box")
    assert caught.value.field == "lower-body.mask_box"


def test_a_thin_fraction_box_still_covers_the_pixels_it_touches():
    assert mask_modes.parse_box("0.5,0.5,0.5001,0.6").pixels(10, 10) == (5, 5, 6, 6)


# --- classes and modes --------------------------------------------------------------------


def test_classes_are_the_presets_and_order_the_passes():
    assert {c.name: c.layer("class") for c in mask_modes.CLASSES} == params.GARMENT_CLASSES
    for name in mask_modes.CLASS_NAMES:
        assert params.BUILTIN_PRESETS[name] == params.GARMENT_CLASSES[name]
    ranks = [mask_modes.garment_class(n).rank for n in mask_modes.CLASS_NAMES]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)
    order = list(mask_modes.CLASS_NAMES)
    assert order.index("lower-body") < order.index("upper-body") < order.index("outerwear")
    assert order[-1] == "footwear"


@pytest.mark.parametrize(
    ("alias", "name"),
    [("upper", "upper-body"), ("LOWER", "lower-body"), ("shoes", "footwear"), ("lower_body", "lower-body")],
)
def test_class_aliases(alias, name):
    assert mask_modes.canonical_class(alias) == name


def test_an_unknown_class_lists_the_known_ones():
    with pytest.raises(RequestError, match="unknown garment class 'hat'; known: full-body, dress") as caught:
        mask_modes.garment_class("hat", "garments[1].garment_class")
    assert caught.value.field == "garments[1].garment_class"


def test_a_painted_mask_takes_no_keep_regions_from_its_class():
    cls = mask_modes.garment_class("footwear")
    assert cls.layer("class")["negative_queries"] == ["hands", "pants", "skirt"]
    assert cls.layer("box")["negative_queries"] == ["hands", "pants", "skirt"]
    assert cls.layer("image") == {"dilate": 4}


@pytest.mark.parametrize(
    ("values", "mode"),
    [
        ({}, "text"),
        ({"garment_class": "dress"}, "class"),
        ({"mask_image": "s3://b/masks/m.png"}, "image"),
        ({"mask_image": "s3://b/masks/m.png", "garment_class": "dress"}, "image"),
        ({"mask_box": "0,0,1,1"}, "text"),  # a box alone restricts today's text mode
        ({"mask_mode": "box", "mask_box": "0,0,1,1"}, "box"),
    ],
)
def test_an_unset_mode_is_the_one_the_parameters_imply(values, mode):
    assert mask_modes.resolve_mode(values) == mode


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"mask_mode": "image"}, "mask_image", "is required with mask_mode image"),
        ({"mask_mode": "box"}, "mask_box", "is required with mask_mode box"),
        ({"mask_mode": "class"}, "garment_class", "is required with mask_mode class"),
        (
            {"mask_mode": "box", "mask_box": "0,0,1,1", "mask_image": "s3://b/m.png"},
            "mask_image",
            "only with",
        ),
    ],
)
def test_a_mode_without_what_it_needs_is_refused(values, field, message):
    with pytest.raises(RequestError, match=message) as caught:
        mask_modes.check_plan(values, mask_modes.resolve_mode(values), "upper-body.")
    assert caught.value.field == f"upper-body.{field}"


def test_what_clipseg_is_asked_in_each_mode():
    values = {"query": "a skirt", "negative_queries": ["face", "hands"]}
    assert mask_modes.segment_ask(values, "text") == mask_modes.SegmentAsk(
        "garment", ("a skirt",), ("face", "hands")
    )
    assert mask_modes.segment_ask(values, "class").role == "garment"
    # box and painted masks: CLIPSeg finds only the keep-regions, or is not called at all
    assert mask_modes.segment_ask(values, "box") == mask_modes.SegmentAsk("keep", ("face", "hands"), ())
    assert mask_modes.segment_ask(values, "image").role == "keep"
    assert mask_modes.segment_ask({**values, "negative_queries": []}, "image") is None
    assert mask_modes.segment_ask({**values, "negative_queries": []}, "box") is None
    assert mask_modes.box_role("box", [0, 0, 1, 1]) == "mask"
    assert mask_modes.box_role("text", [0, 0, 1, 1]) == "restrict"
    assert mask_modes.box_role("text", None) is None


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("mask_mode", "lasso", "unknown mask mode 'lasso'; known: text, class, image, box"),
        ("garment_class", "hat", "unknown garment class"),
        ("mask_box", "1,2,3", "four numbers"),
        ("mask_image", "masks/m.png", "must be an s3:// URI"),
        ("mask_overlap", "first-wins", "must be one of later-wins, refuse"),
    ],
)
def test_the_new_parameters_are_checked_in_every_layer(name, value, message):
    with pytest.raises(RequestError, match=message) as caught:
        params.validate_layer({name: value}, "metadata", from_text=True)
    assert caught.value.field == f"{name} (from metadata)"


def test_the_new_parameters_read_back_in_canonical_form():
    values = params.validate_layer(
        {"garment_class": "upper", "mask_box": [0, 0.5, 1, 1], "mask_mode": "box"}, "input"
    )
    assert values == {"garment_class": "upper-body", "mask_box": "0,0.5,1,1", "mask_mode": "box"}


# --- pixels -------------------------------------------------------------------------------


def test_a_painted_mask_of_any_size_is_resized_to_the_photo_and_binarised():
    painted = Image.new("L", (20, 15), 0)
    painted.paste(200, (0, 0, 10, 15))  # the left half, gray 200 (> 127 paints)
    mask = masks.painted_mask(encode(painted), photo_size=(80, 60))
    assert mask.mode == "L" and mask.size == (80, 60)
    assert set(mask.getdata()) == {0, 255}
    assert masks.coverage(mask) == pytest.approx(0.5, abs=0.02)


def test_a_painted_mask_on_a_transparent_canvas_paints_its_strokes_only():
    canvas = Image.new("RGBA", (40, 30), (255, 255, 255, 0))  # white, but transparent
    canvas.paste((255, 255, 255, 255), (0, 0, 20, 30))
    mask = masks.painted_mask(encode(canvas), photo_size=(40, 30))
    assert masks.coverage(mask) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (encode(Image.new("L", (40, 30), 0)), "all black: it paints nothing"),
        (encode(Image.new("L", (40, 30), 255)), "all white: it would repaint the whole photo"),
        (encode(Image.new("L", (30, 40), 255)), "aspect ratio"),
        (b"not an image", "not a decodable PNG, JPEG or WebP"),
        (encode(Image.new("L", (40, 30), 90), "GIF"), "has format GIF"),
        (encode(Image.new("L", (40, 30), 90))[:-30], "truncated"),
        (encode(Image.new("1", (10000, 7500))), "decompression bomb|the limit is"),
    ],
)
def test_bad_painted_masks_are_refused_naming_the_field(data, message):
    with pytest.raises(RequestError, match=message) as caught:
        masks.painted_mask(data, photo_size=(40, 30), field="upper-body.mask_image", max_pixels=1_000_000)
    assert caught.value.field == "upper-body.mask_image"


def test_box_keep_and_restrict():
    size = (10, 10)
    box = masks.box_mask((0, 5, 10, 10), size)
    assert masks.coverage(box) == 0.5
    keep = masks.box_mask((0, 8, 10, 10), size)
    assert masks.coverage(masks.subtract(box, keep)) == pytest.approx(0.3)
    clipseg = masks.box_mask((2, 0, 4, 10), size)
    assert masks.intersect(clipseg, box).getbbox() == (2, 5, 4, 10)
    assert masks.union([clipseg, box]).getbbox() == (0, 0, 10, 10)


def test_later_wins_leaves_each_pixel_to_the_last_mask_that_paints_it():
    size = (12, 12)
    lower = masks.box_mask((0, 5, 12, 12), size)  # waist down
    upper = masks.box_mask((0, 0, 12, 7), size)  # down to the waistband: two rows overlap
    shoes = masks.box_mask((0, 10, 12, 12), size)
    found = masks.overlaps([lower, upper, shoes])
    assert [(o.earlier, o.later, o.pixels) for o in found] == [(0, 1, 24), (0, 2, 24)]
    exclusive = masks.later_wins([lower, upper, shoes])
    assert exclusive[0].getbbox() == (0, 7, 12, 10)  # lower gave the waistband to the top, the feet to shoes
    assert exclusive[1].getbbox() == (0, 0, 12, 7) and exclusive[2].getbbox() == (0, 10, 12, 12)
    assert masks.overlaps(exclusive) == []
    before, after = masks.union([lower, upper, shoes]), masks.union(exclusive)
    assert ImageChops.difference(before, after).getbbox() is None
