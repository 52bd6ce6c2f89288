"""``tryon batch`` with awkward and hostile manifests, as a new user writes them (issue 17, items 13-20).

Each check reads the command's whole output: stdout holds the answer only (with ``--json``
exactly one JSON object), stderr one ``error:`` line for a refusal.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from PIL import Image
from support.images import save_photo

from tryon.cli import EXIT_BAD_INPUT, EXIT_WORKFLOW_FAILED, run
from tryon.workflow import batch_manifest


def _refused(capsys, argv: list[str]) -> tuple[str, str]:
    assert run(argv) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    return captured.out, captured.err


# ---------------------------------------------------------------- refused before anything starts
def test_a_repeated_column_is_refused_by_name(tmp_path, capsys):
    save_photo(tmp_path / "a.png", (32, 32))
    manifest = tmp_path / "m.csv"
    manifest.write_text("image,prompt,steps,prompt\na.png,a red shirt,2,a blue shirt\n")
    out, err = _refused(capsys, ["batch", "run", str(manifest)])
    assert out == ""
    assert err == "error: batch: the CSV header repeats the column(s) prompt: keep one of each\n"


def test_every_bad_row_is_named_at_once_before_any_model_loads(tmp_path, capsys, monkeypatch):
    import tryon.cli.jobs

    def no_models(*_args, **_kwargs):
        raise AssertionError("models were looked for before the manifest was checked")

    monkeypatch.setattr(tryon.cli.jobs, "resolve_models", no_models)
    save_photo(tmp_path / "a.png", (32, 32))
    manifest = tmp_path / "m.jsonl"
    rows = [
        {"image": "a.png", "prompt": "a shirt\u2028with a line separator\u2029and more\u0085inside"},
        [1, 2],
        {"image": "nope.png"},
        {"image": "a.png", "steps": 500},
        "just text",
    ]
    manifest.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    out, err = _refused(capsys, ["batch", "run", str(manifest)])
    assert out == ""
    assert err == (
        "error: MANIFEST: 4 problem(s) in m.jsonl (pass --allow-invalid-rows to run the good rows and report "
        "the bad ones): row 2: must be a JSON object, got list; "
        f"row 3: image: nope.png is not a file (relative to {tmp_path}); "
        "row 4: steps: must be <= 150, got 500; row 5: must be a JSON object, got str\n"
    )
    # JSON Lines are split on \n only: the line separators inside row 1's prompt are its own
    parsed = batch_manifest.parse_manifest(manifest.read_bytes(), manifest.name)
    assert len(parsed) == 5 and parsed[0] == rows[0]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--max-concurrency", "0"], "--max-concurrency: must be >= 1, got 0"),
        (
            ["--tolerated-failure-percentage", "101"],
            "--tolerated-failure-percentage: must be <= 100.0, got 101.0",
        ),
    ],
)
def test_options_are_checked_before_the_stack_starts_exit_2(tmp_path, capsys, option, message):
    save_photo(tmp_path / "a.png", (32, 32))
    manifest = tmp_path / "m.csv"
    manifest.write_text("image\na.png\n")
    out, err = _refused(capsys, ["batch", "run", str(manifest), *option])
    assert (out, err) == ("", f"error: {message}\n")
    out, err = _refused(capsys, ["batch", "run", str(manifest), *option, "--json"])
    assert json.loads(out) == {"status": "error", "error": message, "exit_code": 2}
    assert err == f"error: {message}\n"


def test_cells_a_spreadsheet_would_run_are_neutralised_and_read_back_unchanged():
    prompts = ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "\tx", "\rx", "plain", "it's fine"]
    rows = [{"image": f"p{i}.png", "prompt": p} for i, p in enumerate(prompts)]
    text = batch_manifest.write_manifest(rows, "csv")
    cells = [r["prompt"] for r in csv.DictReader(io.StringIO(text, newline=""))]
    assert cells[:6] == ["'" + p for p in prompts[:6]] and cells[6:] == prompts[6:]
    parsed = batch_manifest.parse_manifest(text.encode(), "m.csv")
    assert [r["prompt"] for r in parsed] == prompts


# ---------------------------------------------------------------- one hostile batch, run
@pytest.mark.slow
def test_a_hostile_manifest_runs_each_photo_on_its_own_file_and_reports_safely(tmp_path, tiny_models, capsys):
    first = save_photo(tmp_path / "shoots" / "monday" / "look.png", (40, 56))
    second = save_photo(tmp_path / "shoots" / "tuesday" / "look.png", (56, 40), angle=90)
    before = {p: p.read_bytes() for p in (first, second)}
    manifest = tmp_path / "lists" / "spring.csv"
    manifest.parent.mkdir()
    formula = '=HYPERLINK("http://example.invalid","x")'
    manifest.write_text(
        "image,prompt,steps,threshold\n"
        f'../shoots/monday/look.png,"{formula.replace(chr(34), chr(34) * 2)}",2,0\n'
        "../shoots/tuesday/look.png,a red shirt,2,0\n"
        "../shoots/wednesday/look.png,a red shirt,2,0\n"
    )
    out = tmp_path / "out"
    argv = [
        "batch",
        "run",
        str(manifest),
        "--allow-invalid-rows",
        "--no-upscale",
        "--out",
        str(out),
        "--json",
    ]
    code = run(argv)
    captured = capsys.readouterr()
    answer = json.loads(captured.out)  # the whole of stdout is one JSON object
    assert code == EXIT_WORKFLOW_FAILED, answer  # the missing photo is an invalid row: exit 1
    assert answer["status"] == "completed-with-failures"
    counts = answer["counts"]
    assert counts["rows"] == 3 and counts["invalid"] == 1 and not counts.get("duplicate")
    assert counts.get("succeeded", 0) + counts.get("no-garment-found", 0) == 2
    report = json.loads((out / answer["batch_id"] / "report.json").read_text())
    rows = report["rows"]
    # two files named look.png: two objects, two jobs, each row on its own photo
    assert rows[0]["image"].endswith("/shoots/monday/look.png")
    assert rows[1]["image"].endswith("/shoots/tuesday/look.png")
    assert rows[0]["job_id"] != rows[1]["job_id"]
    assert rows[2]["status"] == "invalid" and "wednesday/look.png" in rows[2]["cause"]
    assert rows[0]["prompt"] == formula  # the model got the prompt as written ...
    sent = json.loads((out / answer["batch_id"] / "rows" / "1" / "manifest.json").read_text())
    assert sent["params"]["prompt"] == formula
    with (out / answer["batch_id"] / "report.csv").open(newline="") as fh:
        cells = list(csv.DictReader(fh))
    assert cells[0]["prompt"] == "'" + formula  # ... and a spreadsheet shows it as text
    sizes = {Image.open(out / answer["batch_id"] / "rows" / str(n) / "mask.png").size for n in (1, 2)}
    assert sizes == {(40, 56), (56, 40)}  # each row's mask has its own photo's size
    # stderr: the tiny-models notice, the status lines and the failure of the invalid row only
    err = [line for line in captured.err.splitlines() if line and "batch" not in line.split(":")[0]]
    assert all(
        line.startswith(("models:", "starting the local stack", "uploaded ", "started ", "error: "))
        for line in err
    ), captured.err
    assert "Traceback" not in captured.err and "Exception=" not in captured.err
    assert {p: p.read_bytes() for p in (first, second)} == before
