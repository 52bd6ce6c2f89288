"""Catalogue batches end to end on moto: template.yaml's batch state machine (a Distributed Map
running the single-image state machine per row), ValidateBatch and SummarizeBatch, and every
row's try-on through the real handlers on the tiny checkpoints."""

from __future__ import annotations

import csv
import io
import json

import pytest
from PIL import Image

from tryon.local import LocalWorkflow
from tryon.local.batch_runner import LocalBatches, distributed_map_engine
from tryon.local.samples import assemble_inpaint_model, sample_photo
from tryon.workflow import batch_manifest

FAST_PARAMETERS = {"DefaultSteps": 2, "UpscaleEndpointName": "", "DefaultNegativeQueries": ""}
PHOTOS = {
    "inputs/cat/model-a.jpg": sample_photo((48, 64), "JPEG"),
    "inputs/cat/model-b.png": sample_photo((64, 48)),
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tiny_models, tmp_path_factory, one_torch_thread):
    inpaint = assemble_inpaint_model(
        tiny_models["sd-inpaint"], {"garment-a": tiny_models["lora-a"]}, tmp_path_factory.mktemp("inpaint")
    )
    models = {"clipseg": tiny_models["clipseg"], "sd_inpaint": inpaint}
    with (
        distributed_map_engine(),
        LocalWorkflow(models, parameters=FAST_PARAMETERS, deliver_events=True) as wf,
    ):
        batches = LocalBatches(wf)
        batches.deliver_uploads()
        versions = {key: wf.upload(data, key)["version_id"] for key, data in PHOTOS.items()}
        yield wf, batches, versions


def tryon_executions(wf) -> list[dict]:
    return wf.client("stepfunctions").list_executions(stateMachineArn=wf.state_machine_arn)["executions"]


def catalogue_rows() -> list[dict]:
    """8 good rows (2 photos x 2 adapters x 2 prompts), a duplicate of row 1, and a bad row."""
    variants = [
        {"adapter": adapter, "prompt": prompt}
        for adapter in ("", "garment-a")
        for prompt in ("a red shirt", "a blue shirt")
    ]
    rows = batch_manifest.cross_product(["cat/model-a.jpg", "inputs/cat/model-b.png"], variants)
    for row in rows:
        row.update({"query": "a shirt", "threshold": "0.0", "num_images": "1"})
        if not row["adapter"]:
            del row["adapter"]
    return [*rows, dict(rows[0]), {"image": "cat/model-a.jpg", "steps": "500"}]


def assert_inputs_unchanged(wf, versions):
    s3 = wf.client("s3")
    for key, data in PHOTOS.items():
        assert wf.read_bytes(f"s3://{wf.input_bucket}/{key}") == data
        listed = s3.list_object_versions(Bucket=wf.input_bucket, Prefix=key)["Versions"]
        assert [v["VersionId"] for v in listed] == [versions[key]]


def test_bad_rows_refuse_the_batch_and_every_one_is_listed(stack):
    wf, batches, versions = stack
    text = batch_manifest.write_manifest(
        [
            {"image": "cat/model-a.jpg", "steps": "4"},
            {"image": "cat/model-a.jpg", "steps": "500"},
            {"image": "s3://someone-elses-bucket/inputs/x.jpg"},
            {"image": "cat/missing.jpg"},
            {"image": "cat/model-b.png", "num_images": "many"},
        ],
        "csv",
    )
    before = len(tryon_executions(wf))
    key = batches.upload_manifest(text, "refused.csv")["key"]
    outcome = batches.wait(batches.find_started(key), timeout=120)
    assert outcome.result.status == "FAILED" and outcome.result.error == "BatchRefused"
    cause = outcome.result.cause
    assert "4 of 5 rows are invalid" in cause
    assert "row 2: steps: must be <= 150, got 500" in cause
    assert "row 3: image: s3://someone-elses-bucket/inputs/x.jpg is not in the input bucket" in cause
    assert "row 4: image:" in cause and "does not exist" in cause
    assert "row 5: num_images" in cause and "must be an integer" in cause
    assert "Error" not in cause.split("rows are invalid")[1]  # no Python exception names
    assert len(tryon_executions(wf)) == before  # no model ran
    report_csv = cause.split("every bad row: ")[1].split(";")[0]
    rows = list(csv.DictReader(io.StringIO(wf.read_bytes(report_csv).decode())))
    assert [r["status"] for r in rows] == ["not-run", "invalid", "invalid", "invalid", "invalid"]
    assert rows[1]["cause"] == "steps: must be <= 150, got 500"
    assert_inputs_unchanged(wf, versions)


