"""The parts of ``template.yaml`` and ``docs/workflow.md`` written from :mod:`tryon.core.schema`.

``sam deploy`` reads the template as committed, so the job-default blocks are generated and
committed: each template parameter ``Default<Name>`` (its type, default, range, allowed values,
pattern and description), its line in the console's parameter groups, and the
``TRYON_DEFAULT_<NAME>`` variable every function reads; and the parameter table of
docs/workflow.md. ``python -m tryon.aws.schema_blocks --write`` rewrites them after a schema
change (``make schema-blocks``); ``--check`` fails when a committed block differs from what
the rows give, which ``tests/static/test_schema_template.py`` runs, so a range changed by
hand in the template fails the tests.

CloudFormation's ``Number`` parameters take inclusive ``MinValue``/``MaxValue``; a parameter
that may be empty (unset) or has an exclusive bound (``strength``: (0, 1]) is a ``String``
with an ``AllowedPattern`` that accepts exactly the numbers the schema accepts.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tryon.core import schema

REPO = Path(__file__).resolve().parents[3]
TEMPLATE = REPO / "template.yaml"
WORKFLOW_DOC = REPO / "docs" / "workflow.md"
_COMMAND = "python -m tryon.aws.schema_blocks --write"


# ---------------------------------------------------------------------------- numeric patterns


def _same_width(low: str, high: str) -> list[str]:
    """Alternatives matching every digit string of this width from ``low`` to ``high``."""
    if low == high:
        return [low]
    if len(low) == 1:
        return [f"[{low}-{high}]"]
    rest = len(low) - 1
    if low[0] == high[0]:
        return [low[0] + tail for tail in _same_width(low[1:], high[1:])]
    if low[1:] == "0" * rest and high[1:] == "9" * rest:
        return [f"[{low[0]}-{high[0]}]" + "[0-9]" * rest]
    parts: list[str] = []
    first, last = int(low[0]), int(high[0])
    if low[1:] != "0" * rest:
        parts += [low[0] + tail for tail in _same_width(low[1:], "9" * rest)]
        first += 1
    if high[1:] != "9" * rest:
        upper = [high[0] + tail for tail in _same_width("0" * rest, high[1:])]
        last -= 1
    else:
        upper = []
    if first <= last:
        digit = str(first) if first == last else f"[{first}-{last}]"
        parts.append(digit + "[0-9]" * rest)
    return parts + upper


def int_range_pattern(low: int, high: int) -> str:
    """A regular expression (alternatives, unanchored) matching the integers ``low..high`` in decimal."""
    if low < 0 or high < low:
        raise ValueError(f"no pattern for the integers {low}..{high}")
    parts: list[str] = []
    start = low
    while start <= high:
        end = min(high, 10 ** len(str(start)) - 1)
        parts += _same_width(str(start), str(end))
        start = end + 1
    return "|".join(parts)


def number_range_pattern(low: float, high: float, *, exclusive_minimum: bool = False) -> str:
    """A regular expression (unanchored) for decimal numbers in ``[low, high]`` (``(low, high]``).

    The bounds must be whole numbers >= 0 (every float range of the schema is).
    """
    if low < 0 or not float(low).is_integer() or not float(high).is_integer() or high <= low:
        raise ValueError(f"no pattern for the numbers {low}..{high}: give the parameter its own pattern")
    lo, hi = int(low), int(high)
    nonzero_fraction = r"\.[0-9]*[1-9][0-9]*"
    parts = []
    whole_from = lo + 1 if exclusive_minimum else lo
    if whole_from <= hi - 1:  # any fraction after these integer parts
        parts.append(f"({int_range_pattern(whole_from, hi - 1)})(\\.[0-9]*)?")
    if exclusive_minimum:  # the lower bound itself only with a fraction that is not zero
        parts.append(f"{lo}{nonzero_fraction}")
        if lo == 0:
            parts.append(nonzero_fraction)
    elif lo == 0:
        parts.append(r"\.[0-9]+")
    parts.append(f"{hi}(\\.0*)?")
    return "|".join(parts)


# ---------------------------------------------------------------------------- template parameters


def _text(value: Any) -> str:
    """A default as the template (and a ``TRYON_DEFAULT_*`` variable) spells it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    if isinstance(value, float) and value.is_integer():
        return str(value)
    return str(value)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _anchored(pattern: str, optional: bool) -> str:
    return f"^$|^({pattern})$" if optional else f"^({pattern})$"


