"""Helpers for the tests that run the whole workflow on the local stack (tryon.local)."""

from __future__ import annotations

from typing import Any

from tryon.local.samples import sample_photo

#: Longest wait for one execution on the local stack (tiny models; a 2-core machine under load).
DEADLINE_S = 120
#: Template parameters that keep the tiny models fast and the asynchronous waits short.
ASYNC_FAST = {
    "DefaultSteps": 1,
    "DefaultUpscaleSteps": 1,
    "AsyncInvocationTimeoutSeconds": 60,
    "AsyncGraceSeconds": 30,
}
#: One endpoint of each non-default mode.
MIXED_MODES = {"clipseg": "serverless", "sd_inpaint": "async", "sd_upscale": "async"}


def all_models(tiny_models: dict) -> dict:
    """The three endpoints' tiny checkpoints, as LocalWorkflow takes them."""
    return {
        "clipseg": tiny_models["clipseg"],
        "sd_inpaint": tiny_models["sd-inpaint"],
        "sd_upscale": tiny_models["sd-x4-upscaler"],
    }


def upload(wf: Any, name: str, data: bytes | None = None, **kwargs: Any) -> str:
    """Upload ``data`` (default: the sample photo) as ``inputs/<name>``; returns the key."""
    return wf.upload(data if data is not None else sample_photo(), f"inputs/{name}", **kwargs)["key"]


def failure_of(wf: Any, result: Any, *, same_error: bool = True) -> dict:
    """The execution failed and left exactly the failure record RecordFailure reported.

    ``same_error=False`` where moto's Fail state cannot carry the error name (``States.*``).
    """
    assert result.status == "FAILED", result.output
    assert result.states()[-3:] == ["RecordFailure", "RefusedOrFailed", "Failed"]
    record = wf.failure_record(result.execution_arn)
    assert record is not None, wf.list_keys("failures/")
    if same_error:
        assert result.error == record["error"] and record["cause"] in result.cause
    return record


def check_permanent_model_error(wf: Any, calling_function: str) -> list[str]:
    """An unknown adapter (HTTP 400 from the endpoint) ends in a failure record naming it, and the
    function calling the endpoint ran once (permanent: not retried). Returns the functions called."""
    key = upload(wf, "bad-adapter.png")
    before = len(wf.invocations)
    result = wf.run(
        {"image": f"s3://{wf.input_bucket}/{key}", "adapter": "no-such-adapter"}, timeout=DEADLINE_S
    )
    record = failure_of(wf, result)
    assert record["error"] == "ModelError" and record["step"] == "inpaint"
    assert "unknown adapter 'no-such-adapter'" in record["cause"] and "HTTP 400" in record["cause"]
    assert record["input"]["key"] == key and record["params"]["adapter"] == "no-such-adapter"
    calls = [name for name, _, _ in wf.invocations[before:]]
    assert calls.count(calling_function) == 1
    return calls


def prepare_refusal(s3: Any, bucket: str, layer: dict[str, Any], source: str) -> str:
    """The message Prepare refuses a photo with when ``layer`` comes as its upload ``metadata``
    or as console ``input``; the upload is left as it was."""
    import pytest

    from tryon.core.errors import RequestError
    from tryon.workflow import job
    from tryon.workflow.settings import Settings

    photo = sample_photo()
    metadata = layer if source == "metadata" else {}
    s3.put_object(Bucket=bucket, Key="inputs/p.png", Body=photo, Metadata=metadata)
    console = {"image": f"s3://{bucket}/inputs/p.png", **(layer if source == "input" else {})}
    with pytest.raises(RequestError) as info:
        job.build_job(Settings.from_env(), console)
    assert s3.get_object(Bucket=bucket, Key="inputs/p.png")["Body"].read() == photo
    return str(info.value)
