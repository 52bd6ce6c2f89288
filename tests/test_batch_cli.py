"""``tryon batch`` as a user runs it: a cross-product manifest run on one machine, the exit codes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from tryon.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_WORKFLOW_FAILED, run

pytestmark = pytest.mark.slow


def _photo(path: Path, size: tuple[int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.radial_gradient("L").resize(size).convert("RGB").save(path)
    return path


def test_cross_then_run_writes_report_contact_sheet_and_results(tmp_path, tiny_models, capsys):
    photos = [
        _photo(tmp_path / "photos" / "a.jpg", (40, 56)),
        _photo(tmp_path / "photos" / "b.png", (56, 40)),
    ]
    before = {p: p.read_bytes() for p in photos}
    manifest = tmp_path / "spring.csv"
    argv = ["batch", "cross", str(tmp_path / "photos"), "--out", str(manifest), "--prompt", "a red shirt"]
    assert run([*argv, "--set", "threshold=0", "--set", "steps=2"]) == EXIT_OK
    rows = list(csv.DictReader(manifest.open()))
    assert [r["image"] for r in rows] == ["photos/a.jpg", "photos/b.png"] and rows[0]["threshold"] == "0"
    with manifest.open("a", newline="") as fh:  # a bad row: the batch runs the good ones and exits 1
        csv.DictWriter(fh, fieldnames=list(rows[0])).writerow({**rows[0], "steps": "500"})
    capsys.readouterr()
    out = tmp_path / "out"
    code = run(
        ["batch", "run", str(manifest), "--allow-invalid-rows", "--no-upscale", "--out", str(out), "--json"]
    )
    answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == EXIT_WORKFLOW_FAILED, answer
    assert answer["status"] == "completed-with-failures"
    counts = answer["counts"]  # random tiny CLIPSeg weights: a mask or none ("no-garment-found")
    assert counts["rows"] == 3 and counts["invalid"] == 1
    assert counts.get("succeeded", 0) + counts.get("no-garment-found", 0) == 2
    folder = out / answer["batch_id"]
    assert answer["report"] == str(folder / "report.csv")
    report = json.loads((folder / "report.json").read_text())
    assert report["rows"][2]["cause"] == "steps: must be <= 150, got 500"
    assert Image.open(folder / "contact-sheet.jpg").format == "JPEG"
    assert {"manifest.json", "mask.png", "preview.jpg"} <= {p.name for p in (folder / "rows" / "1").iterdir()}
    assert {p: p.read_bytes() for p in photos} == before  # inputs never modified


def test_run_refuses_missing_photos_before_any_model_loads(tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"image": "nope.jpg"}\n{"image": "s3://bucket/inputs/x.jpg"}\n')
    assert run(["batch", "run", str(manifest)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "row 1: image: nope.jpg is not a file" in err and "row 2: image: s3://bucket/inputs/x.jpg" in err
    assert "Traceback" not in err
    (tmp_path / "m.xlsx").write_text("image\n")
    assert run(["batch", "run", str(tmp_path / "m.xlsx")]) == EXIT_BAD_INPUT
    assert "must end with one of .csv, .jsonl, .ndjson" in capsys.readouterr().err
