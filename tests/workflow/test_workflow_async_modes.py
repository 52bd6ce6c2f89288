"""Asynchronous endpoints, each stack its own: every endpoint async; a notification that never comes."""

from __future__ import annotations

import time

import boto3
import pytest
from support.workflow import ASYNC_FAST, DEADLINE_S, MIXED_MODES, all_models, failure_of, upload

from tryon.local import LocalWorkflow

pytestmark = pytest.mark.slow


def test_every_endpoint_async(tiny_models, one_torch_thread, monkeypatch):
    # no region but the functions' own (as `tryon demo` runs), and a boto3 session made before
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    boto3.setup_default_session()
    modes = dict.fromkeys(MIXED_MODES, "async")
    with LocalWorkflow(
        all_models(tiny_models), parameters=ASYNC_FAST, modes=modes, stack_name="tryon-all-async"
    ) as wf:
        key = upload(wf, "all.png", metadata={"upscale": "true"})
        result = wf.wait(wf.start_from_s3_event(key), timeout=DEADLINE_S)
        assert result.succeeded, (result.error, result.cause)
        assert {"SegmentAsync", "InpaintAsync", "UpscaleAsync"} <= set(result.states())
        manifest = wf.read_json(result.output["manifest"])
        assert manifest["outputs"]["mask"] and len(manifest["outputs"]["upscaled"]) == 1


def test_a_lost_notification_ends_in_the_timeout_and_a_failure_record(tiny_models, one_torch_thread):
    fast_timeout = {**ASYNC_FAST, "AsyncInvocationTimeoutSeconds": 2, "AsyncGraceSeconds": 1}
    with LocalWorkflow(
        {"clipseg": tiny_models["clipseg"], "sd_inpaint": tiny_models["sd-inpaint"]},
        upscale=False,
        parameters=fast_timeout,
        modes={"sd_inpaint": "async"},
        stack_name="tryon-lost",
    ) as wf:
        wf.drop_async_notifications()
        key = upload(wf, "lost.png")
        start = time.monotonic()
        result = wf.wait(wf.start_from_s3_event(key), timeout=DEADLINE_S)
        record = failure_of(wf, result, same_error=False)  # moto's Fail: States.* reads States.Runtime
        # the heartbeat (one request's invocation + grace) ends the wait before the time-out
        assert record["error"] == "States.HeartbeatTimeout" and record["step"] == "inpaint"
        assert time.monotonic() - start < 60
        # issue 17 item 8: the cause says whose notification, how long, and where to look
        cause = record["cause"]
        assert "no notification from the asynchronous sd_inpaint endpoint tryon-sd-inpaint" in cause
        assert "arrived within 3 s (the step's heartbeat" in cause
        assert f"s3://{wf.output_bucket}/async/errors/" in cause
        assert "deliveries to CompleteAsync and its on-failure queue" in cause
        assert "/aws/sagemaker/Endpoints/tryon-sd-inpaint" in cause
