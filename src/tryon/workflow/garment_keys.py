"""How a garment's parameters are spelled in string transports, and which ones a garment sets (light).

Upload metadata, batch columns and the CLI's ``--set`` spell a garment's parameter
``<class>.<parameter>`` (``lower-body.adapter``, ``upper.garment_image``: a class or one of
its aliases, :data:`tryon.core.mask_modes.ALIASES`, before the dot); the console input
lists garments as objects (``garments``). :mod:`tryon.workflow.outfit` resolves them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tryon.core import mask_modes, schema
from tryon.core.errors import RequestError

#: Everything a garment may set for itself (the schema rows marked ``garment``); the rest
#: (num_images, upscale, the refiner, mask_overlap) belongs to the job.
GARMENT_PARAMS: frozenset[str] = schema.GARMENT_PARAMS


def garment_key(garment_class: str, name: str) -> str:
    """``<class>.<parameter>``: a garment's parameter in string transports (``lower-body.adapter``)."""
    return f"{garment_class}.{name}"


def split_flat(
    values: Mapping[str, Any], source: str = "input"
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(job-level values, class -> that garment's values) of flat ``name`` / ``<class>.<name>`` keys.

    Names may use ``-`` for ``_`` (metadata keys). A dotted key must name a known class and a
    garment parameter (RequestError naming the key). Values are left as given.
    """
    job: dict[str, Any] = {}
    garments: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        prefix, dot, rest = key.partition(".")
        if not dot:
            job[key] = value
            continue
        cls = mask_modes.canonical_class(prefix, field=f"{key} (from {source})")
        name = rest.strip().lower().replace("-", "_")
        if name not in GARMENT_PARAMS:
            raise RequestError(
                f"{key} (from {source})",
                f"{name!r} is not a garment parameter; a garment may set {', '.join(sorted(GARMENT_PARAMS))}",
            )
        if name == "garment_class":
            raise RequestError(
                f"{key} (from {source})", f"the class is the prefix ({cls}.); leave garment_class out"
            )
        garments.setdefault(cls, {})[name] = value
    return job, garments


def to_flat(garments: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Garments as ``<class>.<name>`` keys (for metadata and batch columns); each must have a class."""
    flat: dict[str, Any] = {}
    for index, garment in enumerate(garments):
        cls = garment.get("garment_class")
        if not cls:
            raise RequestError(
                f"garments[{index}].garment_class", "is required to spell a garment as <class>.<name>"
            )
        cls = mask_modes.canonical_class(cls, f"garments[{index}].garment_class")
        flat.update(
            {garment_key(cls, k): v for k, v in garment.items() if k != "garment_class" and v is not None}
        )
    return flat
