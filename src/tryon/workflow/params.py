"""The job's parameters: their types and limits, defaults, presets, and how layers merge.

Precedence (later wins): template defaults (environment) < named preset < the object's
``x-amz-meta-*`` metadata < the console input. Every layer is validated on its own, so an
error names the field, the limit and where the bad value came from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from tryon.core import contract, mask_modes, schema, validation
from tryon.core.errors import RequestError
from tryon.workflow import garment_keys

#: One row per job parameter (its type, limits, defaults and every name): :mod:`tryon.core.schema`.
Param = schema.Param
PARAMS: tuple[Param, ...] = schema.PARAMS
PARAM_NAMES = schema.PARAM_NAMES
_BY_NAME = {p.name: p for p in PARAMS}
_INPAINT = contract.SD_INPAINT

#: Garment classes as presets: what CLIPSeg looks for, what it keeps out of the mask
#: (:data:`tryon.core.mask_modes.CLASSES`, which also orders an outfit's passes).
GARMENT_CLASSES: dict[str, dict[str, Any]] = {c.name: c.layer("class") for c in mask_modes.CLASSES}
#: The stack keeps its extra presets (template parameter ``Presets``) in an SSM parameter, because
#: they may be longer than Lambda's 4 KB of environment allows; this variable names it.
PRESETS_PARAMETER_VARIABLE = "TRYON_PRESETS_PARAMETER"
#: Extra presets given inline (a JSON object of name -> parameters), for local tools and tests.
PRESETS_VARIABLE = "TRYON_PRESETS"
#: Seconds a warm function keeps the presets it read before reading the parameter again.
PRESETS_MAX_AGE_S = 60
#: Built-in presets; the stack's extra presets (``Presets``) add or replace.
BUILTIN_PRESETS: dict[str, dict[str, Any]] = {
    "draft": {"steps": 15, "num_images": 1, "upscale": False},
    "standard": {"steps": 30, "num_images": 1},
    "quality": {"steps": 50, "num_images": 2, "guidance_scale": 8.0, "upscale": True},
    **GARMENT_CLASSES,
}


def _coerce_text(param: Param, text: str, source: str) -> Any:
    """Turn a metadata or environment string into the parameter's type (validated later)."""
    text = text.strip()
    if param.optional and text == "":
        return None
    if param.type == "int":
        try:
            return int(text)
        except ValueError:
            raise RequestError(f"{param.name} (from {source})", f"must be an integer, got {text!r}") from None
    if param.type == "float":
        try:
            return float(text)
        except ValueError:
            raise RequestError(f"{param.name} (from {source})", f"must be a number, got {text!r}") from None
    if param.type == "str_list":
        return [item.strip() for item in text.split(",") if item.strip()]
    return text  # str, bool (get_bool reads "true"/"false", "yes"/"no")


_READERS: dict[str, Callable[..., Any]] = {
    "str": validation.get_str,
    "int": validation.get_int,
    "float": validation.get_float,
    "bool": validation.get_bool,
    "str_list": validation.get_str_list,
}


def _validate(param: Param, value: Any, source: str) -> Any:
    """Check one value against its parameter's type and limits; RequestError names field and source."""
    label = param.name if source == "input" else f"{param.name} (from {source})"
    if value is None:
        if param.optional:
            return None
        raise RequestError(label, "must not be null")
    if param.name == "mask_box" and isinstance(value, list | tuple):  # a console's JSON list of four numbers
        value = ",".join(str(v) for v in value)
    payload = {param.name: value}
    try:
        result = _READERS[param.type or "str"](payload, param.name, None, **param.limits)
        if param.check is not None and result is not None:
            param.check(result)
        if param.canonical is not None and result is not None:
            result = param.canonical(result)
    except RequestError as exc:
        raise RequestError(label, exc.detail) from None
    return result


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


def _admits_empty(param: Param) -> bool:
    """Whether an empty text is a value of ``param`` (unset, no items, an empty string)."""
    return (
        param.optional
        or param.type == "str_list"
        or (param.type == "str" and param.limits.get("allow_empty", True))
    )


