"""``tryon eval --stack NAME``: the rows run on a deployed stack exactly as ``tryon submit`` runs a photo.

The stack is the local harness published as a CloudFormation stack on moto (its outputs name the
harness's buckets, prefixes and state machine; EventBridge delivery emulated), so the command finds
it by name, uploads each row's photo with the job as metadata, follows the execution the upload
started and downloads its results, as it would in AWS.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tryon.cli import EXIT_BAD_INPUT, run

pytestmark = pytest.mark.slow

REGION = "us-east-1"
STACK = "tryon-eval"


@pytest.fixture(scope="module")
def deployed(tiny_models):
    from tryon.local import LocalWorkflow
    from tryon.local.deployed import publish_stack
    from tryon.local.runner import TINY_PARAMETERS

    dirs = {"clipseg": tiny_models["clipseg"], "sd_inpaint": tiny_models["sd-inpaint"]}
    with LocalWorkflow(dirs, parameters=TINY_PARAMETERS, upscale=False, deliver_events=True) as wf:
        publish_stack(wf, STACK)
        yield wf


def _manifest(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    photo = Image.radial_gradient("L").resize((300, 200)).convert("RGB")
    photo.save(folder / "look.png")
    photo.rotate(180).save(folder / "other.png")
    lines = ["id,photo,prompt,query,steps,adapter", *rows]
    (folder / "rows.csv").write_text("\n".join(lines) + "\n")
    return folder / "rows.csv"


def _inputs(wf):
    listed = wf.client("s3").list_objects_v2(Bucket=wf.input_bucket, Prefix=wf.input_prefix)
    return sorted(obj["Key"] for obj in listed.get("Contents", []))


def test_eval_runs_every_row_and_seed_on_the_stack_as_submit_does(
    deployed, tiny_metric_models, tmp_path, capsys
):
    rows = ["coat,look.png,a red coat,a coat,2,", "other,other.png,a red coat,a coat,2,"]
    rows.append("broken,look.png,a red coat,a coat,2,no-such-garment")  # its job fails on the stack
    manifest = _manifest(tmp_path / "data", rows)
    out = tmp_path / "eval"
    options = ["--metric-models", str(tiny_metric_models), "--metrics", "prompt,preservation", "--json"]
    code = run(["eval", str(manifest), "--stack", STACK, "--region", REGION, "--seeds", "2",
                "--out", str(out), *options])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    answer = json.loads(captured.out)  # the whole of stdout
    document = json.loads((out / "eval.json").read_text())
    assert document["source"] == f"{manifest} (stack {STACK})"

    # each row and seed was its own upload, its job as submit sends it (metadata), its own execution
    s3 = deployed.client("s3")
    names = [f"eval-{row}-s{seed}.png" for row in ("coat", "other", "broken") for seed in (0, 1)]
    assert _inputs(deployed) == sorted(deployed.input_prefix + name for name in names)
    head = s3.head_object(Bucket=deployed.input_bucket, Key=f"{deployed.input_prefix}eval-coat-s1.png")
    assert head["Metadata"] == {"prompt": "a red coat", "query": "a coat", "steps": "2", "seed": "1",
                                "upscale": "false"}  # fmt: skip

    rows = {(r["id"], r["seed"]): r for r in document["rows"]}
    assert set(rows) == {(row, seed) for row in ("coat", "other", "broken") for seed in (0, 1)}
    for row_id in ("coat", "other"):
        for seed in (0, 1):
            row = rows[(row_id, seed)]
            folder = out / "rows" / row_id / f"s{seed}"
            assert row["status"] == "ok" and row["result"] == str(folder / "inpainted-0.png")
            assert row["mask"] == str(folder / "mask.png")
            manifest_json = json.loads((folder / "manifest.json").read_text())
            assert manifest_json["params"]["seed"] == seed and manifest_json["params"]["steps"] == 2
            assert "clip_t" in row["metrics"]
            assert row["metrics"]["changed_outside"] == 0.0  # not one pixel outside the mask changed
    # a run that fails keeps its row, with the failure, and no score; its failure record is kept
    for seed in (0, 1):
        broken = rows[("broken", seed)]
        assert broken["status"] == "failed: ModelError" and not broken["metrics"]
        assert [p.suffix for p in (out / "rows" / "broken" / f"s{seed}").iterdir()] == [".json"]
    assert sorted(answer["unscored"]) == ["broken", "broken"]
    assert set(answer["seed_noise"]) >= {"clip_t", "changed_outside"}
    assert "[6/6] broken seed 1: failed: ModelError" in captured.err


def test_eval_on_a_stack_refuses_a_bad_row_before_any_upload(deployed, tiny_metric_models, tmp_path, capsys):
    before = _inputs(deployed)
    manifest = _manifest(
        tmp_path / "data", ["ok,look.png,a coat,a coat,2,", "bad,other.png,a coat,a coat,0,"]
    )
    code = run(["eval", str(manifest), "--stack", STACK, "--region", REGION, "--out", str(tmp_path / "out"),
                "--metric-models", str(tiny_metric_models), "--metrics", "preservation"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == EXIT_BAD_INPUT and len(err.splitlines()) == 1, err
    assert err == "error: steps (from metadata): row 3 (bad): must be >= 1, got 0"
    assert _inputs(deployed) == before  # nothing was uploaded, no execution started

    manifest = _manifest(tmp_path / "good", ["ok,look.png,a coat,a coat,2,"])
    code = run(["eval", str(manifest), "--stack", "nope", "--region", REGION, "--out", str(tmp_path / "out"),
                "--metric-models", str(tiny_metric_models), "--metrics", "preservation"])  # fmt: skip
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert "no stack named 'nope' in us-east-1" in err and len(err.splitlines()) == 1