def test_csv_catalogue_runs_good_rows_reports_bad_and_rerun_skips_finished(stack):
    wf, batches, versions = stack
    text = batch_manifest.write_manifest(catalogue_rows(), "csv")
    uploaded = batches.upload_manifest(text, "spring.csv", metadata={"allow-invalid-rows": "true"})
    seen = []
    outcome = batches.wait(batches.find_started(uploaded["key"]), timeout=600, on_progress=seen.append)
    assert outcome.result.status == "SUCCEEDED", outcome.result.cause
    assert outcome.summary["status"] == "completed-with-failures"  # the bad row
    report = outcome.report
    statuses = [r["status"] for r in report["rows"]]
    assert statuses[:8] == ["succeeded"] * 8 and statuses[8:] == ["duplicate", "invalid"]
    assert report["counts"] == {"rows": 10, "succeeded": 8, "duplicate": 1, "invalid": 1}
    assert seen and seen[-1].done == 8 and seen[-1].failed == 0
    assert len(tryon_executions(wf)) >= 8
    for row in report["rows"][:8]:
        assert row["job_id"] and len(row["seeds"]) == 1 and row["timings_ms"]["inpaint"] > 0
        assert len(row["results"]) == 1 and wf.read_bytes(row["results"][0])[:4] == b"\x89PNG"
    adapters = {r["adapter"] for r in report["rows"][:8]}
    assert adapters == {None, "garment-a"}
    prefix = f"results/batches/{report['batch_id']}/"
    lines = list(csv.DictReader(io.StringIO(wf.read_bytes(prefix + "report.csv").decode())))
    assert [int(r["row"]) for r in lines] == list(range(1, 11))
    assert lines[9]["cause"] == "steps: must be <= 150, got 500"
    assert report["contact_sheets"] == [f"s3://{wf.output_bucket}/{prefix}contact-sheet.jpg"]
    sheet = Image.open(io.BytesIO(wf.read_bytes(report["contact_sheets"][0])))
    assert sheet.format == "JPEG" and sheet.width > 4 * 2 * 100 and sheet.height > 3 * 100

    # The same manifest again (console input, same object version): the same batch id, no row re-runs.
    started = len(tryon_executions(wf))
    again = batches.wait(
        batches.start({"batch": f"s3://{wf.input_bucket}/{uploaded['key']}", "allow_invalid_rows": True})
    )
    assert again.result.status == "SUCCEEDED"
    assert again.report["batch_id"] == report["batch_id"]
    assert [r["status"] for r in again.report["rows"]][:8] == ["already-complete"] * 8
    assert [r["results"] for r in again.report["rows"]] == [r["results"] for r in report["rows"]]
    assert len(tryon_executions(wf)) == started
    assert_inputs_unchanged(wf, versions)


def test_jsonl_batch_over_the_tolerated_failures_fails_with_its_report(stack):
    wf, batches, _ = stack
    rows = [
        {"image": "cat/model-b.png", "adapter": "no-such-garment", "threshold": 0.0, "seed": 3},
        {"image": "cat/model-a.jpg", "adapter": "no-such-garment", "threshold": 0.0, "seed": 3},
        {"image": "cat/model-a.jpg", "prompt": "a green coat", "threshold": 0.0, "seed": 3},
    ]
    options = {"max-concurrency": "1", "tolerated-failure-percentage": "10"}  # as S3 metadata
    text = batch_manifest.write_manifest(rows, "jsonl")
    key = batches.upload_manifest(text, "tolerance.jsonl", metadata=options)["key"]
    outcome = batches.wait(batches.find_started(key), timeout=300)
    assert outcome.result.status == "FAILED" and outcome.result.error == "BatchFailed"
    assert "States.ExceedToleratedFailureThreshold" in outcome.result.cause
    report = outcome.report
    assert report["status"] == "failed" and report["batch_id"] in outcome.result.cause
    statuses = [r["status"] for r in report["rows"]]
    assert statuses[0] == "failed" and set(statuses) <= {"failed", "succeeded", "not-run"}
    first = report["rows"][0]
    assert first["error"] == "ModelError" and "no-such-garment" in first["cause"]
    assert wf.read_bytes(f"results/batches/{report['batch_id']}/report.csv").startswith(b"row,status")


