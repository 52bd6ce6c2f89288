"""The studio's back end and API on a deployed-looking stack (moto, no models): the adapters under the
stack's adapter prefix, the upload limits checked before anything is uploaded, the prefixes it may
read, a stack without batches."""

from __future__ import annotations

import base64
import json
from typing import Any

import boto3
import pytest
from moto import mock_aws

REGION = "us-east-1"
PARAMETERS = {"AdapterBucket": "team-adapters", "AdapterPrefix": "lora/", "ResultsPrefix": "out/"}


def _stack(with_batches: bool = True) -> None:
    """A stack with the outputs and parameters a deployed tryon stack has (no resources behind them)."""
    outputs = {
        "InputBucketName": "in-bucket",
        "OutputBucketName": "out-bucket",
        "InputPrefix": "inputs/",
        "GarmentPrefix": "garments/",
        "MaskPrefix": "masks/",
        "StateMachineArn": f"arn:aws:states:{REGION}:123456789012:stateMachine:tryon",
    }
    if with_batches:
        outputs |= {
            "BatchStateMachineArn": f"arn:aws:states:{REGION}:123456789012:stateMachine:batch",
            "BatchPrefix": "batches/",
            "BatchReportsPrefix": "out/batches/",
        }
    template = {
        "Parameters": {name: {"Type": "String"} for name in PARAMETERS},
        "Resources": {"Marker": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    cfn = boto3.client("cloudformation", region_name=REGION)
    cfn.create_stack(
        StackName="tryon",
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in PARAMETERS.items()],
    )
    s3 = boto3.client("s3", region_name=REGION)
    for bucket in ("in-bucket", "out-bucket", "team-adapters"):
        s3.create_bucket(Bucket=bucket)


@pytest.fixture
def backend() -> Any:
    from tryon.studio.backend import StackBackend

    with mock_aws():
        _stack()
        session = boto3.Session(region_name=REGION)
        yield StackBackend(session.client, "tryon", label="stack tryon")


def test_adapters_are_the_folders_under_the_stacks_adapter_prefix(backend):
    s3 = backend.s3
    for key in ("lora/jeans/pytorch_lora_weights.safetensors", "lora/blouse/x.safetensors", "other/x"):
        s3.put_object(Bucket="team-adapters", Key=key, Body=b"w")
    assert backend.adapters() == ["s3://team-adapters/lora/blouse/", "s3://team-adapters/lora/jeans/"]


def test_the_results_prefix_comes_from_the_stacks_parameters(backend):
    assert backend.stack.results_prefix == "out/"
    assert (backend.stack.output_bucket, "out/") in backend.readable_prefixes()


@pytest.mark.parametrize(
    "uri",
    [
        "s3://out-bucket/elsewhere/x.png",
        "s3://out-bucket/out/../secret.json",
        "s3://team-adapters/lora/jeans/pytorch_lora_weights.safetensors",
        "s3://in-bucket/batches/manifest.csv",
    ],
)
def test_nothing_outside_the_result_and_input_prefixes_is_read(backend, uri):
    from tryon.core.errors import RequestError

    with pytest.raises(RequestError, match="outside the stack's result and input prefixes"):
        backend.read_object(uri)


def test_uploads_are_checked_with_the_workflows_limits_before_anything_is_uploaded(backend, tmp_path):
    from starlette.testclient import TestClient

    from tryon.core import imaging
    from tryon.studio.app import create_app

    client = TestClient(create_app(backend, tmp_path))
    too_big = base64.b64encode(b"\0" * (imaging.DEFAULT_MAX_BYTES + 1)).decode()
    cases = {
        "photo: is 8388609 bytes; the limit is 8388608 bytes (8 MiB)": {
            "photo": {"name": "a.png", "data": too_big}
        },
        "photo: is not base64 data": {"photo": {"name": "a.png", "data": "data:image/png;base64,@@@"}},
        "photo: is required: upload an image (JPEG, PNG or WebP)": {"photo": None},
    }
    for message, body in cases.items():
        answer = client.post("/api/runs", json=body)
        assert answer.status_code == 400 and answer.json() == {"error": message}
    # a good photo with a bad packshot: refused naming the packshot, and the photo is not uploaded either
    from support.images import save_photo

    photo = base64.b64encode(save_photo(tmp_path / "p.png", (96, 128)).read_bytes()).decode()
    body = {
        "photo": {"name": "p.png", "data": photo},
        "garments": [{"class": "upper-body", "packshot": {"name": "top.png", "data": "bm90IGFuIGltYWdl"}}],
    }
    answer = client.post("/api/runs", json=body)
    assert answer.status_code == 400 and answer.json()["error"].startswith("garment 1 packshot: ")
    assert "Contents" not in backend.s3.list_objects_v2(Bucket="in-bucket")


def test_a_stack_without_batch_outputs_says_so(tmp_path):
    from starlette.testclient import TestClient

    from tryon.studio.app import create_app
    from tryon.studio.backend import StackBackend

    with mock_aws():
        _stack(with_batches=False)
        backend = StackBackend(boto3.Session(region_name=REGION).client, "tryon", label="old stack")
        client = TestClient(create_app(backend, tmp_path))
        assert client.get("/api/config").json()["batches"] is False
        answer = client.get("/api/batches")
        assert answer.status_code == 400 and "has no batch state machine" in answer.json()["error"]
