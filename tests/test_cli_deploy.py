"""`tryon deploy-models` against moto's SageMaker control plane, through the real CLI entry."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws
from moto.sagemaker.models import sagemaker_backends

from tryon.cli import EXIT_AWS, EXIT_BAD_INPUT, run

ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"
REGION = "us-east-1"


def _strip_empty_shapes(parsed, **_):
    """moto answers `VpcConfig: {}` / `DataCaptureConfig: {}`, which sagemaker-core's models reject."""
    for key in ("VpcConfig", "DataCaptureConfig"):
        if parsed.get(key) == {}:
            parsed.pop(key)


def _update_endpoint_in_moto(params, **_):
    """moto has no UpdateEndpoint: apply it to moto's backend state as AWS would, and answer like AWS."""
    request = json.loads(params["body"])
    endpoint = sagemaker_backends["123456789012"][REGION].endpoints[request["EndpointName"]]
    endpoint.endpoint_config_name = request["EndpointConfigName"]
    http = AWSResponse("https://api.sagemaker.us-east-1.amazonaws.com/", 200, {}, None)
    return http, {"EndpointArn": endpoint.arn, "ResponseMetadata": {"HTTPStatusCode": 200}}


@pytest.fixture
def aws(monkeypatch):
    with mock_aws():
        real_session = boto3.Session

        def session_with_shims(*args, **kwargs):
            session = real_session(*args, **kwargs)
            session.events.register("after-call.sagemaker", _strip_empty_shapes)
            session.events.register("before-call.sagemaker.UpdateEndpoint", _update_endpoint_in_moto)
            return session

        monkeypatch.setattr(boto3, "Session", session_with_shims)
        yield boto3.client("sagemaker", region_name=REGION)


def test_dry_run_prints_plan_without_calls(capsys, aws):
    code = run(
        [
            "deploy-models",
            "--artifact", "clipseg=s3://art/clipseg/model.tar.gz",
            "--artifact", "sd_inpaint=s3://art/inpaint/model.tar.gz",
            "--mode", "clipseg=serverless",
            "--dry-run",
        ]
    )  # fmt: skip
    assert code == 0
    plan = json.loads(capsys.readouterr().out)
    assert [p["endpoint"] for p in plan] == ["tryon-clipseg", "tryon-sd-inpaint"]
    assert plan[0]["mode"] == "serverless" and "-cpu-" in plan[0]["image"]
    assert plan[1]["instance"] == "1 x ml.g5.xlarge" and "-gpu-" in plan[1]["image"]
    assert aws.list_endpoints()["Endpoints"] == []


def test_creates_then_is_idempotent_then_rolls_forward(tmp_path, capsys, aws):
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="artefacts")
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"not really a tarball, moto does not look")
    args = [
        "deploy-models",
        "--artifact", f"sd_inpaint={archive}",
        "--artifact", "clipseg=s3://artefacts/clipseg/model.tar.gz",
        "--mode", "clipseg=serverless",
        "--instance-type", "sd_inpaint=ml.g4dn.xlarge",  # moto's instance list predates ml.g5
        "--bucket", "artefacts",
        "--role", ROLE,
        "--region", REGION,
    ]  # fmt: skip
    assert run(args) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert {r["action"] for r in results} == {"created"}
    assert s3.head_object(Bucket="artefacts", Key="tryon/sd_inpaint/model.tar.gz")["ContentLength"] > 0

    inpaint = aws.describe_endpoint(EndpointName="tryon-sd-inpaint")
    assert inpaint["EndpointStatus"] == "InService"
    config = aws.describe_endpoint_config(EndpointConfigName=inpaint["EndpointConfigName"])
    variant = config["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.g4dn.xlarge" and variant["InitialInstanceCount"] == 1
    model = aws.describe_model(ModelName=variant["ModelName"])
    assert model["PrimaryContainer"]["ModelDataUrl"] == "s3://artefacts/tryon/sd_inpaint/model.tar.gz"
    assert model["ExecutionRoleArn"] == ROLE
    assert model["PrimaryContainer"]["Environment"]["TRYON_ENDPOINT_KIND"] == "sd_inpaint"
    clipseg = aws.describe_endpoint_config(
        EndpointConfigName=aws.describe_endpoint(EndpointName="tryon-clipseg")["EndpointConfigName"]
    )
    assert clipseg["ProductionVariants"][0]["ServerlessConfig"]["MemorySizeInMB"] == 6144

    # Same artefacts again: nothing changes.
    assert run(args) == 0
    assert {json.loads(x)["action"] for x in capsys.readouterr().out.splitlines() if x.startswith("{")} == {
        "unchanged"
    }
    # A new artefact URI rolls the endpoint forward to a new config.
    args[args.index("clipseg=s3://artefacts/clipseg/model.tar.gz")] = "clipseg=s3://artefacts/v2/model.tar.gz"
    assert run(args) == 0
    after = aws.describe_endpoint(EndpointName="tryon-clipseg")["EndpointConfigName"]
    assert after != aws.describe_endpoint(EndpointName="tryon-sd-inpaint")["EndpointConfigName"]
    assert "updated" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--artifact", "nope=s3://a/b.tar.gz", "--dry-run"], "--artifact: kind must be one of"),
        (["--artifact", "clipseg=/does/not/exist.tar.gz", "--dry-run"], "does not exist"),
        (["--artifact", "clipseg=s3://a/model.zip", "--dry-run"], "clipseg.model_data: must be an s3://"),
        (
            ["--artifact", "sd_inpaint=s3://a/m.tar.gz", "--mode", "sd_inpaint=serverless", "--dry-run"],
            "CPU-only",
        ),
        (
            ["--artifact", "sd_upscale=s3://a/m.tar.gz", "--mode", "sd_upscale=async", "--dry-run"],
            "async_output",
        ),
        (
            ["--artifact", "clipseg=s3://a/m.tar.gz", "--mode", "clipseg=fast", "--dry-run"],
            "realtime, serverless",
        ),
        (["--artifact", "clipseg=s3://a/m.tar.gz"], "--role is required"),
    ],
)
def test_bad_input_is_one_clear_line(args, message, capsys, aws):
    assert run(["deploy-models", *args]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_no_credentials_is_a_clear_aws_error(monkeypatch, capsys, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code = run(["deploy-models", "--artifact", "clipseg=s3://a/m.tar.gz", "--role", ROLE, "--region", REGION])
    err = capsys.readouterr().err
    assert code == EXIT_AWS
    assert "Unable to locate credentials" in err and "Traceback" not in err
