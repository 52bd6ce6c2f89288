"""Typed, range-checked access to JSON request fields (light: used everywhere).

Each accessor raises :class:`tryon.core.errors.RequestError` naming the field and the limit,
so every entry point (endpoint handlers, the Prepare function, the CLI) reports bad input
the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tryon.core.errors import RequestError

_MISSING = object()


def require_mapping(payload: Any, *, field: str = "body") -> Mapping[str, Any]:
    """The payload itself must be a JSON object."""
    if not isinstance(payload, Mapping):
        raise RequestError(field, f"must be a JSON object, got {type(payload).__name__}")
    return payload


def get_str(
    payload: Mapping[str, Any],
    field: str,
    default: Any = _MISSING,
    *,
    max_length: int = 2000,
    allow_empty: bool = True,
) -> str:
    """A string field no longer than ``max_length`` characters."""
    value = payload.get(field, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise RequestError(field, "is required")
        return default
    if not isinstance(value, str):
        raise RequestError(field, f"must be a string, got {type(value).__name__}")
    if len(value) > max_length:
        raise RequestError(field, f"is {len(value)} characters; the limit is {max_length}")
    if not allow_empty and not value.strip():
        raise RequestError(field, "must not be empty")
    return value


def get_int(
    payload: Mapping[str, Any],
    field: str,
    default: Any = _MISSING,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    multiple_of: int | None = None,
) -> int:
    """An integer field (a float with no fraction is accepted) within [minimum, maximum]."""
    value = payload.get(field, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise RequestError(field, "is required")
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(field, f"must be an integer, got {type(value).__name__}")
    if isinstance(value, float):
        if not value.is_integer():
            raise RequestError(field, f"must be an integer, got {value}")
        value = int(value)
    if minimum is not None and value < minimum:
        raise RequestError(field, f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise RequestError(field, f"must be <= {maximum}, got {value}")
    if multiple_of is not None and value % multiple_of:
        raise RequestError(field, f"must be a multiple of {multiple_of}, got {value}")
    return value


def get_float(
    payload: Mapping[str, Any],
    field: str,
    default: Any = _MISSING,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
) -> float:
    """A number field within [minimum, maximum] ((minimum, maximum] if exclusive_minimum)."""
    value = payload.get(field, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise RequestError(field, "is required")
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(field, f"must be a number, got {type(value).__name__}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise RequestError(field, "must be a finite number")
    if minimum is not None:
        if exclusive_minimum and value <= minimum:
            raise RequestError(field, f"must be > {minimum}, got {value}")
        if not exclusive_minimum and value < minimum:
            raise RequestError(field, f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise RequestError(field, f"must be <= {maximum}, got {value}")
    return value


def get_bool(payload: Mapping[str, Any], field: str, default: Any = _MISSING) -> bool:
    """A boolean field; the strings "true"/"false"/"1"/"0"/"yes"/"no" are accepted (S3 metadata)."""
    value = payload.get(field, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise RequestError(field, "is required")
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "1", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "0", "no", "off"}:
        return False
    raise RequestError(field, f"must be a boolean, got {value!r}")


def get_str_list(
    payload: Mapping[str, Any],
    field: str,
    default: Any = _MISSING,
    *,
    max_items: int = 16,
    max_length: int = 200,
) -> list[str]:
    """A list of non-empty strings (a single string is accepted as a one-item list)."""
    value = payload.get(field, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise RequestError(field, "is required")
        return list(default)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or isinstance(value, bytes | bytearray):
        raise RequestError(field, f"must be a list of strings, got {type(value).__name__}")
    if len(value) > max_items:
        raise RequestError(field, f"has {len(value)} items; the limit is {max_items}")
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise RequestError(f"{field}[{i}]", "must be a non-empty string")
        if len(item) > max_length:
            raise RequestError(f"{field}[{i}]", f"is {len(item)} characters; the limit is {max_length}")
        out.append(item)
    return out


def reject_unknown(payload: Mapping[str, Any], known: set[str], *, field: str = "body") -> None:
    """Refuse fields the contract does not know (a typo should not be silently ignored)."""
    unknown = sorted(set(payload) - known)
    if unknown:
        raise RequestError(field, f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
