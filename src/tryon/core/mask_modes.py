"""Where a garment goes: the mask modes, garment classes, boxes, and what CLIPSeg is asked (light).

A job (or each garment of an outfit) says where to paint with one ``mask_mode``
(docs/workflow.md, "Where the garment goes: mask modes"):

- ``text``: CLIPSeg's mask of ``query`` minus ``negative_queries`` (the keep-regions);
- ``class``: the same with a garment class's own query and keep-regions (:data:`CLASSES`);
- ``image``: a mask the caller painted (``mask_image``), resized to the photo; no CLIPSeg
  call unless keep-regions are named;
- ``box``: a rectangle (``mask_box``) minus the keep-regions.

With ``text`` or ``class`` a ``mask_box`` restricts CLIPSeg's mask to the box. Standard
library only: Prepare, the steps and the CLI all use it; the pixels are
:mod:`tryon.workflow.mask_pixels`'s.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tryon.core.errors import RequestError

MaskMode = Literal["text", "class", "image", "box"]
#: Every mask mode, in the order the docs list them.
MASK_MODES: tuple[MaskMode, ...] = ("text", "class", "image", "box")
#: Modes whose mask CLIPSeg draws (the others draw their own; CLIPSeg only finds keep-regions).
SEGMENTED_MODES = frozenset({"text", "class"})


@dataclass(frozen=True)
class GarmentClass:
    """One garment class: where CLIPSeg looks for it, what it keeps out, and when it is worn.

    ``rank`` orders an outfit's passes (lower first); ``settings`` are further parameters the
    class sets (a tighter ``dilate`` for footwear).
    """

    name: str
    query: str
    keep: tuple[str, ...]
    rank: int
    aliases: tuple[str, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    about: str = ""

    def layer(self, mode: str) -> dict[str, Any]:
        """The parameters this class sets for a garment in ``mode`` (a layer below the presets).

        A painted mask (``image``) is taken as painted: the class adds no keep-regions there.
        """
        if mode == "image":
            return dict(self.settings)
        return {"query": self.query, "negative_queries": list(self.keep), **self.settings}


#: Regions every garment class keeps out of its mask: who the person is, and what they hold.
_WHO = ("face", "hair", "hands")
#: The garment classes, in the order an outfit's passes run (``rank``): the base layer first,
#: lower body before upper body (a top painted later covers the waistband), outerwear over
#: Most garments in one job: each adds an inpainting pass and up to one CLIPSeg request (the
#: time limits of tryon.core.timeouts count that many).
MAX_GARMENTS = 3
#: the top, footwear last.
CLASSES: tuple[GarmentClass, ...] = (
    GarmentClass("full-body", "clothes", (*_WHO, "shoes"), 0, ("full",), about="whole outfits"),
    GarmentClass("dress", "a dress", (*_WHO, "shoes"), 1, (), about="dresses, jumpsuits"),
    GarmentClass(
        "lower-body",
        "pants or a skirt",
        (*_WHO, "shirt", "shoes"),
        2,
        ("lower",),
        about="trousers, skirts, shorts",
    ),
    GarmentClass(
        "upper-body",
        "upper body clothes",
        (*_WHO, "pants", "skirt"),
        3,
        ("upper",),
        about="tops, shirts, knitwear",
    ),
    GarmentClass(
        "outerwear",
        "a jacket or a coat",
        (*_WHO, "pants", "skirt"),
        4,
        ("outer",),
        about="jackets, coats, worn over a top",
    ),
    GarmentClass(
        "footwear",
        "shoes",
        ("hands", "pants", "skirt"),
        5,
        ("shoes", "feet"),
        {"dilate": 4},
        about="shoes, boots (a tighter mask)",
    ),
)
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
_BY_NAME = {c.name: c for c in CLASSES}
#: Short names accepted where a class prefixes a parameter (``upper.adapter``, ``--garment upper=...``).
ALIASES: dict[str, str] = {alias: c.name for c in CLASSES for alias in c.aliases}


def garment_class(name: Any, field: str = "garment_class") -> GarmentClass:
    """The class ``name`` names (an alias such as ``upper`` too); RequestError listing the known ones."""
    if isinstance(name, str):
        key = name.strip().lower().replace("_", "-")
        found = _BY_NAME.get(key) or _BY_NAME.get(ALIASES.get(key, ""))
        if found:
            return found
    raise RequestError(field, f"unknown garment class {name!r}; known: {', '.join(CLASS_NAMES)}")


def canonical_class(name: Any, field: str = "garment_class") -> str:
    """The canonical name of a class or alias (``upper`` -> ``upper-body``)."""
    return garment_class(name, field).name


def check_class(name: Any) -> None:
    """Refuse an unknown class (RequestError listing the known ones)."""
    garment_class(name)


def is_class_key(name: str) -> bool:
    """Whether ``name`` is ``<class>.<parameter>`` (a known class or alias before the dot)."""
    prefix, dot, _ = name.partition(".")
    key = prefix.strip().lower().replace("_", "-")
    return bool(dot) and (key in _BY_NAME or key in ALIASES)


def check_mode(value: Any, field: str = "mask_mode") -> MaskMode:
    """A valid mask mode (RequestError listing them)."""
    if value not in MASK_MODES:
        raise RequestError(field, f"unknown mask mode {value!r}; known: {', '.join(MASK_MODES)}")
    return value


# --- boxes ---------------------------------------------------------------------------------

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


@dataclass(frozen=True)
class Box:
    """A rectangle: left, top, right, bottom; fractions of the photo when ``relative``, else pixels."""

    left: float
    top: float
    right: float
    bottom: float
    relative: bool

    def pixels(self, width: int, height: int, field: str = "mask_box") -> tuple[int, int, int, int]:
        """The box on a ``width`` x ``height`` photo in whole pixels (right and bottom exclusive).

        Fractions are scaled and rounded outwards (a box never loses a pixel it touches);
        pixel boxes must lie inside the photo (RequestError naming its size).
        """
        if self.relative:
            box = (
                math.floor(self.left * width),
                math.floor(self.top * height),
                math.ceil(self.right * width),
                math.ceil(self.bottom * height),
            )
        else:
            box = (int(self.left), int(self.top), int(self.right), int(self.bottom))
            if box[2] > width or box[3] > height:
                raise RequestError(
                    field,
                    f"{self.text()} lies outside the {width}x{height} photo (pixel boxes must fit in it; "
                    "fractions 0..1 scale with the photo)",
                )
        return box

    def text(self) -> str:
        """The box as ``x0,y0,x1,y1`` (what :func:`parse_box` reads)."""
        return ",".join(f"{v:g}" for v in (self.left, self.top, self.right, self.bottom))


def box_text(value: Any) -> str:
    """A box's one spelling, ``x0,y0,x1,y1`` (``0, .5, 1, 1`` and ``[0, 0.5, 1, 1]`` -> ``0,0.5,1,1``)."""
    return parse_box(value).text()