def template_defaults(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every parameter's default: the schema's, replaced by its ``TRYON_DEFAULT_*`` variable.

    The template sets every variable (docs/schema.md). An empty one means what an empty text means
    for that parameter (unset, no items, an empty string); where nothing empty is a value (a
    number, a required text), the schema's default stands.
    """
    env = os.environ if env is None else env
    overrides = {
        p.name: env[p.env]
        for p in PARAMS
        if p.env and env.get(p.env) is not None and (env[p.env].strip() or _admits_empty(p))
    }
    values = {p.name: list(p.default) if p.type == "str_list" else p.default for p in PARAMS}
    values.update(validate_layer(overrides, "template defaults", from_text=True))
    return values


def _extra_presets_text(env: Mapping[str, str]) -> tuple[str, str]:
    """The stack's extra presets as JSON text, and what holds them (for messages)."""
    name = env.get(PRESETS_PARAMETER_VARIABLE, "").strip()
    if not name:
        return env.get(PRESETS_VARIABLE, ""), PRESETS_VARIABLE
    from aws_lambda_powertools.utilities.parameters import GetParameterError

    from tryon.workflow import clients

    where = f"Presets (SSM parameter {name})"
    try:
        return clients.ssm_parameter(name, max_age=PRESETS_MAX_AGE_S), where
    except GetParameterError as exc:
        raise RequestError(where, f"could not be read: {exc}") from None


def presets(env: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Built-in presets plus the stack's extra ones (its SSM parameter, or ``TRYON_PRESETS``), validated."""
    env = os.environ if env is None else env
    table = {name: dict(values) for name, values in BUILTIN_PRESETS.items()}
    raw, where = _extra_presets_text(env)
    text = raw.strip()
    if text:
        try:
            extra = json.loads(text)
        except ValueError as exc:
            raise RequestError(where, f"is not valid JSON ({exc})") from None
        if not isinstance(extra, dict) or not all(isinstance(v, dict) for v in extra.values()):
            raise RequestError(where, "must be a JSON object of preset name -> parameters")
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
        name = key.lower().removeprefix("x-amz-meta-").replace("-", "_")  # the rows' metadata_key, read back
        if name == "preset":
            preset = raw.strip() or None
        elif mask_modes.is_class_key(name):
            continue  # a garment's parameter (<class>.<name>): tryon.workflow.outfit reads those
        elif name in PARAM_NAMES:
            values[name] = raw
        else:
            ignored.append(key)
    return validate_layer(values, "metadata", from_text=True), preset, sorted(ignored)


#: S3 caps an object's user-defined metadata at 2 KB: the UTF-8 bytes of every key and value.
MAX_METADATA_BYTES = 2048


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _meta_key(name: str) -> str:
    return _BY_NAME[name].metadata_key if name in _BY_NAME else name.replace("_", "-")


def to_metadata(overrides: Mapping[str, Any], preset: str | None = None) -> dict[str, str]:
    """S3 user metadata that :func:`metadata_overrides` reads back as ``overrides`` (validated first).

    ``{"num_images": 2}`` -> ``{"num-images": "2"}``; lists are comma-joined; an outfit's
    garment parameters keep their ``<class>.`` prefix (``upper-body.garment-image``). S3
    metadata is ASCII and at most 2 KB, so other characters and longer sets are refused (use
    a console input for those).
    """
    job_values, garments = garment_keys.split_flat(
        {k: v for k, v in overrides.items() if v is not None}, "metadata"
    )
    metadata = {_meta_key(name): _text(value) for name, value in job_values.items()}
    for cls, values in garments.items():
        metadata.update({f"{cls}.{_meta_key(name)}": _text(value) for name, value in values.items()})
    if preset:
        metadata["preset"] = preset
    for key, value in metadata.items():
        if not value.isascii():
            raise RequestError(key, "S3 metadata must be ASCII; use a console input for other characters")
    size = sum(len(key.encode()) + len(value.encode()) for key, value in metadata.items())
    if size > MAX_METADATA_BYTES:
        raise RequestError(
            "metadata",
            f"the parameters are {size} bytes as S3 metadata; S3 allows {MAX_METADATA_BYTES} "
            "(keys and values): shorten the prompts or start the job with a console input",
        )
    # Prepare's own validation, so bad values fail before upload; unlike Prepare (which ignores
    # metadata other tools set) an unknown name here is a typo and is refused.
    validate_layer({name: metadata[_meta_key(name)] for name in job_values}, "metadata", from_text=True)
    for cls, values in garments.items():
        named = {name: metadata[f"{cls}.{_meta_key(name)}"] for name in values}
        try:
            validate_layer(named, "metadata", from_text=True)
        except RequestError as exc:
            raise RequestError(f"{cls}.{exc.field}", exc.detail) from None
    return metadata


def preset_names(preset: str | None) -> list[str]:
    """The preset names in ``preset`` (comma-separated; blanks ignored)."""
    return [name.strip() for name in (preset or "").split(",") if name.strip()]


def resolve(
    *,
    defaults: Mapping[str, Any],
    preset_table: Mapping[str, Mapping[str, Any]],
    preset: str | None,
    metadata: Mapping[str, Any],
    console: Mapping[str, Any],
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge the layers (defaults < base < preset < metadata < console) into effective parameters.

    ``preset`` may name several presets, comma-separated, applied left to right
    (``lower-body,quality``: a garment class and a quality level). ``base`` is a garment
    class's own layer (:meth:`tryon.core.mask_modes.GarmentClass.layer`).
    """
    effective = {**defaults, **(base or {})}
    for name in preset_names(preset):
        if name not in preset_table:
            raise RequestError("preset", f"unknown preset {name!r}; known: {', '.join(sorted(preset_table))}")
        effective.update(preset_table[name])
    effective.update(metadata)
    effective.update(console)
    check_refiner(effective)
    check_controls(effective)
    return effective


def check_refiner(effective: Mapping[str, Any]) -> None:
    """Refuse refiner settings that leave the refiner no step (as the endpoint would), before any model runs.

    Only where the settings are sent: not when ``use_refiner`` is false, nor when neither is set.
    An unset one counts at the endpoint's default (the contract's).
    """
    steps, strength = effective.get("refiner_steps"), effective.get("refiner_strength")
    if effective.get("use_refiner") is False or (steps is None and strength is None):
        return
    contract.check_refiner_steps(
        _INPAINT["refiner_steps"].default if steps is None else steps,
        _INPAINT["refiner_strength"].default if strength is None else strength,
    )


def kept_controls(effective: Mapping[str, Any]) -> tuple[str, ...]:
    """The body controls a job keeps (``keep_body``), in the contract's order; () when unset or none."""
    keep = effective.get("keep_body")
    return () if keep is None else contract.parse_keep_body(keep)


def check_controls(effective: Mapping[str, Any]) -> None:
    """Refuse a kept control's schedule window that covers no step, as the endpoint would, before it runs.

    Only for the controls ``keep_body`` names (the others' settings are not sent); an unset
    start or end counts at the endpoint's default (the contract's).
    """
    for control in kept_controls(effective):
        start, end = (
            effective.get(name) if effective.get(name) is not None else _INPAINT[name].default
            for name in (contract.control_field(control, "start"), contract.control_field(control, "end"))
        )
        contract.check_control_window(control, start, end)
