"""The job's parameters: their types and limits, defaults, presets, and how layers merge.

Precedence (later wins): template defaults (environment) < named preset < the object's
``x-amz-meta-*`` metadata < the console input. Every layer is validated on its own, so an
error names the field, the limit and where the bad value came from.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tryon import validation
from tryon.errors import RequestError

MAX_SEED = 2**32 - 1
_ADAPTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Param:
    """One job parameter: its type, the env var holding its template default, and its limits."""

    name: str
    kind: str  # str | opt_str | int | opt_int | float | bool | str_list
    default: Any
    env: str | None = None
    limits: dict[str, Any] = field(default_factory=dict)


PARAMS: tuple[Param, ...] = (
    Param("query", "str", "a shirt", "TRYON_DEFAULT_QUERY", {"max_length": 200, "allow_empty": False}),
    Param("negative_queries", "str_list", [], "TRYON_DEFAULT_NEGATIVE_QUERIES", {"max_items": 8}),
    Param("threshold", "float", 0.4, "TRYON_DEFAULT_THRESHOLD", {"minimum": 0.0, "maximum": 1.0}),
    Param("dilate", "int", 8, "TRYON_DEFAULT_DILATE", {"minimum": 0, "maximum": 64}),
    Param("feather", "int", 4, "TRYON_DEFAULT_FEATHER", {"minimum": 0, "maximum": 64}),
    Param("min_coverage", "float", 0.001, "TRYON_MIN_COVERAGE", {"minimum": 0.0, "maximum": 1.0}),
    Param(
        "prompt",
        "str",
        "a photo of a person wearing the garment",
        "TRYON_DEFAULT_PROMPT",
        {"max_length": 1000},
    ),
    Param(
        "negative_prompt", "str", "blurry, low quality", "TRYON_DEFAULT_NEGATIVE_PROMPT", {"max_length": 1000}
    ),
    Param("steps", "int", 30, "TRYON_DEFAULT_STEPS", {"minimum": 1, "maximum": 150}),
    Param("guidance_scale", "float", 7.5, "TRYON_DEFAULT_GUIDANCE_SCALE", {"minimum": 0.0, "maximum": 30.0}),
    Param(
        "strength",
        "float",
        1.0,
        "TRYON_DEFAULT_STRENGTH",
        {"minimum": 0.0, "maximum": 1.0, "exclusive_minimum": True},
    ),
    Param("num_images", "int", 1, "TRYON_DEFAULT_NUM_IMAGES", {"minimum": 1, "maximum": 4}),
    Param("sampler", "opt_str", None, "TRYON_DEFAULT_SAMPLER", {"max_length": 64}),
    Param("seed", "opt_int", None, None, {"minimum": 0, "maximum": MAX_SEED}),
    Param("adapter", "opt_str", None, "TRYON_DEFAULT_ADAPTER", {"max_length": 1024}),
    Param("adapter_scale", "float", 1.0, "TRYON_DEFAULT_ADAPTER_SCALE", {"minimum": 0.0, "maximum": 2.0}),
    Param("upscale", "bool", False, "TRYON_DEFAULT_UPSCALE"),
    Param("upscale_steps", "int", 20, "TRYON_DEFAULT_UPSCALE_STEPS", {"minimum": 1, "maximum": 100}),
    Param("noise_level", "int", 20, "TRYON_DEFAULT_NOISE_LEVEL", {"minimum": 0, "maximum": 350}),
)
PARAM_NAMES = frozenset(p.name for p in PARAMS)
_BY_NAME = {p.name: p for p in PARAMS}

#: Built-in presets; ``TRYON_PRESETS`` (a JSON object of name -> parameters) adds or replaces.
BUILTIN_PRESETS: dict[str, dict[str, Any]] = {
    "draft": {"steps": 15, "num_images": 1, "upscale": False},
    "standard": {"steps": 30, "num_images": 1},
    "quality": {"steps": 50, "num_images": 2, "guidance_scale": 8.0, "upscale": True},
}


def _coerce_text(param: Param, text: str, source: str) -> Any:
    """Turn a metadata or environment string into the parameter's type (validated later)."""
    text = text.strip()
    if param.kind in {"opt_str", "opt_int"} and text == "":
        return None
    if param.kind in {"int", "opt_int"}:
        try:
            return int(text)
        except ValueError:
            raise RequestError(f"{param.name} (from {source})", f"must be an integer, got {text!r}") from None
    if param.kind == "float":
        try:
            return float(text)
        except ValueError:
            raise RequestError(f"{param.name} (from {source})", f"must be a number, got {text!r}") from None
    if param.kind == "str_list":
        return [item.strip() for item in text.split(",") if item.strip()]
    return text  # str, opt_str, bool (get_bool reads "true"/"false")


def _validate(param: Param, value: Any, source: str) -> Any:
    """Check one value against its parameter's type and limits; RequestError names field and source."""
    label = param.name if source == "input" else f"{param.name} (from {source})"
    if value is None:
        if param.kind.startswith("opt_"):
            return None
        raise RequestError(label, "must not be null")
    payload = {param.name: value}
    readers: dict[str, Callable[..., Any]] = {
        "str": validation.get_str,
        "opt_str": validation.get_str,
        "int": validation.get_int,
        "opt_int": validation.get_int,
        "float": validation.get_float,
        "bool": validation.get_bool,
        "str_list": validation.get_str_list,
    }
    try:
        result = readers[param.kind](payload, param.name, None, **param.limits)
    except RequestError as exc:
        raise RequestError(label, exc.detail) from None
    if param.name == "adapter" and result is not None:
        _check_adapter(result, source)
    return result


