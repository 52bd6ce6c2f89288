"""The body ControlNets' input images (numpy and Pillow only): depth maps and OpenPose-style skeletons.

Depth ControlNets take a relative depth map, near bright (:func:`depth_to_image`). Pose
ControlNets (``lllyasviel/control_v11p_sd15_openpose``, the SDXL OpenPose ControlNets) were
trained on OpenPose's 18-point body drawings (:func:`draw_skeletons`): coloured limbs at 60 %
brightness and coloured joints on black, one colour per limb and joint (the palette and limb
order of OpenPose and of ``controlnet_aux``'s ``draw_bodypose``). ViTPose and other COCO
estimators give 17 keypoints without a neck, so :func:`to_openpose` adds it (the shoulders'
midpoint) and reorders them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

#: A keypoint drawn only at this confidence or more (ViTPose heatmap maxima).
MIN_SCORE = 0.3
#: OpenPose body order -> COCO index (``None``: the neck, computed from both shoulders).
OPENPOSE_FROM_COCO: tuple[int | None, ...] = (0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
_LEFT_SHOULDER, _RIGHT_SHOULDER = 5, 6
#: Limbs as pairs of OpenPose indices, in OpenPose's drawing order (its colour is the limb's index).
LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip
COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip
#: Limb half-width and joint radius at 512 px (OpenPose's), scaled with the image's short side.
STICK_WIDTH, JOINT_RADIUS, REFERENCE_SIDE = 4, 4, 512

Point = tuple[float, float]


def to_openpose(
    keypoints: Sequence[Sequence[float]], scores: Sequence[float], size: tuple[int, int]
) -> list[Point | None]:
    """The 18 OpenPose body points of one person from COCO-17 ``keypoints`` (x, y) and ``scores``.

    A point is None when its score is below :data:`MIN_SCORE` or it lies outside ``size``
    (width, height); the neck needs both shoulders.
    """
    if len(keypoints) != 17 or len(scores) != 17:
        raise ValueError(f"expected 17 COCO keypoints and scores, got {len(keypoints)} and {len(scores)}")
    width, height = size

    def visible(index: int) -> Point | None:
        x, y = (float(v) for v in keypoints[index][:2])
        inside = 0 <= x < width and 0 <= y < height
        return (x, y) if inside and float(scores[index]) >= MIN_SCORE else None

    points = []
    for coco in OPENPOSE_FROM_COCO:
        if coco is not None:
            points.append(visible(coco))
            continue
        left, right = visible(_LEFT_SHOULDER), visible(_RIGHT_SHOULDER)
        points.append(None if left is None or right is None else _midpoint(left, right))
    return points


def _midpoint(a: Point, b: Point) -> Point:
    return (a[0] + b[0]) / 2, (a[1] + b[1]) / 2


def _limb_polygon(a: Point, b: Point, half_width: float) -> list[Point]:
    """An ellipse from ``a`` to ``b`` (OpenPose draws limbs as filled ellipses), as a polygon."""
    (x1, y1), (x2, y2) = a, b
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half_length = math.hypot(x2 - x1, y2 - y1) / 2
    angle = math.atan2(y2 - y1, x2 - x1)
    cos, sin = math.cos(angle), math.sin(angle)
    polygon = []
    for step in range(36):
        t = math.radians(step * 10)
        ex, ey = half_length * math.cos(t), half_width * math.sin(t)
        polygon.append((cx + ex * cos - ey * sin, cy + ex * sin + ey * cos))
    return polygon


def draw_skeletons(people: Sequence[Sequence[Point | None]], size: tuple[int, int]) -> Image.Image:
    """An RGB image of ``size`` (width, height): each person's OpenPose skeleton on black.

    Limbs are drawn first, at 60 % of their colour, then joints over them at full colour, as
    OpenPose and ``controlnet_aux`` draw them; line widths scale with the image's short side.
    """
    width, height = size
    scale = min(width, height) / REFERENCE_SIDE
    half_width = max(1.0, STICK_WIDTH * scale)
    radius = max(1.0, JOINT_RADIUS * scale)
    canvas = Image.new("RGB", size, (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    for points in people:
        for index, (start, end) in enumerate(LIMBS):
            a, b = points[start], points[end]
            if a is None or b is None:
                continue
            color = tuple(int(c * 0.6) for c in COLORS[index])
            draw.polygon(_limb_polygon(a, b, half_width), fill=color)
    for points in people:
        for index, point in enumerate(points):
            if point is not None:
                x, y = point
                draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=COLORS[index])
    return canvas


def visible_joints(people: Sequence[Sequence[Point | None]]) -> int:
    """How many joints the drawing shows, over all people."""
    return sum(point is not None for points in people for point in points)


def depth_to_image(depth: np.ndarray) -> Image.Image:
    """A relative depth (or disparity) map as the depth ControlNet's input: near is bright, min-max scaled.

    Depth Anything and DPT/MiDaS predict relative inverse depth (large = near), which is what
    the depth ControlNets were trained on. A flat map gives a black image.
    """
    values = np.asarray(depth, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    span = high - low
    scaled = np.zeros_like(values) if span <= 0 else (values - low) / span
    gray = np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(gray, "L").convert("RGB")
