"""``tryon batch`` as a user runs it: a cross-product manifest run on one machine, the exit codes."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image
from support.images import save_photo

from tryon.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_WORKFLOW_FAILED, run

pytestmark = pytest.mark.slow


def test_cross_then_run_writes_report_contact_sheet_and_results(tmp_path, tiny_models, capsys):
    photos = [
        save_photo(tmp_path / "photos" / "a.jpg", (40, 56)),
        save_photo(tmp_path / "photos" / "b.png", (56, 40)),
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


STACK = "tryon-batch-test"
REGION = "us-east-1"


@pytest.fixture(scope="module")
def deployed(tiny_models):
    """A 'deployed' stack on moto: the harness's resources and a CloudFormation stack exposing them."""
    from tryon.local import LocalWorkflow
    from tryon.local.batch_runner import LocalBatches, distributed_map_engine
    from tryon.local.deployed import publish_stack
    from tryon.local.runner import TINY_PARAMETERS
    from tryon.local.samples import sample_photo

    dirs = {"clipseg": tiny_models["clipseg"], "sd_inpaint": tiny_models["sd-inpaint"]}
    parameters = {**TINY_PARAMETERS, "DefaultNegativeQueries": ""}
    with (
        distributed_map_engine(),
        LocalWorkflow(dirs, parameters=parameters, upscale=False, deliver_events=True) as wf,
    ):
        batches = LocalBatches(wf)
        batches.deliver_uploads()
        wf.upload(sample_photo((40, 56)), "inputs/cat/a.png")
        batch_outputs = {
            "BatchStateMachineArn": batches.state_machine_arn,
            "BatchPrefix": batches.batch_prefix,
            "BatchReportsPrefix": "results/batches/",
        }
        publish_stack(wf, STACK, batch_outputs)
        yield wf


def test_submit_and_status_on_a_deployed_stack(deployed, tmp_path, capsys):
    manifest = tmp_path / "drop.jsonl"
    rows = [
        {"image": "cat/a.png", "prompt": "a red shirt", "threshold": 0, "seed": 1},
        {"image": f"s3://{deployed.input_bucket}/inputs/cat/a.png", "prompt": "a blue shirt", "threshold": 0},
    ]
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    argv = ["batch", "submit", str(manifest), "--stack", STACK, "--region", REGION, "--out", str(out)]
    code = run([*argv, "--max-concurrency", "2", "--json"])
    captured = capsys.readouterr()
    answer = json.loads(captured.out.strip().splitlines()[-1])
    assert code == EXIT_OK, captured.err
    assert answer["status"] == "succeeded" and answer["counts"]["rows"] == 2
    head = deployed.client("s3").head_object(Bucket=deployed.input_bucket, Key="batches/drop.jsonl")
    assert head["Metadata"] == {"max-concurrency": "2"}
    folder = out / answer["batch_id"]
    assert {"report.csv", "report.json", "contact-sheet.jpg"} <= {p.name for p in folder.iterdir()}
    execution = captured.err.split("execution ")[1].split()[0]
    assert run(["batch", "status", execution.rsplit(":", 1)[1], "--stack", STACK, "--region", REGION,
                "--out", str(tmp_path / "again")]) == EXIT_OK  # fmt: skip
    assert "report: " in capsys.readouterr().out

    manifest.write_text('{"image": "cat/a.png", "steps": 1000}\n')  # refused: exit 1, its report downloaded
    code = run([*argv, "--json"])
    answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == EXIT_WORKFLOW_FAILED and answer["status"] == "refused"
    assert "row 1: steps: must be <= 150, got 1000" in answer["cause"]
    assert answer["counts"] == {"rows": 1, "invalid": 1}
