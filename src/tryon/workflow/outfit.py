"""Outfits: up to three garments in one job, each with its own where and what (light).

A console input lists them as ``garments`` (a list of objects); string transports (upload
metadata, batch columns, ``--set``) spell a garment's parameter ``<class>.<parameter>``
(``lower-body.adapter``; the class aliases of :data:`tryon.core.mask_modes.ALIASES` too).
Parameters outside a garment are every garment's defaults. Each garment's effective
parameters are the job's layers (template defaults < the garment class < presets < object
metadata < console input) with its own on top (metadata ``<class>.*`` < console ``garments``).
Passes run in the order garments are worn (:attr:`GarmentClass.rank`), whatever order they
are listed in. docs/workflow.md, "Outfits", is the user's description.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tryon.core import mask_modes
from tryon.core.errors import RequestError
from tryon.workflow import params
from tryon.workflow.garment_keys import GARMENT_PARAMS, split_flat

#: Most garments in one job (:data:`tryon.core.mask_modes.MAX_GARMENTS`).
MAX_GARMENTS = mask_modes.MAX_GARMENTS
#: Parameters that belong to one garment only: an outfit refuses them outside ``garments``.
OWN_PARAMS = ("garment_class", "mask_box", "mask_image")


def metadata_garments(metadata: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """class -> that garment's parameters from S3 user metadata ``<class>.<name>`` keys, validated.

    Keys are matched as :func:`tryon.workflow.params.metadata_overrides` matches them
    (case-insensitive, ``-`` read as ``_``); other keys are that function's.
    """
    flat = {}
    for key, raw in metadata.items():
        name = key.lower().removeprefix("x-amz-meta-")
        if mask_modes.is_class_key(name):
            flat[name] = raw
    _, garments = split_flat(flat, "metadata")
    out = {}
    for cls, values in garments.items():
        try:
            out[cls] = params.validate_layer(values, "metadata", from_text=True)
        except RequestError as exc:
            raise _relabel(exc, f"{cls}.") from None
    return out


def _label(index: int, garment_class: str | None, outfit: bool) -> str:
    """The prefix that names a garment's fields in errors (``upper-body.``, ``garments[0].``, or none)."""
    if not outfit:
        return ""
    return f"{garment_class}." if garment_class else f"garments[{index}]."


def _relabel(exc: RequestError, label: str) -> RequestError:
    return RequestError(f"{label}{exc.field}", exc.detail)


def console_garments(value: Any, source: str = "input") -> list[dict[str, Any]]:
    """A console input's ``garments``: 1..3 objects of garment parameters, each validated.

    Returns the garments as given (canonical class names, typed values), in list order.
    """
    if not isinstance(value, list) or not value:
        raise RequestError("garments", f"must be a list of 1..{MAX_GARMENTS} garment objects, got {value!r}")
    if len(value) > MAX_GARMENTS:
        raise RequestError("garments", f"has {len(value)} garments; the limit is {MAX_GARMENTS} per job")
    out = []
    for index, garment in enumerate(value):
        where = f"garments[{index}]"
        if not isinstance(garment, Mapping):
            raise RequestError(
                where, f"must be an object of garment parameters, got {type(garment).__name__}"
            )
        unknown = sorted(set(garment) - GARMENT_PARAMS)
        if unknown:
            job_level = [name for name in unknown if name in params.PARAM_NAMES]
            hint = (
                f" ({', '.join(job_level)} belong(s) to the job: set them outside garments)"
                if job_level
                else ""
            )
            raise RequestError(
                where,
                f"unknown garment parameter(s) {', '.join(unknown)}{hint}; "
                f"a garment may set {', '.join(sorted(GARMENT_PARAMS))}",
            )
        cls = garment.get("garment_class")
        label = f"{mask_modes.canonical_class(cls, f'{where}.garment_class')}." if cls else f"{where}."
        try:
            out.append(params.validate_layer(dict(garment), source))
        except RequestError as exc:
            raise _relabel(exc, label) from None
    return out


@dataclass(frozen=True)
class ResolvedGarment:
    """One garment of a job, resolved: its class, mask mode and effective parameters."""

    index: int  # the garment's pass, in the order garments are worn
    garment_class: str | None
    name: str  # names its files: the class, or "" for a job that is no outfit
    mode: mask_modes.MaskMode
    params: dict[str, Any]  # every garment parameter (GARMENT_PARAMS), effective
    label: str  # prefixes its fields in errors: "upper-body.", "garments[0]." or ""


@dataclass(frozen=True)
class Resolved:
    """A job's effective parameters and its garments, in pass order (one for a job that is no outfit)."""

    params: dict[str, Any]
    garments: list[ResolvedGarment]
    outfit: bool

    def id_params(self) -> dict[str, Any]:
        """What the job id hashes: the effective parameters, and for an outfit every garment's."""
        if not self.outfit:
            return dict(self.params)
        return {
            **self.params,
            "garments": [dict(g.params, garment_class=g.garment_class) for g in self.garments],
        }