def template_parameter(row: schema.Param) -> dict[str, Any]:
    """The template parameter of a row's job default, as a dict in template order."""
    limits = row.limits
    spec: dict[str, Any] = {}
    if row.type in ("int", "float"):
        low, high = limits.get("minimum"), limits.get("maximum")
        exclusive = bool(limits.get("exclusive_minimum"))
        if not row.optional and not exclusive:
            spec = {"Type": "Number", "Default": _number(row.default)}
            if low is not None:
                spec["MinValue"] = _number(low)
            if high is not None:
                spec["MaxValue"] = _number(high)
        else:
            if low is None or high is None:
                raise ValueError(
                    f"{row.name}: an optional or open-ended number needs both limits for its pattern"
                )
            numbers = (
                int_range_pattern(int(low), int(high))
                if row.type == "int"
                else number_range_pattern(low, high, exclusive_minimum=exclusive)
            )
            numbers = f"0*({numbers})"  # leading zeros, as Prepare reads them
            spec = {
                "Type": "String",
                "Default": _text(row.default),
                "MaxLength": schema.NUMBER_TEXT_MAX,  # the 4 KB environment budget counts it so
                "AllowedPattern": _anchored(numbers, row.optional),
            }
    elif row.type == "bool":
        spec = {
            "Type": "String",
            "Default": _text(row.default),
            "AllowedValues": ([""] if row.optional else []) + ["true", "false"],
        }
    elif row.type == "str":
        spec = {"Type": "String", "Default": _text(row.default)}
        if limits.get("allow_empty") is False:
            spec["MinLength"] = 1
        spec["MaxLength"] = row.template_max_length or limits.get("max_length", 2000)
        if row.pattern:
            spec["AllowedPattern"] = _anchored(row.pattern, row.optional)
    elif row.type == "str_list":
        items, length = limits.get("max_items", 16), limits.get("max_length", 200)
        spec = {
            "Type": "String",
            "Default": _text(row.default),
            "MaxLength": min(row.template_max_length or 1 << 30, items * length + items - 1),
            "AllowedPattern": f"^[^,]{{0,{length}}}(,[^,]{{0,{length}}}){{0,{items - 1}}}$",
        }
    description = row.help_text()
    if row.optional:
        description += " Empty: unset."
    elif row.type == "str_list":
        description += " Empty: none."
    spec["Description"] = description
    return spec


def _yaml_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_value(item) for item in value) + "]"
    return str(value)


def _template_rows() -> list[schema.Param]:
    return [row for row in schema.PARAMS if row.template_parameter]


def parameters_yaml() -> list[str]:
    """The ``Parameters`` entries of every job default (indented for the template's Parameters map)."""
    lines = []
    for row in _template_rows():
        lines.append(f"  {row.template_parameter}:")
        lines += [
            f"    {key}: {value if key == 'Type' else _yaml_value(value)}"
            for key, value in template_parameter(row).items()
        ]
    return lines


def parameter_group_yaml() -> list[str]:
    """The job defaults' lines in the console's parameter group (``Metadata``)."""
    return [f"          - {row.template_parameter}" for row in _template_rows()]


def environment_yaml() -> list[str]:
    """``TRYON_DEFAULT_<NAME>: !Ref Default<Name>`` of every job default (the functions' Globals)."""
    return [f"        {row.env}: !Ref {row.template_parameter}" for row in _template_rows()]


# ---------------------------------------------------------------------------- docs table

_DOC_TYPES = {"str": "string", "int": "int", "float": "number", "bool": "bool", "str_list": "list"}


def _code(text: Any) -> str:
    return f"`{text}`"


def _doc_default(row: schema.Param) -> str:
    if row.default is None or row.default == "":
        value = f"unset ({row.unset_text})"
    else:
        value = _code(_text(row.default)) if row.type in ("str", "str_list", "bool") else _text(row.default)
    return f"{value} ({_code(row.template_parameter)})" if row.template_parameter else value