def _check_adapter(value: str, source: str) -> None:
    if value.startswith("s3://"):
        if len(value) <= 5 or "/" not in value[5:]:
            raise RequestError(f"adapter (from {source})", f"must be s3://bucket/prefix/, got {value!r}")
        return
    if not _ADAPTER_NAME.match(value):
        raise RequestError(
            f"adapter (from {source})",
            f"must be an adapter name ([A-Za-z0-9._-], at most 64 characters) or an s3:// URI, got {value!r}",
        )


def validate_layer(values: Mapping[str, Any], source: str, *, from_text: bool = False) -> dict[str, Any]:
    """Validate one layer of overrides (unknown names are refused); ``from_text`` coerces strings."""
    unknown = sorted(set(values) - PARAM_NAMES)
    if unknown:
        raise RequestError(
            source, f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(PARAM_NAMES))}"
        )
    out: dict[str, Any] = {}
    for name, raw in values.items():
        param = _BY_NAME[name]
        value = _coerce_text(param, raw, source) if from_text and isinstance(raw, str) else raw
        out[name] = _validate(param, value, source)
    return out


def template_defaults(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every parameter's default: the code default, replaced by its ``TRYON_DEFAULT_*`` variable."""
    env = os.environ if env is None else env
    overrides = {p.name: env[p.env] for p in PARAMS if p.env and env.get(p.env) not in (None, "")}
    values = {p.name: p.default for p in PARAMS}
    values.update(validate_layer(overrides, "template defaults", from_text=True))
    return values


def presets(env: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Built-in presets plus those in ``TRYON_PRESETS`` (JSON), each validated."""
    env = os.environ if env is None else env
    table = {name: dict(values) for name, values in BUILTIN_PRESETS.items()}
    text = env.get("TRYON_PRESETS", "").strip()
    if text:
        try:
            extra = json.loads(text)
        except ValueError as exc:
            raise RequestError("TRYON_PRESETS", f"is not valid JSON ({exc})") from None
        if not isinstance(extra, dict) or not all(isinstance(v, dict) for v in extra.values()):
            raise RequestError("TRYON_PRESETS", "must be a JSON object of preset name -> parameters")
        table.update(extra)
    return {name: validate_layer(values, f"preset {name}") for name, values in table.items()}


def metadata_overrides(metadata: Mapping[str, str]) -> tuple[dict[str, Any], str | None, list[str]]:
    """(parameters, preset name, ignored keys) from S3 user metadata (``x-amz-meta-*``).

    Keys are matched case-insensitively with ``-`` read as ``_`` (``x-amz-meta-num-images``).
    Keys that name no parameter are ignored (other tools set metadata too) and reported.
    """
    values: dict[str, str] = {}
    preset: str | None = None
    ignored: list[str] = []
    for key, raw in metadata.items():
        name = key.lower().removeprefix("x-amz-meta-").replace("-", "_")
        if name == "preset":
            preset = raw.strip() or None
        elif name in PARAM_NAMES:
            values[name] = raw
        else:
            ignored.append(key)
    return validate_layer(values, "metadata", from_text=True), preset, sorted(ignored)


def to_metadata(overrides: Mapping[str, Any], preset: str | None = None) -> dict[str, str]:
    """S3 user metadata that :func:`metadata_overrides` reads back as ``overrides`` (validated first).

    ``{"num_images": 2}`` -> ``{"num-images": "2"}``; lists are comma-joined. S3 metadata is
    ASCII, so other characters are refused (use a console input for such prompts).
    """

    def text(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list | tuple):
            return ",".join(str(v) for v in value)
        return str(value)

    metadata = {name.replace("_", "-"): text(value) for name, value in overrides.items() if value is not None}
    if preset:
        metadata["preset"] = preset
    for key, value in metadata.items():
        if not value.isascii():
            raise RequestError(key, "S3 metadata must be ASCII; use a console input for other characters")
    # Prepare's own validation, so bad values fail before upload; unlike Prepare (which ignores
    # metadata other tools set) an unknown name here is a typo and is refused.
    named = {name: metadata[name.replace("_", "-")] for name, value in overrides.items() if value is not None}
    validate_layer(named, "metadata", from_text=True)
    return metadata


def resolve(
    *,
    defaults: Mapping[str, Any],
    preset_table: Mapping[str, Mapping[str, Any]],
    preset: str | None,
    metadata: Mapping[str, Any],
    console: Mapping[str, Any],
) -> dict[str, Any]:
    """Merge the layers (defaults < preset < metadata < console) into effective parameters."""
    effective = dict(defaults)
    if preset is not None:
        if preset not in preset_table:
            raise RequestError(
                "preset", f"unknown preset {preset!r}; known: {', '.join(sorted(preset_table))}"
            )
        effective.update(preset_table[preset])
    effective.update(metadata)
    effective.update(console)
    return effective