def parse_box(value: Any, field: str = "mask_box") -> Box:
    """``x0,y0,x1,y1`` (or a list of four numbers): fractions when all four lie in 0..1, else pixels.

    Refuses (naming ``field``) anything but four numbers, negative values, fractional pixels
    and empty boxes (``x0 >= x1`` or ``y0 >= y1``).
    """
    if isinstance(value, list | tuple):
        parts = [str(v) for v in value]
    elif isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
    else:
        raise RequestError(field, f"must be 'x0,y0,x1,y1', got {value!r}")
    if len(parts) != 4 or not all(_NUMBER.match(p) for p in parts):
        raise RequestError(
            field,
            f"must be four numbers x0,y0,x1,y1 (left, top, right, bottom), got {value!r}; "
            "e.g. 0,0.5,1,1 (fractions of the photo) or 0,240,640,480 (pixels)",
        )
    left, top, right, bottom = (float(p) for p in parts)
    if min(left, top, right, bottom) < 0:
        raise RequestError(field, f"{value!r} has a negative coordinate; the photo starts at 0,0")
    if left >= right or top >= bottom:
        raise RequestError(field, f"{value!r} is empty: it needs x0 < x1 and y0 < y1")
    relative = max(left, top, right, bottom) <= 1.0
    if not relative and not all(v.is_integer() for v in (left, top, right, bottom)):
        raise RequestError(
            field,
            f"{value!r} mixes pixels and fractions: pixel boxes are whole numbers, fractions all lie in 0..1",
        )
    return Box(left, top, right, bottom, relative)


# --- a garment's mask plan -----------------------------------------------------------------


def resolve_mode(values: Mapping[str, Any], *, named_query: bool = False) -> MaskMode:
    """The mask mode of a garment's parameters: ``mask_mode`` when set, else the one they imply.

    Unset: ``image`` when a ``mask_image`` is named, ``text`` when a ``query`` is
    (``named_query``: set above the template defaults), ``class`` when a ``garment_class`` is,
    else ``text`` (so a job naming none of them runs as it always did).
    """
    mode = values.get("mask_mode")
    if mode:
        return check_mode(mode)
    if values.get("mask_image"):
        return "image"
    if values.get("garment_class") and not named_query:
        return "class"
    return "text"


def check_plan(values: Mapping[str, Any], mode: MaskMode, label: str = "") -> None:
    """Refuse parameters that contradict the mode or that it needs and lacks (RequestError naming them).

    ``label`` prefixes the field (``upper-body.`` for an outfit's garment).
    """
    needs = {"image": "mask_image", "box": "mask_box", "class": "garment_class"}
    if mode in needs and not values.get(needs[mode]):
        raise RequestError(f"{label}{needs[mode]}", f"is required with mask_mode {mode}")
    if values.get("mask_image") and mode != "image":
        raise RequestError(
            f"{label}mask_image",
            f"is a painted mask, used only with mask_mode image (this garment's mode is {mode})",
        )


@dataclass(frozen=True)
class SegmentAsk:
    """What one CLIPSeg request asks for a garment: the garment itself, or only its keep-regions."""

    role: Literal["garment", "keep"]
    queries: tuple[str, ...]
    negative_queries: tuple[str, ...]


def segment_ask(values: Mapping[str, Any], mode: MaskMode) -> SegmentAsk | None:
    """The CLIPSeg request a garment needs, or None (a box or painted mask with no keep-regions)."""
    keep = tuple(values.get("negative_queries") or ())
    if mode in SEGMENTED_MODES:
        return SegmentAsk("garment", (values["query"],), keep)
    if keep:
        return SegmentAsk("keep", keep, ())
    return None


def box_role(mode: MaskMode, box: Any) -> Literal["mask", "restrict"] | None:
    """What a ``mask_box`` does in ``mode``: it is the mask (``box``), restricts CLIPSeg's, or is absent."""
    if not box:
        return None
    return "mask" if mode == "box" else "restrict"


def boxes_overlap(a: Sequence[int], b: Sequence[int]) -> bool:
    """Whether two pixel boxes (left, top, right, bottom; right/bottom exclusive) share a pixel."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
