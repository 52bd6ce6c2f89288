"""The body controls' pure parts: keep_body spellings and limits, OpenPose drawings, depth maps (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from tryon.core import contract
from tryon.core.errors import RequestError
from tryon.handlers import control_images
from tryon.handlers.control_images import COLORS, LIMBS, OPENPOSE_FROM_COCO, depth_to_image, draw_skeletons

# A person standing in a 100 x 200 frame, COCO order: nose, eyes, ears, shoulders, elbows, wrists,
# hips, knees, ankles (left before right).
STANDING = [
    (50, 20), (47, 17), (53, 17), (44, 19), (56, 19),
    (40, 50), (60, 50), (35, 80), (65, 80), (33, 110), (67, 110),
    (44, 110), (56, 110), (43, 150), (57, 150), (42, 190), (58, 190),
]  # fmt: skip
SURE = [0.9] * 17


@pytest.mark.parametrize(
    ("value", "controls"),
    [
        ("none", ()),
        ("depth", ("depth",)),
        ("pose", ("pose",)),
        ("depth+pose", ("depth", "pose")),
        ("pose+depth", ("depth", "pose")),
    ],
)
def test_keep_body_spellings(value, controls):
    assert contract.parse_keep_body(value) == controls
    assert contract.keep_body_name(controls) in contract.KEEP_BODY_CHOICES


@pytest.mark.parametrize(
    "value",
    ["skeleton", "depth+depth", "depth+", "none+pose", "depth,pose", "Depth", " pose", "depth + pose", ""],
)
def test_keep_body_refuses_anything_else_naming_the_choices(value):
    with pytest.raises(RequestError) as info:
        contract.parse_keep_body(value)
    assert info.value.field == "keep_body" and "none, depth, pose, depth+pose" in str(info.value)


def test_every_control_has_its_fields_in_the_contract():
    fields = contract.SD_INPAINT.names
    for control in contract.BODY_CONTROLS:
        assert {f"{control}_scale", f"{control}_start", f"{control}_end"} <= fields
        assert contract.SD_INPAINT[f"{control}_scale"].default == contract.CONTROL_SCALE
    contract.check_control_window("pose", 0.0, 0.1)
    with pytest.raises(RequestError, match=r"^pose_start: 0\.5 must be < pose_end 0\.5"):
        contract.check_control_window("pose", 0.5, 0.5)


def test_coco_keypoints_become_openpose_points_with_a_neck():
    points = control_images.to_openpose(STANDING, SURE, (100, 200))
    assert len(points) == 18
    assert points[0] == (50, 20)  # nose
    assert points[1] == (50, 50)  # neck: between the shoulders
    assert points[2] == (60, 50) and points[5] == (40, 50)  # OpenPose's right shoulder is COCO's right (6)
    assert points[14] == (53, 17) and points[15] == (47, 17)  # right eye, left eye
    assert [OPENPOSE_FROM_COCO.count(i) for i in range(17)] == [1] * 17  # every COCO point used once


def test_unsure_or_outside_points_are_left_out():
    scores = list(SURE)
    scores[5] = 0.1  # left shoulder unsure: no left shoulder and no neck
    keypoints = list(STANDING)
    keypoints[16] = (58, 250)  # right ankle below the frame
    points = control_images.to_openpose(keypoints, scores, (100, 200))
    assert points[5] is None and points[1] is None and points[10] is None
    assert points[2] is not None
    with pytest.raises(ValueError, match="17 COCO keypoints"):
        control_images.to_openpose(STANDING[:5], SURE[:5], (100, 200))


def test_the_skeleton_is_drawn_in_openposes_colours_on_black():
    points = control_images.to_openpose(STANDING, SURE, (100, 200))
    drawing = np.asarray(draw_skeletons([points], (100, 200)))
    assert drawing.shape == (200, 100, 3)
    assert tuple(drawing[0, 0]) == (0, 0, 0)  # background
    assert tuple(drawing[20, 50]) == COLORS[0]  # the nose joint, full colour
    assert tuple(drawing[50, 50]) == COLORS[1]  # the neck joint
    # the middle of the right thigh (OpenPose 8 -> 9) is the limb's colour at 60 %
    limb = LIMBS.index((8, 9))
    assert tuple(drawing[130, 57]) == tuple(int(c * 0.6) for c in COLORS[limb])
    assert control_images.visible_joints([points]) == 18
    # nobody: a black image
    assert not np.asarray(draw_skeletons([], (64, 32))).any()


def test_depth_maps_are_min_max_scaled_grey_near_bright():
    depth = np.array([[0.5, 1.0], [2.0, 4.5]])
    image = np.asarray(depth_to_image(depth))
    assert image.shape == (2, 2, 3) and np.array_equal(image[..., 0], image[..., 2])
    assert image[0, 0, 0] == 0 and image[1, 1, 0] == 255 and image[1, 0, 0] == 96  # (2-0.5)/4*255
    assert not np.asarray(depth_to_image(np.full((3, 3), 7.0))).any()  # flat: black