REFUSED = [
    ("catalogue.xlsx", b"image\ncat/model-a.jpg\n", "must end with one of .csv, .jsonl, .ndjson"),
    ("empty.csv", b"", "is empty (0 bytes)"),
    ("header-only.csv", b"image,prompt\n", "the manifest has no rows"),
    ("no-image.csv", b"prompt\na red shirt\n", "the CSV header must have an image column"),
    ("latin1.csv", "image,prompt\ncat/model-a.jpg,caf\xe9\n".encode("latin-1"), "is not UTF-8 text"),
    (
        "big.csv",
        b"image\n" + b"cat/model-a.jpg\n" * (batch_manifest.MAX_MANIFEST_BYTES // 16 + 1),
        "the limit is",
    ),
]


@pytest.mark.parametrize(("name", "body", "expected"), REFUSED, ids=[r[0] for r in REFUSED])
def test_manifests_refused_clearly(stack, name, body, expected):
    wf, batches, _ = stack
    key = batches.upload_manifest(body, name)["key"]
    outcome = batches.wait(batches.find_started(key), timeout=120)
    assert outcome.result.status == "FAILED" and outcome.result.error == "BatchRefused"
    assert expected in outcome.result.cause and "Traceback" not in outcome.result.cause
    record = json.loads(wf.read_bytes(outcome.result.state_output("RecordRefusal")["failure"]["failure"]))
    assert record["error"] == "InvalidInput" and record["step"] == "validate-batch"
    assert outcome.result.cause.startswith("validate-batch: batch: ")


def test_console_input_naming_another_bucket_or_prefix_or_bad_options_is_refused(stack):
    wf, batches, _ = stack
    uri = (
        f"s3://{wf.input_bucket}/"
        + batches.upload_manifest(b"image\ncat/model-a.jpg\n", "options.csv")["key"]
    )
    metadata = {"max-concurrency": "lots"}
    key = batches.upload_manifest(b"image\ncat/model-a.jpg\n", "bad-options.csv", metadata=metadata)["key"]
    for batch_input, expected in [
        ({"batch": "s3://someone-elses-bucket/batches/a.csv"}, "is not in the input bucket"),
        ({"batch": f"s3://{wf.input_bucket}/inputs/a.csv"}, "is not under the batch prefix batches/"),
        ({"batch": uri, "max_concurrency": 0}, "max_concurrency: must be >= 1, got 0"),
        ({"batch": uri, "tolerated_failure_percentage": 101}, "tolerated_failure_percentage: must be <= 100"),
        ({"batch": uri, "colour": "red"}, "colour"),
        ({"batch": f"s3://{wf.input_bucket}/{key}"}, "max_concurrency (from metadata): must be an integer"),
    ]:
        outcome = batches.wait(batches.start(batch_input), timeout=60)
        assert outcome.result.status == "FAILED" and expected in outcome.result.cause, outcome.result.cause


def test_a_batch_row_can_describe_an_outfit(stack):
    """<class>.<parameter> columns make a row an outfit: a pass per garment, reported per garment."""
    wf, batches, _ = stack
    text = (
        "image,seed,threshold,lower-body.mask_mode,lower-body.mask_box,lower-body.adapter,upper.mask_mode,"
        "upper.mask_box,upper.prompt\n"
        # threshold 1: the tiny CLIPSeg finds no keep-region of the classes; 0: the plain row's mask is all
        'cat/model-a.jpg,7,1.0,box,"0,0.5,1,1",garment-a,box,"0,0,1,0.5",a linen shirt\n'
        "cat/model-b.png,7,0.0,,,,,,\n"
    )
    key = batches.upload_manifest(text, "outfits.csv")["key"]
    outcome = batches.wait(batches.find_started(key), timeout=300)
    assert outcome.result.status == "SUCCEEDED", outcome.result.cause
    outfit_row, plain_row = outcome.report["rows"]
    assert outfit_row["status"] == plain_row["status"] == "succeeded"
    assert outfit_row["adapter"] == "lower-body=garment-a"  # per garment, in pass order
    assert outfit_row["prompt"].endswith("; upper-body=a linen shirt")
    manifest = wf.read_json(outfit_row["manifest"])
    assert [g["garment_class"] for g in manifest["garments"]] == ["lower-body", "upper-body"]
    assert [g["status"] for g in manifest["garments"]] == ["painted", "painted"]
    assert manifest["garments"][0]["adapter"] == {"name": "garment-a", "scale": 1.0}
    assert not wf.read_json(plain_row["manifest"])["outfit"]