def _doc_sent(row: schema.Param) -> str:
    if not row.sends:
        return "not sent: the workflow's own"
    fields = ", ".join(_code(f"{kind}.{name}") for kind, name in row.sends)
    rules = []
    if row.send == "when_set":
        rules.append("only when set")
    if row.with_param:
        rules.append(f"only with {_code(row.with_param)}")
    if row.with_choice:
        rules.append(f"only while {_code(row.with_choice[0])} names {_code(row.with_choice[1])}")
    if row.unless:
        rules.append(f"not when {_code(row.unless[0])} is {_code(_text(row.unless[1]))}")
    return fields + (f"; {', '.join(rules)}" if rules else "")


def parameters_table() -> list[str]:
    """docs/workflow.md's parameter table, one line per row."""
    lines = [
        "| parameter | type | default (template parameter) | limits | sent as | a garment's own |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in schema.PARAMS:
        kind = _DOC_TYPES[row.type or "str"] + (" or unset" if row.optional else "")
        if row.type == "str_list":
            kind += " (comma-separated in metadata)"
        limits = "; ".join(part for part in (row.limits_text(), row.note) if part) or "-"
        own = "yes" if row.garment else "no: the job's"
        lines.append(
            f"| {_code(row.name)} | {kind} | {_doc_default(row)} | {limits} | {_doc_sent(row)} | {own} |"
        )
    return lines


# ---------------------------------------------------------------------------- writing the blocks

#: block name -> (file, what it holds, its lines)
BLOCKS: dict[str, tuple[Path, Callable[[], list[str]]]] = {
    "job-default parameter group": (TEMPLATE, parameter_group_yaml),
    "job-default parameters": (TEMPLATE, parameters_yaml),
    "job-default environment": (TEMPLATE, environment_yaml),
    "job parameter table": (WORKFLOW_DOC, parameters_table),
}


def _markers(name: str, comment: str) -> tuple[str, str]:
    begin = f"{comment} BEGIN generated by `{_COMMAND}` from tryon.core.schema ({name}): do not edit by hand."
    return begin, f"{comment} END generated {name}"


def render(text: str, path_name: str, blocks: Mapping[str, Callable[[], list[str]]]) -> str:
    """``text`` with each named block replaced by what the schema gives (markers kept, indentation too)."""
    for name, lines in blocks.items():
        markdown = path_name.endswith(".md")
        begin, end = _markers(name, "<!--" if markdown else "#")
        if markdown:
            begin, end = begin + " -->", end + " -->"
        pattern = re.compile(rf"^([ \t]*){re.escape(begin)}\n.*?^[ \t]*{re.escape(end)}\n", re.S | re.M)
        match = pattern.search(text)
        if not match:
            raise SystemExit(f"{path_name}: no generated block {name!r} (between {begin!r} and {end!r})")
        indent = match.group(1)
        body = "\n".join([indent + begin, *lines(), indent + end]) + "\n"
        text = text[: match.start()] + body + text[match.end() :]
    return text


def write(
    paths: Mapping[Path, Mapping[str, Callable[[], list[str]]]] | None = None, *, check: bool = False
) -> list[Path]:
    """Rewrite every generated block (only compare with ``check``); the files that differed."""
    if paths is None:
        grouped: dict[Path, dict[str, Callable[[], list[str]]]] = {}
        for name, (path, lines) in BLOCKS.items():
            grouped.setdefault(path, {})[name] = lines
        paths = grouped
    stale = []
    for path, blocks in paths.items():
        text = path.read_text(encoding="utf-8")
        new = render(text, path.name, blocks)
        if new != text:
            stale.append(path)
            if not check:
                path.write_text(new, encoding="utf-8")
    return stale


def main(argv: list[str] | None = None) -> int:
    """``python -m tryon.aws.schema_blocks --write [--check]``."""
    parser = argparse.ArgumentParser(
        prog="python -m tryon.aws.schema_blocks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--write", action="store_true", help="rewrite the generated blocks")
    parser.add_argument("--check", action="store_true", help="only check: exit 1 if a block is stale")
    args = parser.parse_args(argv)
    if not (args.write or args.check):
        parser.error("give --write or --check")
    stale = write(check=args.check)
    for path in stale:
        print(f"{path.relative_to(REPO)}: {'stale (run `make schema-blocks`)' if args.check else 'updated'}")
    if not stale:
        print("generated blocks up to date")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    raise SystemExit(main())
