"""Faults end to end: each execution ends as designed (retry then success, a failure record with a
clear cause, or no-garment-found) and none hangs (every wait has a deadline)."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from support.workflow import DEADLINE_S, check_permanent_model_error, failure_of, upload

from tryon.local.samples import sample_photo

pytestmark = pytest.mark.slow


def test_throttled_endpoint_is_retried_then_succeeds(wf):
    key = upload(wf, "throttled.png")
    failed = wf.fail_endpoint_calls("clipseg", code="ThrottlingException", times=1)
    errors = []
    result = wf.wait(wf.start_from_s3_event(key), timeout=DEADLINE_S, on_event=errors.append)
    assert result.succeeded, (result.error, result.cause)
    assert failed() == 1
    retried = [e for e in errors if e.phase == "error"]
    assert [e.error for e in retried] == ["EndpointThrottled"]
    assert "Rate exceeded" in retried[0].cause
    assert result.states().count("Segment") == 1  # a Retry re-runs the Task inside the same state


def test_permanent_model_error_is_recorded_without_retries(wf):
    check_permanent_model_error(wf, "InpaintFunction")


def test_empty_mask_finishes_as_no_garment_found(wf):
    key = upload(wf, "nothing.png", metadata={"threshold": "1"})  # threshold 1 selects no pixel
    result = wf.wait(wf.start_from_s3_event(key), timeout=DEADLINE_S)
    assert result.succeeded and result.output["status"] == "no-garment-found"
    assert "Inpaint" not in result.states() and "NoGarmentFound" in result.states()
    manifest = wf.read_json(result.output["manifest"])
    assert manifest["status"] == "no-garment-found" and manifest["coverage"] == 0.0
    assert manifest["outputs"]["inpainted"] == [] and "mask" in manifest["outputs"]
    preview = Image.open(io.BytesIO(wf.read_bytes(manifest["outputs"]["preview"])))
    assert preview.size == (2 * 48, 64)  # input | mask overlay


def _huge_png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (6100, 6100)).save(buf, "PNG")  # 37.2 MP, a few KB: refused from the header
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "make", "console", "needle"),
    [
        (
            "notes.png",
            lambda: b"just some text, not an image",
            {},
            "image: is not a decodable PNG, JPEG or WebP",
        ),
        (
            "cut.jpg",
            lambda: sample_photo(fmt="JPEG")[:-200],
            {},
            "image: could not be decoded (truncated or corrupt)",
        ),
        ("huge.png", _huge_png, {}, "6100x6100 = 37210000 pixels; the limit is 36000000 pixels"),
        ("empty.png", lambda: b"", {}, "inputs/empty.png is empty (0 bytes)"),
        ("missing.png", None, {}, "does not exist"),
        ("params.png", sample_photo, {"steps": 10_000}, "steps: must be <= 150, got 10000"),
        ("prompt.png", sample_photo, {"prompt": "p" * 5000}, "prompt: is 5000 characters; the limit is 2000"),
    ],
)
def test_bad_inputs_fail_fast_in_prepare(wf, name, make, console, needle):
    key = f"inputs/{name}"
    data = make() if make is not None else None
    if data is not None:
        upload(wf, name, data)
    before = len(wf.invocations)
    if console:
        arn = wf.start({"image": f"s3://{wf.input_bucket}/{key}", **console})
    elif make is None:
        arn = wf.start({"image": f"s3://{wf.input_bucket}/{key}"})
    else:
        arn = wf.start_from_s3_event(key)
    record = failure_of(wf, wf.wait(arn, timeout=DEADLINE_S))
    assert record["error"] == "InvalidInput" and record["step"] == "prepare"
    assert needle in record["cause"]
    assert [n for n, _, _ in wf.invocations[before:]] == ["PrepareFunction", "RecordFailureFunction"]
    if data is not None:  # the input is never modified: its bytes are still the ones uploaded
        assert wf.read_bytes(f"s3://{wf.input_bucket}/{key}") == data


@pytest.mark.parametrize("raw", [["s3://photos/inputs/a.png"], "s3://photos/inputs/a.png", 42, None])
def test_a_console_input_that_is_not_an_object_ends_in_a_failure_record(wf, raw):
    """Every execution ends with a manifest or a failure record, whatever JSON the console sends."""
    before = len(wf.invocations)
    record = failure_of(wf, wf.wait(wf.start(raw), timeout=DEADLINE_S))
    assert record["error"] == "InvalidInput" and record["step"] == "prepare"
    assert record["cause"].startswith("input: must be") and record["input"] == raw
    assert [n for n, _, _ in wf.invocations[before:]] == ["PrepareFunction", "RecordFailureFunction"]