def _merge_garments(
    metadata: Mapping[str, Mapping[str, Any]], console: Sequence[Mapping[str, Any]] | None
) -> list[dict[str, Any]]:
    """One list of garment layers: metadata ``<class>.*`` below the console's garment of that class."""
    merged: dict[str, dict[str, Any]] = {
        cls: {"garment_class": cls, **values} for cls, values in metadata.items()
    }
    loose: list[dict[str, Any]] = []
    for garment in console or []:
        cls = garment.get("garment_class")
        if cls is None:
            loose.append(dict(garment))
        elif cls in merged and garment is not merged[cls]:
            merged[cls] = {**merged[cls], **garment}
        else:
            merged[cls] = dict(garment)
    return [*merged.values(), *loose]


def _check_outfit(garments: Sequence[Mapping[str, Any]], console: Sequence[Mapping[str, Any]] | None) -> None:
    if len(garments) > MAX_GARMENTS:
        raise RequestError("garments", f"has {len(garments)} garments; the limit is {MAX_GARMENTS} per job")
    if len(garments) > 1:
        for index, garment in enumerate(garments):
            if not garment.get("garment_class"):
                raise RequestError(
                    f"garments[{index}].garment_class",
                    "is required in an outfit of several garments: it says when the garment is worn "
                    f"({', '.join(mask_modes.CLASS_NAMES)})",
                )
    seen: dict[str, int] = {}
    for index, garment in enumerate(console or []):
        cls = garment.get("garment_class")
        if cls in seen:
            raise RequestError(
                f"garments[{index}].garment_class",
                f"{cls} is also garments[{seen[cls]}]'s class; an outfit has one garment per class",
            )
        if cls:
            seen[cls] = index


def resolve_outfit(
    *,
    defaults: Mapping[str, Any],
    preset_table: Mapping[str, Mapping[str, Any]],
    preset: str | None,
    metadata: Mapping[str, Any],
    console: Mapping[str, Any],
    metadata_garments: Mapping[str, Mapping[str, Any]] | None = None,
    console_garments: Sequence[Mapping[str, Any]] | None = None,
) -> Resolved:
    """The job's effective parameters and its garments in pass order (validated, mode checked).

    A job with no garments (neither ``garments`` nor ``<class>.*`` keys) is one garment made
    of the job's own parameters, with its class's layer when it names a ``garment_class``.
    """
    layers = {"defaults": defaults, "preset_table": preset_table, "preset": preset, "metadata": metadata}
    job = params.resolve(**layers, console=console)
    specs = _merge_garments(metadata_garments or {}, console_garments)
    outfit = bool(specs)
    if not outfit:
        specs = [{}]
    _check_outfit(specs, console_garments)
    if outfit:
        for name in _own_at_job_level(job):
            raise RequestError(
                name,
                "belongs to one garment of an outfit: set it inside garments (or as <class>."
                f"{name} in metadata and batch columns)",
            )
    resolved = []
    for index, own in enumerate(specs):
        cls = own.get("garment_class") if outfit else job.get("garment_class")
        label = _label(index, cls, outfit)
        try:
            first = {**job, **own}
            mode = mask_modes.resolve_mode(
                first, named_query=_names_query(preset_table, preset, metadata, console, own)
            )
            base = mask_modes.garment_class(cls).layer(mode) if cls else {}
            effective = params.resolve(**layers, console={**console, **own}, base=base)
            mask_modes.check_plan(effective, mode)
        except RequestError as exc:
            raise _relabel(exc, label) from None
        garment_params = {name: effective[name] for name in sorted(GARMENT_PARAMS)}
        resolved.append((cls, mode, garment_params, label, effective))
    order = sorted(range(len(resolved)), key=lambda i: _rank(resolved[i][0]))
    garments = [
        ResolvedGarment(pass_index, resolved[i][0], _name(resolved[i][0], outfit), *resolved[i][1:4])
        for pass_index, i in enumerate(order)
    ]
    if not outfit:  # the job's own parameters, with its class's layer when it names one
        job = resolved[0][4]
    return Resolved(job, garments, outfit)


def _names_query(
    preset_table: Mapping[str, Mapping[str, Any]], preset: str | None, *layers: Mapping[str, Any]
) -> bool:
    """Whether a layer above the template defaults (preset, metadata, console, garment) names a query."""
    presets = [preset_table.get(name, {}) for name in params.preset_names(preset)]
    return any("query" in layer for layer in (*presets, *layers))


def _name(garment_class: str | None, outfit: bool) -> str:
    """What names a garment's files: its class in an outfit (``garment`` without one), nothing otherwise."""
    return (garment_class or "garment") if outfit else ""


def _own_at_job_level(job: Mapping[str, Any]) -> list[str]:
    """Job-level parameters that an outfit leaves to its garments (set outside garments: refused)."""
    return [name for name in OWN_PARAMS if job.get(name)]


def _rank(garment_class: str | None) -> int:
    """Pass order: the class's rank (a garment with no class is a lone garment: rank 0)."""
    return mask_modes.garment_class(garment_class).rank if garment_class else 0
