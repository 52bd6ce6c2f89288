"""Batch manifests: CSV or JSON Lines, one try-on per row; parsing, limits, the cross product (light).

A row names the input photo (``image``: an ``s3://`` URI, or a key under the input prefix)
and any job parameter (:data:`tryon.workflow.params.PARAM_NAMES`) or ``preset`` as a column.
An outfit's garments are columns ``<class>.<parameter>`` (``lower-body.adapter``,
``upper-body.garment_image``; :mod:`tryon.workflow.garment_keys`): a row with any such cell
set is an outfit of those classes (a JSON Lines row may list ``garments`` as a console input
does). An empty CSV cell (or a JSON ``null``) leaves that parameter at its default. Rows are
numbered from 1 in file order (a CSV's header is not a row). Standard library only.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Mapping
from typing import Any

from tryon.core import mask_modes
from tryon.core.errors import RequestError
from tryon.core.s3uri import is_s3_uri
from tryon.workflow import garment_keys, outfit, params

#: Manifest file suffixes and their formats.
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
#: Largest manifest read (bytes): 10,000 rows of long prompts fit.
MAX_MANIFEST_BYTES = 8 * 1024 * 1024
#: Most rows in one batch (one Distributed Map run; Step Functions runs up to 10,000 children at once).
MAX_ROWS = 10_000
#: Columns besides the job parameters (``garments``: a JSON Lines row's outfit, as in a console input).
ROW_FIELDS = frozenset({"image", "preset", "garments"})
COLUMNS = ROW_FIELDS | params.PARAM_NAMES


def _unknown_columns(names: Iterable[str]) -> list[str]:
    """Columns that name neither a row field, a job parameter nor ``<class>.<garment parameter>``."""
    unknown = []
    for name in names:
        if name in COLUMNS:
            continue
        if mask_modes.is_class_key(name):
            try:
                garment_keys.split_flat({name: ""}, "batch")
                continue
            except RequestError:
                pass
        unknown.append(name)
    return sorted(unknown)


def _known_columns_text() -> str:
    outfits = "<class>.<parameter> for an outfit's garments (e.g. upper-body.adapter)"
    return f"{', '.join(sorted(COLUMNS))}, and {outfits}"


def manifest_format(key: str) -> str:
    """``csv`` or ``jsonl`` from the manifest's name; RequestError naming the accepted suffixes."""
    lowered = key.lower()
    for suffix, fmt in FORMATS.items():
        if lowered.endswith(suffix):
            return fmt
    raise RequestError("batch", f"{key} must end with one of {', '.join(FORMATS)} (CSV or JSON Lines)")


def batch_id_for(content: bytes, version: str) -> str:
    """Deterministic id from the manifest's bytes and its object version (or ETag)."""
    digest = hashlib.sha256(content).hexdigest()
    return hashlib.sha256(f"{digest}:{version}".encode()).hexdigest()[:20]


def _text(content: bytes) -> str:
    if not content.strip():
        raise RequestError("batch", "the manifest is empty: it needs a header and at least one row")
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RequestError(
            "batch", f"is not UTF-8 text (byte {exc.start}): save it as CSV or JSON Lines"
        ) from None


#: First characters that make a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """A CSV cell a spreadsheet shows as text: a leading ``'`` before a formula-starting character.

    Every CSV the project writes (manifests from ``tryon batch cross``, ``report.csv``) goes
    through this; :func:`from_spreadsheet_safe` undoes it when a manifest is read, so the model
    still receives the prompt as written.
    """
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def from_spreadsheet_safe(text: str) -> str:
    """The cell as it was before :func:`spreadsheet_safe`."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_STARTS) else text


def _csv_rows(text: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in reader.fieldnames or []]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise RequestError(
            "batch", f"the CSV header repeats the column(s) {', '.join(repeated)}: keep one of each"
        )
    if "image" not in header:
        raise RequestError("batch", f"the CSV header must have an image column; it has {', '.join(header)!r}")
    unknown = _unknown_columns(header)
    if unknown:
        raise RequestError("batch", f"unknown column(s) {', '.join(unknown)}; known: {_known_columns_text()}")
    rows = []
    for record in reader:
        if None in record:
            raise RequestError("batch", f"line {reader.line_num} has more cells than the header")
        values = {k.strip(): from_spreadsheet_safe((v or "").strip()) for k, v in record.items()}
        if any(values.values()):  # a blank line is no row
            rows.append({k: v for k, v in values.items() if v != ""})
    return rows


def _jsonl_rows(text: str) -> list[Any]:
    rows: list[Any] = []
    # split on \n only: U+2028, U+2029 and U+0085 (which str.splitlines also splits on) are
    # legal inside JSON strings
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as exc:
            raise RequestError("batch", f"line {number} is not JSON ({exc.msg})") from None
    return rows


