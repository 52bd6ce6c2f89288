"""The rows an evaluation scores: read from a manifest (CSV or JSON Lines) or a dataset folder.

A manifest row (paths relative to the manifest's folder; docs/evaluation.md#manifests):

- ``photo`` (required): the person photo the try-on starts from;
- ``result``: an existing try-on to score; without it the workflow runs on the photo first;
- ``ground_truth``: the person already wearing the garment (paired metrics);
- ``packshot``: the garment's product photo; ``references``: a folder or ``;``-separated images
  (e.g. the adapter's training photos); both are garment-fidelity references;
- ``reference_mask``: a mask file (white = garment) for mask quality; ``mask``: the mask the
  result was painted in (the workflow writes its own); ``class``: the garment class (per-class
  breakdowns); ``prompt``: the prompt (CLIP-T, and sent to the job); ``id``, ``seed``;
- ``garment``: a packshot sent to the job (as ``tryon run --garment``); any other column is a
  job parameter (``query``, ``adapter``, ``preset``, ``steps``, ...), sent as ``tryon run`` sends it.

Dataset folders: VITON-HD's test layout and DressCode's (see :data:`LAYOUTS` and the docs).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tryon.core.errors import RequestError
from tryon.workflow.batch_manifest import from_spreadsheet_safe

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
PATH_COLUMNS = ("photo", "result", "ground_truth", "packshot", "reference_mask", "mask", "garment")
KNOWN_COLUMNS = (*PATH_COLUMNS, "id", "seed", "class", "prompt", "references")

#: VITON-HD parse maps (LIP labels): upper clothes, dress, coat.
VITON_HD_GARMENT_LABELS = {"upper-body": (5, 6, 7)}
#: DressCode label maps: upper clothes; skirt, pants; dress.
DRESSCODE_GARMENT_LABELS = {"upper-body": (4,), "lower-body": (5, 6), "dress": (7,)}
DRESSCODE_CATEGORIES = {"upper_body": "upper-body", "lower_body": "lower-body", "dresses": "dress"}


@dataclass
class EvalRow:
    """One try-on to score (a manifest row, or one seed of it once the workflow ran)."""

    id: str
    photo: Path
    result: Path | None = None
    ground_truth: Path | None = None
    packshot: Path | None = None
    references: list[Path] = field(default_factory=list)
    reference_mask: Path | None = None
    mask: Path | None = None
    garment_class: str | None = None
    prompt: str | None = None
    seed: int | None = None
    garment: Path | None = None
    job: dict[str, Any] = field(default_factory=dict)
    line: int = 0
    #: why the row has no result (a failed execution, no garment found), if so
    status: str = "ok"

    @property
    def garment_references(self) -> list[Path]:
        """Images the garment region is compared with: the packshot (or sent garment) and references."""
        first = self.packshot or self.garment
        return ([first] if first else []) + list(self.references)

    def where(self) -> str:
        return f"row {self.line} ({self.id})" if self.line else self.id


def _path(base: Path, value: Any, column: str, line: int) -> Path | None:
    text = str(value or "").strip()
    if not text:
        return None
    path = Path(text).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.exists():
        raise RequestError(column, f"{path} does not exist (row {line})")
    return path


def _references(base: Path, value: Any, line: int) -> list[Path]:
    text = str(value or "").strip()
    if not text:
        return []
    found: list[Path] = []
    for part in text.split(";"):
        path = _path(base, part, "references", line)
        if path is None:
            continue
        found += (
            sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if path.is_dir()
            else [path]
        )
    return found


def row_from_dict(values: dict[str, Any], base: Path, line: int) -> EvalRow:
    """One manifest row, its paths resolved against ``base`` and checked to exist."""
    values = {str(k).strip(): v for k, v in values.items() if k is not None}
    photo = _path(base, values.get("photo"), "photo", line)
    if photo is None:
        raise RequestError("photo", f"is required (row {line})")
    seed_text = str(values.get("seed") or "").strip()
    try:
        seed = int(seed_text) if seed_text else None
    except ValueError:
        raise RequestError("seed", f"must be an integer, got {seed_text!r} (row {line})") from None
    paths = {name: _path(base, values.get(name), name, line) for name in PATH_COLUMNS}
    job = {
        k: v for k, v in values.items() if k not in KNOWN_COLUMNS and str(v if v is not None else "").strip()
    }
    prompt = str(values.get("prompt") or "").strip() or None
    return EvalRow(
        id=str(values.get("id") or "").strip() or photo.stem,
        photo=photo,
        result=paths["result"],
        ground_truth=paths["ground_truth"],
        packshot=paths["packshot"],
        references=_references(base, values.get("references"), line),
        reference_mask=paths["reference_mask"],
        mask=paths["mask"],
        garment_class=str(values.get("class") or "").strip() or None,
        prompt=prompt,
        seed=seed,
        garment=paths["garment"],
        job=job,
        line=line,
    )


def read_manifest(path: Path) -> list[EvalRow]:
    """Rows of a CSV (header row) or JSON Lines manifest; RequestError names the row and column."""
    if not path.is_file():
        raise RequestError("MANIFEST", f"{path} is not a file")
    base = path.parent
    rows: list[EvalRow] = []
    if path.suffix.lower() in {".jsonl", ".json", ".ndjson"}:
        for line, text in enumerate(path.read_text().splitlines(), start=1):
            if not text.strip():
                continue
            try:
                values = json.loads(text)
            except json.JSONDecodeError as exc:
                raise RequestError("MANIFEST", f"{path} line {line} is not JSON ({exc.msg})") from None
            if not isinstance(values, dict):
                raise RequestError("MANIFEST", f"{path} line {line} is not a JSON object")
            rows.append(row_from_dict(values, base, line))
    else:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "photo" not in [f.strip() for f in reader.fieldnames]:
                raise RequestError("MANIFEST", f"{path} has no 'photo' column (header: {reader.fieldnames})")
            for line, values in enumerate(reader, start=2):
                # a cell written by a spreadsheet-safe CSV (tryon batch cross) reads as it was written
                cells = {k: from_spreadsheet_safe(v) if isinstance(v, str) else v for k, v in values.items()}
                rows.append(row_from_dict(cells, base, line))
    if not rows:
        raise RequestError("MANIFEST", f"{path} has no rows")
    ids = [(row.id, row.seed) for row in rows]
    duplicates = sorted({str(i) for i, s in ids if ids.count((i, s)) > 1})
    if duplicates:
        raise RequestError(
            "id", f"{path} repeats id(s) {', '.join(duplicates)} (give each row its own id or seed)"
        )
    return rows


# ---------------------------------------------------------------------- dataset folders
def _label_mask(label_map: Path, labels: tuple[int, ...], out: Path) -> Path:
    """A white-on-black mask of ``labels`` in a parse/label map, written to ``out``."""
    with Image.open(label_map) as img:
        values = np.asarray(img if img.mode in {"P", "L", "I"} else img.convert("L"))
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.isin(values, labels) * 255).astype(np.uint8), mode="L").save(out)
    return out


def _find(folder: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def _pairs(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for text in path.read_text().splitlines():
        parts = text.split()
        if len(parts) >= 2:
            pairs.append((parts[0], parts[1]))
    return pairs


def _listed(path: Path, why: str) -> Path:
    """``path`` (a file the dataset's layout names, ``why``); RequestError when it does not exist."""
    if not path.is_file():
        raise RequestError("SOURCE", f"{path} does not exist ({why})")
    return path


def _results_for(results: Path | None, person: str, cloth: str) -> Path | None:
    if results is None:
        return None
    stem_p, stem_c = Path(person).stem, Path(cloth).stem
    for stem in (stem_p, f"{stem_p}_{stem_c}"):
        found = _find(results, stem)
        if found is not None:
            return found
    raise RequestError(
        "--results", f"{results} has no result for {person} ({stem_p}.png or {stem_p}_{stem_c}.png)"
    )


def read_viton_hd(folder: Path, *, paired: bool, results: Path | None, work: Path) -> list[EvalRow]:
    """VITON-HD's test folder: ``image/``, ``cloth/``, ``image-parse-v3/``, ``test_pairs.txt``."""
    pairs_file = folder / "test_pairs.txt"
    people = sorted(p.name for p in (folder / "image").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    pairs = [(p, p) for p in people] if paired else _pairs(pairs_file)
    rows = []
    for line, (person, cloth) in enumerate(pairs, start=1):
        photo = _listed(folder / "image" / person, f"named in {pairs_file}")
        parse = _find(folder / "image-parse-v3", Path(person).stem)
        mask = None
        if parse is not None:
            labels = VITON_HD_GARMENT_LABELS["upper-body"]
            mask = _label_mask(parse, labels, work / "reference-masks" / f"{Path(person).stem}.png")
        rows.append(
            EvalRow(
                id=Path(person).stem if paired else f"{Path(person).stem}_{Path(cloth).stem}",
                photo=photo,
                result=_results_for(results, person, cloth),
                ground_truth=photo if paired else None,
                packshot=_listed(folder / "cloth" / cloth, f"the garment of {person}"),
                reference_mask=mask,
                garment_class="upper-body",
                job={"preset": "upper-body"},
                line=line,
            )
        )
    return rows


def read_dresscode(folder: Path, *, paired: bool, results: Path | None, work: Path) -> list[EvalRow]:
    """DressCode: ``<category>/images/`` (``X_0`` person, ``X_1`` garment), ``label_maps/`` (``X_4``),
    ``<category>/test_pairs_paired.txt`` / ``test_pairs_unpaired.txt``; results in ``results/<category>/``
    or ``results/`` itself."""
    rows = []
    for category, garment_class in DRESSCODE_CATEGORIES.items():
        base = folder / category
        pairs_file = base / ("test_pairs_paired.txt" if paired else "test_pairs_unpaired.txt")
        if not pairs_file.is_file():
            continue
        found = results / category if results is not None and (results / category).is_dir() else results
        for person, cloth in _pairs(pairs_file):
            stem = Path(person).stem.rsplit("_", 1)[0]
            label_map = _find(base / "label_maps", f"{stem}_4")
            mask = None
            if label_map is not None:
                labels = DRESSCODE_GARMENT_LABELS[garment_class]
                mask = _label_mask(label_map, labels, work / "reference-masks" / category / f"{stem}.png")
            photo = _listed(base / "images" / person, f"named in {pairs_file}")
            rows.append(
                EvalRow(
                    id=f"{category}/{Path(person).stem}" + ("" if paired else f"_{Path(cloth).stem}"),
                    photo=photo,
                    result=_results_for(found, person, cloth),
                    ground_truth=photo if paired else None,
                    packshot=_listed(base / "images" / cloth, f"named in {pairs_file}"),
                    reference_mask=mask,
                    garment_class=garment_class,
                    job={"preset": garment_class},
                    line=len(rows) + 1,
                )
            )
    return rows


#: Dataset folder layouts ``tryon eval`` recognises, and the file that marks each.
LAYOUTS = {"viton-hd": "test_pairs.txt", "dresscode": "upper_body"}


def detect_layout(folder: Path) -> str:
    """``viton-hd`` or ``dresscode`` from what the folder holds; RequestError otherwise."""
    if (folder / "image").is_dir() and (folder / "cloth").is_dir():
        return "viton-hd"
    if any((folder / category / "images").is_dir() for category in DRESSCODE_CATEGORIES):
        return "dresscode"
    raise RequestError(
        "SOURCE",
        f"{folder} is neither a VITON-HD test folder (image/, cloth/) nor a DressCode one "
        "(upper_body/images/, ...); see docs/evaluation.md#dataset-folders",
    )


def read_source(source: Path, *, paired: bool, results: Path | None, work: Path) -> list[EvalRow]:
    """Rows from a manifest file or a dataset folder."""
    if source.is_file():
        if results is not None:
            raise RequestError(
                "--results", "applies to dataset folders; a manifest names each result in its rows"
            )
        return read_manifest(source)
    if not source.is_dir():
        raise RequestError("SOURCE", f"{source} does not exist (a manifest file or a dataset folder)")
    layout = detect_layout(source)
    reader = read_viton_hd if layout == "viton-hd" else read_dresscode
    rows = reader(source, paired=paired, results=results, work=work)
    if not rows:
        raise RequestError("SOURCE", f"{source} ({layout}) has no test pairs")
    return rows
