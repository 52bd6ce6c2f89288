"""The local stack authorises the functions' calls as AWS does (tryon.local.iam), 403s included.

Issue 17 item 3: without ``s3:ListBucket`` on a key's prefix S3 answers 403 for a missing key,
and a call outside a function's policy is ``AccessDenied``. These run Prepare and ValidateBatch
only (no endpoint is called), on the real template and on copies of it with a grant taken away.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from support.paths import REPO, TEMPLATE
from support.workflow import DEADLINE_S, failure_of, upload

from tryon.local import LocalWorkflow
from tryon.local.batch_runner import LocalBatches
from tryon.local.samples import sample_photo
from tryon.local.template import load_template

#: No model is called here: executions end in Prepare or ValidateBatch.
NO_ENDPOINTS = "http://127.0.0.1:9"


def _template_without(tmp_path: Path, function: str, sid: str, keep: str | None = None) -> Path:
    """template.yaml with one statement of ``function`` removed (or, with ``keep``, its s3:prefix list
    cut down to the entries mentioning ``keep``): what the stack would deploy with that grant missing."""
    doc = load_template(TEMPLATE)
    statements = doc["Resources"][function]["Properties"]["Policies"][0]["Statement"]
    [statement] = [s for s in statements if s.get("Sid") == sid]
    if keep is None:
        statements.remove(statement)
    else:
        prefixes = statement["Condition"]["StringLike"]["s3:prefix"]
        statement["Condition"]["StringLike"]["s3:prefix"] = [p for p in prefixes if keep in json.dumps(p)]
    path = tmp_path / "template.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))  # the loader gives intrinsics in long form
    for folder in ("functions", "statemachine", "src", "layers"):
        (tmp_path / folder).symlink_to(REPO / folder)
    return path


def _garment_job(wf, name: str, garment: str) -> dict:
    key = upload(wf, name)
    result = wf.wait(
        wf.start(
            {"image": f"s3://{wf.input_bucket}/{key}", "garment_image": f"s3://{wf.input_bucket}/{garment}"}
        ),
        timeout=DEADLINE_S,
    )
    return failure_of(wf, result)


@pytest.fixture(scope="module")
def wf():
    with LocalWorkflow(endpoint_url=NO_ENDPOINTS) as stack:
        yield stack


def test_a_missing_garment_is_reported_missing(wf):
    record = _garment_job(wf, "g1.png", "garments/none.png")
    assert record["error"] == "InvalidInput" and record["step"] == "prepare"
    assert record["cause"] == (
        f"garment_image: s3://{wf.input_bucket}/garments/none.png does not exist (or the version is gone)"
    )
    calls = [
        c for c in wf.iam.calls if c.function == "PrepareFunction" and c.requests and c.requests[0].implicit
    ]
    assert calls and all(c.allowed for c in calls)  # the implicit s3:ListBucket, allowed on garments/


@pytest.mark.expects_denied_calls
def test_without_the_listing_grant_a_missing_garment_is_a_403(tmp_path):
    """Today's main: Prepare may list inputs/ but not garments/, and S3 answers 403 for a missing packshot."""
    template = _template_without(tmp_path, "PrepareFunction", "ListUploads", keep="InputPrefix")
    with LocalWorkflow(template=template, endpoint_url=NO_ENDPOINTS, stack_name="tryon-nolist") as stack:
        record = _garment_job(stack, "g2.png", "garments/none.png")
        assert record["error"] == "InvalidInput" and record["step"] == "prepare"
        cause = record["cause"]
        assert "garments/none.png does not exist or may not be read" in cause
        assert f"s3:ListBucket on arn:aws:s3:::{stack.input_bucket} with s3:prefix garments/none.png" in cause
        [denied] = [c for c in stack.iam.calls if not c.allowed]
        assert denied.function == "PrepareFunction" and denied.requests[0].action == "s3:ListBucket"


@pytest.mark.expects_denied_calls
def test_a_read_outside_the_policy_is_access_denied(tmp_path):
    template = _template_without(tmp_path, "PrepareFunction", "ReadUploads")
    with LocalWorkflow(template=template, endpoint_url=NO_ENDPOINTS, stack_name="tryon-noread") as stack:
        key = upload(stack, "p.png")
        record = failure_of(stack, stack.wait(stack.start_from_s3_event(key), timeout=DEADLINE_S))
        assert record["step"] == "prepare" and "does not exist or may not be read" in record["cause"]
        assert stack.read_bytes(f"s3://{stack.input_bucket}/{key}") == sample_photo()  # input untouched
        denied = {(c.function, r.action) for c in stack.iam.calls if not c.allowed for r in c.requests}
        assert denied == {("PrepareFunction", "s3:GetObjectVersion")}  # the event names the version


def test_a_batch_row_whose_garment_cannot_be_read_is_an_invalid_row(wf):
    """Before: ValidateBatch caught only request errors, so one such row aborted the whole batch."""
    batches = LocalBatches(wf)
    upload(wf, "row.png")
    rows = [
        {"image": "row.png", "garment_image": f"s3://{wf.input_bucket}/garments/none.png"},
        {"image": "row.png", "garment_image": f"s3://{wf.input_bucket}/garments/none-either.png"},
    ]
    text = "\n".join(json.dumps(r) for r in rows) + "\n"
    key = batches.upload_manifest(text, "garments.jsonl")["key"]
    outcome = batches.wait(
        batches.start({"batch": f"s3://{wf.input_bucket}/{key}", "allow_invalid_rows": True}),
        timeout=DEADLINE_S,
    )
    assert outcome.result.status == "SUCCEEDED", (outcome.result.error, outcome.result.cause)
    statuses = [(r["status"], r["error"]) for r in outcome.report["rows"]]
    assert statuses == [("invalid", "InvalidInput")] * 2
    assert all(
        "garment_image: " in r["cause"] and "does not exist" in r["cause"] for r in outcome.report["rows"]
    )


@pytest.mark.expects_denied_calls
def test_a_403_on_a_rows_garment_is_that_rows_error_not_the_batchs(tmp_path):
    """ValidateBatch without the garment listing grant (today's main): S3's 403 is one invalid row."""
    template = _template_without(tmp_path, "ValidateBatchFunction", "ListUploads", keep="InputPrefix")
    with LocalWorkflow(template=template, endpoint_url=NO_ENDPOINTS, stack_name="tryon-nobatchlist") as stack:
        batches = LocalBatches(stack)
        upload(stack, "row.png")
        text = (
            json.dumps({"image": "row.png", "garment_image": f"s3://{stack.input_bucket}/garments/x.png"})
            + "\n"
        )
        key = batches.upload_manifest(text, "one.jsonl")["key"]
        outcome = batches.wait(
            batches.start({"batch": f"s3://{stack.input_bucket}/{key}", "allow_invalid_rows": True}),
            timeout=DEADLINE_S,
        )
        assert outcome.result.status == "SUCCEEDED", (outcome.result.error, outcome.result.cause)
        [row] = outcome.report["rows"]
        assert (
            row["status"] == "invalid" and "garments/x.png does not exist or may not be read" in row["cause"]
        )