def parse_manifest(content: bytes, key: str) -> list[Any]:
    """The manifest's rows (dicts for CSV; whatever each JSON line holds for JSON Lines).

    Refuses (RequestError, field ``batch``) a manifest that is too large, not UTF-8, empty,
    not CSV/JSON Lines, or over :data:`MAX_ROWS` rows. Rows themselves are checked by
    :func:`row_console_input`.
    """
    fmt = manifest_format(key)
    if len(content) > MAX_MANIFEST_BYTES:
        raise RequestError("batch", f"is {len(content)} bytes; the limit is {MAX_MANIFEST_BYTES} bytes")
    text = _text(content)
    rows = _csv_rows(text) if fmt == "csv" else _jsonl_rows(text)
    if not rows:
        raise RequestError("batch", "the manifest has no rows")
    if len(rows) > MAX_ROWS:
        raise RequestError("batch", f"has {len(rows)} rows; the limit is {MAX_ROWS} rows per batch")
    return rows


def image_uri(value: Any, input_bucket: str, input_prefix: str) -> str:
    """A row's ``image`` as an ``s3://`` URI: URIs as given, keys placed under the input prefix."""
    if not isinstance(value, str) or not value.strip():
        raise RequestError("image", "must be an s3:// URI or a key under the input prefix")
    value = value.strip()
    if is_s3_uri(value):
        return value
    key = value.lstrip("/")
    return f"s3://{input_bucket}/{key if key.startswith(input_prefix) else input_prefix + key}"


def _no_inline_masks(garments: list[dict[str, Any]], values: Mapping[str, Any]) -> None:
    """A batch row names painted masks by s3:// URI: base64 belongs to one console input."""
    for where, mask in [("mask_image", values.get("mask_image"))] + [
        (f"{g.get('garment_class') or f'garments[{i}]'}.mask_image", g.get("mask_image"))
        for i, g in enumerate(garments)
    ]:
        if isinstance(mask, str) and not mask.startswith("s3://"):
            raise RequestError(where, "a batch row names a painted mask by s3:// URI (under the mask prefix)")


def row_console_input(row: Any, input_bucket: str, input_prefix: str) -> dict[str, Any]:
    """One row -> the single-image workflow's console input (values typed, unknown columns refused).

    ``<class>.<parameter>`` cells become the console input's ``garments``, one per class.
    """
    if not isinstance(row, Mapping):
        raise RequestError("row", f"must be a JSON object, got {type(row).__name__}")
    unknown = _unknown_columns(row)
    if unknown:
        raise RequestError("row", f"unknown field(s) {', '.join(unknown)}; known: {_known_columns_text()}")
    given = {k: v for k, v in row.items() if v is not None}
    console: dict[str, Any] = {"image": image_uri(given.get("image"), input_bucket, input_prefix)}
    if given.get("preset") is not None:
        if not isinstance(given["preset"], str):
            raise RequestError("preset", f"must be a preset name, got {given['preset']!r}")
        console["preset"] = given["preset"].strip()
    job_values, by_class = garment_keys.split_flat(
        {k: v for k, v in given.items() if k not in ROW_FIELDS}, "batch"
    )
    console.update(params.validate_layer(job_values, "input", from_text=True))
    garments = (
        [dict(g) for g in given.get("garments") or []] if isinstance(given.get("garments"), list) else []
    )
    if "garments" in given and not isinstance(given["garments"], list):
        outfit.console_garments(given["garments"])  # refused, naming the field
    for cls, values in by_class.items():
        try:
            typed = params.validate_layer(values, "input", from_text=True)
        except RequestError as exc:
            raise RequestError(f"{cls}.{exc.field}", exc.detail) from None
        same = [
            g
            for g in garments
            if g.get("garment_class") and mask_modes.canonical_class(g["garment_class"]) == cls
        ]
        if same:
            same[0].update(typed)
        else:
            garments.append({"garment_class": cls, **typed})
    if garments:
        console["garments"] = outfit.console_garments(garments)
    _no_inline_masks(console.get("garments", []), console)
    return console


def cross_product(images: Iterable[str], variants: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows for every photo x every variant (a variant is a dict of parameters, e.g. an adapter)."""
    variants = [dict(v) for v in variants] or [{}]
    for variant in variants:
        unknown = _unknown_columns(set(variant) - {"image"}) + (["image"] if "image" in variant else [])
        if unknown:
            raise RequestError("variant", f"unknown field(s) {', '.join(sorted(unknown))}")
        row_console_input({"image": "s3://variant/check.png", **variant}, "variant", "")
    return [{"image": image, **variant} for image in images for variant in variants]


def write_manifest(rows: list[Mapping[str, Any]], fmt: str) -> str:
    """Rows as CSV (columns: image first, then the others in first-seen order) or JSON Lines."""
    if fmt == "jsonl":
        return "".join(json.dumps(dict(row) if isinstance(row, Mapping) else row) + "\n" for row in rows)
    # a CSV spells an outfit's garments as <class>.<parameter> columns
    rows = [
        {
            **{k: v for k, v in row.items() if k != "garments"},
            **garment_keys.to_flat(row.get("garments") or []),
        }
        for row in rows
    ]
    columns: list[str] = ["image"]
    for row in rows:
        columns += [k for k in row if k not in columns]  # CSV rows are always objects
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\r\n")  # RFC 4180; quotes \r
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return out.getvalue()


def options_metadata(options: Mapping[str, Any]) -> dict[str, str]:
    """Batch options as the manifest's S3 metadata (``max_concurrency`` -> ``max-concurrency: "20"``)."""
    return {name.replace("_", "-"): json.dumps(value) for name, value in options.items()}


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return spreadsheet_safe("" if value is None else str(value))
