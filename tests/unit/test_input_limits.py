"""One upload limit: Prepare never accepts an image the endpoints' handlers would refuse."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from tryon.core import imaging
from tryon.workflow import clients, prepare
from tryon.workflow.settings import Settings
from tryon.workflow.step_errors import InvalidInput

IN, OUT = "in-bucket", "out-bucket"


def test_settings_are_capped_at_the_handler_limits():
    env = {"TRYON_MAX_INPUT_BYTES": str(6_291_456_000), "TRYON_MAX_INPUT_PIXELS": str(10**9)}
    capped = prepare.within_handler_limits(Settings.from_env(env))
    assert (capped.max_input_bytes, capped.max_input_pixels) == (
        imaging.DEFAULT_MAX_BYTES,
        imaging.DEFAULT_MAX_PIXELS,
    )
    lower = prepare.within_handler_limits(Settings.from_env({**env, "TRYON_MAX_INPUT_BYTES": "1000"}))
    assert lower.max_input_bytes == 1000  # a lower deployment limit stays


def test_prepare_refuses_an_upload_over_the_handler_limit_whatever_the_setting(monkeypatch):
    for key, value in {
        "TRYON_INPUT_BUCKET": IN,
        "TRYON_OUTPUT_BUCKET": OUT,
        "TRYON_MAX_INPUT_BYTES": str(64 * 1024 * 1024),
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        clients.reset_clients()
        try:
            s3 = boto3.client("s3", region_name="us-east-1")
            for bucket in (IN, OUT):
                s3.create_bucket(Bucket=bucket)
            s3.put_object(Bucket=IN, Key="inputs/big.png", Body=b"\0" * (imaging.DEFAULT_MAX_BYTES + 1))
            with pytest.raises(InvalidInput) as info:
                prepare.prepare({"image": f"s3://{IN}/inputs/big.png"})
        finally:
            clients.reset_clients()
    message = str(info.value)
    assert f"the limit is {imaging.DEFAULT_MAX_BYTES} bytes" in message and "image" in message
