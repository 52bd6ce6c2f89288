"""``--garment`` and ``--mask-mode`` of ``tryon run`` / ``tryon submit``: garments and where they go.

``--garment [CLASS=]WHAT`` says what a garment is: a packshot file (``upper=top.jpg``), an
adapter (``lower=adapter:jeans``), or both (``lower=adapter:jeans+jeans.jpg``); the same
class given twice adds to it. ``--mask-mode [CLASS=]MODE[:ARG]`` says where it goes:
``text:a denim skirt``, ``class`` (its class's own query), ``image:mask.png`` (a painted mask
file, or an ``s3://`` URI under the stack's mask prefix) or ``box:x0,y0,x1,y1`` (fractions or
pixels). Without ``CLASS=`` both apply to the job's one garment, as before outfits; with
``CLASS=`` (``upper``, ``lower-body``, ``shoes``, ...) each names a garment of an outfit, whose
other parameters go with ``--set CLASS.NAME=VALUE``. docs/workflow.md, "Outfits".

The specs become job overrides (``lower-body.adapter``, ``upper-body.mask_box``, ...) and the
local files to upload before the photo (packshots under the garment prefix, painted masks
under the mask prefix); their URIs then fill the overrides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tryon.core import mask_modes
from tryon.core.errors import RequestError

#: What an upload is for: where it goes in the stack's input bucket.
Kind = Literal["garment", "mask"]
ADAPTER = "adapter:"


@dataclass(frozen=True)
class Upload:
    """A local file the job names: uploaded first, its URI then set as ``override``."""

    override: str  # the job override its URI fills (garment_image, upper-body.mask_image, ...)
    path: Path
    kind: Kind  # garment: under the garment prefix; mask: under the mask prefix
    option: str  # the option that named it, for errors


@dataclass
class Garments:
    """What ``--garment`` and ``--mask-mode`` say: job overrides, and the files to upload."""

    overrides: dict[str, Any] = field(default_factory=dict)
    uploads: list[Upload] = field(default_factory=list)


def _split_class(spec: str, option: str) -> tuple[str | None, str]:
    """(canonical class or None, the rest) of ``[CLASS=]REST``; a known class before ``=`` only."""
    head, sep, rest = spec.partition("=")
    if sep and head and "/" not in head and "." not in head and ":" not in head:
        return mask_modes.canonical_class(head, field=f"{option} {spec!r}"), rest
    return None, spec


def _key(garment_class: str | None, name: str) -> str:
    return f"{garment_class}.{name}" if garment_class else name


def _garment(spec: str, into: Garments) -> None:
    option = "--garment"
    cls, what = _split_class(spec, option)
    if not what:
        raise RequestError(option, f"{spec!r} names nothing: give a packshot file or adapter:NAME")
    for part in what.split("+"):
        if part.startswith(ADAPTER):
            name = part[len(ADAPTER) :]
            if not name:
                raise RequestError(option, f"{spec!r}: adapter: needs a name, e.g. adapter:jeans")
            into.overrides[_key(cls, "adapter")] = name
        else:
            into.uploads.append(Upload(_key(cls, "garment_image"), Path(part), "garment", option))


def _mask_mode(spec: str, into: Garments) -> None:
    option = "--mask-mode"
    cls, rest = _split_class(spec, option)
    mode, _, arg = rest.partition(":")
    mode = mask_modes.check_mode(mode.strip(), field=f"{option} {spec!r}")
    into.overrides[_key(cls, "mask_mode")] = mode
    if mode == "text":
        if not arg.strip():
            raise RequestError(option, f"{spec!r}: text needs a query, e.g. text:a denim skirt")
        into.overrides[_key(cls, "query")] = arg
    elif mode == "class":
        if arg:  # class:upper-body for the job's one garment; an outfit's garment has its class
            into.overrides[_key(cls, "garment_class")] = mask_modes.canonical_class(arg, f"{option} {spec!r}")
        elif cls is None:
            raise RequestError(option, f"{spec!r}: class needs a garment class, e.g. class:upper-body")
    elif mode == "box":
        into.overrides[_key(cls, "mask_box")] = mask_modes.parse_box(arg, f"{option} {spec!r}").text()
    elif not arg:
        raise RequestError(option, f"{spec!r}: image needs a mask file or an s3:// URI, e.g. image:mask.png")
    elif arg.startswith("s3://"):
        into.overrides[_key(cls, "mask_image")] = arg
    else:
        into.uploads.append(Upload(_key(cls, "mask_image"), Path(arg), "mask", option))


def parse(garments: Sequence[str], masks: Sequence[str]) -> Garments:
    """The overrides and uploads of every ``--garment`` and ``--mask-mode`` (RequestError naming it)."""
    out = Garments()
    for spec in garments:
        _garment(spec, out)
    for spec in masks:
        _mask_mode(spec, out)
    keyed = {k.partition(".")[0] for k in [*out.overrides, *(u.override for u in out.uploads)] if "." in k}
    lone = [k for k in [*out.overrides, *(u.override for u in out.uploads)] if "." not in k]
    if keyed and lone:
        raise RequestError(
            "--garment",
            f"mixes a lone garment ({', '.join(sorted(set(lone)))}) with an outfit's "
            f"({', '.join(sorted(keyed))}): give every --garment and --mask-mode a CLASS= "
            "(e.g. upper=top.jpg), or none",
        )
    overrides = [u.override for u in out.uploads]
    twice = sorted({o for o in overrides if overrides.count(o) > 1})
    if twice:
        raise RequestError(
            "--garment", f"{', '.join(twice)} named twice: one packshot and one painted mask each"
        )
    return out
