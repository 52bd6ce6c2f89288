"""Crop-to-mask geometry and feathered paste-back, without a model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from support.images import box_mask, noise_image

from tryon.handlers import crop


def test_binarize_threshold_and_modes():
    gray = Image.fromarray(np.array([[0, 127, 128, 255]], dtype=np.uint8), "L")
    assert list(crop.binarize(gray).getdata()) == [0, 0, 255, 255]
    rgba = Image.new("RGBA", (4, 4), (255, 255, 255, 0))
    out = crop.binarize(rgba)
    assert out.mode == "L" and set(out.getdata()) == {255}
    palette = gray.convert("P")
    assert list(crop.binarize(palette).getdata()) == [0, 0, 255, 255]


def test_mask_bbox_and_empty():
    assert crop.mask_bbox(box_mask((50, 40), (10, 5, 20, 30))) == (10, 5, 20, 30)
    assert crop.mask_bbox(Image.new("L", (50, 40), 0)) is None


@pytest.mark.parametrize(
    ("bbox", "image_size", "work", "padding", "expected"),
    [
        # wide bbox in a big photo, square working size: grow height symmetrically
        ((100, 50, 180, 120), (300, 200), (64, 64), 32, (68, 13, 212, 157)),
        # tall bbox, square working size: grow width
        ((140, 20, 160, 180), (300, 200), (64, 64), 0, (70, 20, 230, 180)),
        # 2:1 working aspect
        ((100, 100, 140, 140), (400, 400), (128, 64), 10, (60, 90, 180, 150)),
        # mask in the top-left corner: shifted inside, not shrunk
        ((0, 0, 10, 30), (300, 200), (64, 64), 8, (0, 0, 38, 38)),
        # mask at the bottom-right corner
        ((290, 190, 300, 200), (300, 200), (64, 64), 5, (285, 185, 300, 200)),
        # photo too short for the aspect: spans the full height
        ((10, 0, 290, 20), (300, 40), (64, 64), 0, (10, 0, 290, 40)),
    ],
)
def test_crop_box_geometry(bbox, image_size, work, padding, expected):
    assert crop.crop_box_for_mask(bbox, image_size, work, padding) == expected


def test_crop_box_properties_random():
    rng = np.random.default_rng(0)
    for _ in range(300):
        w, h = (int(v) for v in rng.integers(8, 600, 2))
        left, right = sorted(int(v) for v in rng.integers(0, w + 1, 2))
        top, bottom = sorted(int(v) for v in rng.integers(0, h + 1, 2))
        right, bottom = max(right, left + 1), max(bottom, top + 1)
        if right > w or bottom > h:
            continue
        work = (int(rng.choice([64, 512, 768])), int(rng.choice([64, 512, 1024])))
        padding = int(rng.integers(0, 100))
        box = crop.crop_box_for_mask((left, top, right, bottom), (w, h), work, padding)
        bl, bt, br, bb = box
        assert 0 <= bl <= left and 0 <= bt <= top and right <= br <= w and bottom <= bb <= h
        assert bl <= max(0, left - padding) and br >= min(w, right + padding)
        assert bt <= max(0, top - padding) and bb >= min(h, bottom + padding)
        bw, bh = br - bl, bb - bt
        spans = bw == w or bh == h
        # the working aspect holds to rounding, unless the photo is too small in one direction
        assert spans or abs(bw / bh - work[0] / work[1]) <= 1.0 / min(bw, bh) + 1e-9


def test_feather_weights_zero_outside_mask():
    mask = box_mask((40, 30), (10, 10, 30, 25))
    weights = crop.feather_weights(mask, 3)
    inside = np.asarray(mask) > 0
    assert weights.shape == (30, 40)
    assert np.all(weights[~inside] == 0)
    assert np.all(weights[inside] > 0) and weights.max() <= 1.0
    assert weights[17, 20] > weights[10, 10]  # soft towards the edge
    np.testing.assert_array_equal(crop.feather_weights(mask, 0), inside.astype(np.float32))


@pytest.mark.parametrize("feather", [0, 4, 12])
def test_paste_back_identical_outside_mask(feather):
    original = noise_image((300, 200), 1)
    mask = Image.new("L", (300, 200), 0)
    mask.paste(255, (100, 50, 180, 120))
    mask.paste(255, (60, 150, 70, 190))
    bbox = crop.mask_bbox(mask)
    box = crop.crop_box_for_mask(bbox, original.size, (64, 64), 16)
    generated = noise_image((64, 64), 2)  # working size, not the box size
    result = crop.paste_back(original, generated, box, mask, feather=feather)
    assert result.size == original.size and result.mode == "RGB"
    orig_px, out_px = np.asarray(original), np.asarray(result)
    outside = np.asarray(mask) == 0
    np.testing.assert_array_equal(out_px[outside], orig_px[outside])
    inside = ~outside
    assert np.mean(np.any(out_px[inside] != orig_px[inside], axis=-1)) > 0.9
    assert original.tobytes() == noise_image((300, 200), 1).tobytes()  # the input is untouched


def test_paste_back_full_weight_takes_generated_pixels():
    original = Image.new("RGB", (32, 32), (0, 0, 0))
    mask = Image.new("L", (32, 32), 255)
    generated = Image.new("RGB", (64, 64), (200, 100, 50))
    result = crop.paste_back(original, generated, (0, 0, 32, 32), mask, feather=0)
    assert set(result.getdata()) == {(200, 100, 50)}


def test_paste_back_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="RGB"):
        crop.paste_back(
            Image.new("L", (8, 8)), Image.new("RGB", (8, 8)), (0, 0, 8, 8), Image.new("L", (8, 8))
        )
    with pytest.raises(ValueError, match="mask size"):
        crop.paste_back(
            Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8)), (0, 0, 8, 8), Image.new("L", (4, 4))
        )


@pytest.mark.parametrize("feather", [0, 4, 12])
def test_blend_mask_is_the_feather_weights_in_8_bits(feather):
    mask = box_mask((80, 60), (10, 10, 70, 50))
    mask.paste(255, (2, 2, 3, 58))  # a one-pixel line: blurred to almost nothing, still blended
    levels = np.asarray(crop.blend_mask(mask, feather)).astype(int)
    inside = np.asarray(mask) > 0
    assert np.all(levels[~inside] == 0) and np.all(levels[inside] >= 1)
    expected = np.rint(crop.feather_weights(mask, feather) * 255)
    assert np.abs(levels - np.where(inside, np.maximum(expected, 1), 0)).max() == 0


def test_paste_back_of_several_images_shares_the_window():
    original = noise_image((300, 200), 1)
    mask = box_mask((300, 200), (100, 50, 180, 120))
    box = crop.crop_box_for_mask(crop.mask_bbox(mask), original.size, (64, 64), 16)
    paste = crop.PasteBack(original, box, mask)
    for seed in (2, 3):
        generated = noise_image((64, 64), seed)
        region = paste.region(generated)
        assert region.size == (box[2] - box[0], box[3] - box[1])
        whole = crop.paste_back(original, generated, box, mask)
        assert np.array_equal(np.asarray(whole.crop(box)), np.asarray(region))
        assert np.array_equal(np.asarray(paste.image(generated)), np.asarray(whole))
