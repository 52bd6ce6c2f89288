"""`tryon deploy-models` against moto's SageMaker control plane, through the real CLI entry."""

from __future__ import annotations

import hashlib
import json

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws
from moto.sagemaker.models import sagemaker_backends

from tryon.cli import EXIT_AWS, EXIT_BAD_INPUT, run
from tryon.core.kinds import CONTAINER_ENVIRONMENT

ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"
REGION = "us-east-1"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


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
        iam = boto3.client("iam", region_name=REGION)
        iam.create_role(RoleName="sagemaker-exec", AssumeRolePolicyDocument=json.dumps(TRUST))
        lambda_trust = json.loads(
            json.dumps(TRUST).replace("sagemaker.amazonaws.com", "lambda.amazonaws.com")
        )
        iam.create_role(RoleName="lambda-exec", AssumeRolePolicyDocument=json.dumps(lambda_trust))
        yield boto3.client("sagemaker", region_name=REGION)


def test_dry_run_prints_plan_without_calls(capsys, aws):
    code = run(
        [
            "deploy-models",
            "--artifact", "clipseg=s3://art/clipseg/model.tar.gz",
            "--artifact", "sd_inpaint=s3://art/inpaint/model.tar.gz",
            "--mode", "clipseg=serverless",
            "--role", ROLE,
            "--dry-run",
        ]
    )  # fmt: skip
    assert code == 0
    plan = json.loads(capsys.readouterr().out)
    assert [p["endpoint"] for p in plan] == ["tryon-clipseg", "tryon-sd-inpaint"]
    assert plan[0]["mode"] == "serverless" and "-cpu-" in plan[0]["image"]
    assert plan[1]["instance"] == "1 x ml.g5.xlarge" and "-gpu-" in plan[1]["image"]
    assert aws.list_endpoints()["Endpoints"] == []


def test_async_endpoints_notify_the_stacks_topics(capsys, aws):
    topics = {"ok": "arn:aws:sns:us-east-1:123456789012:ok", "err": "arn:aws:sns:us-east-1:123456789012:err"}
    code = run(
        [
            "deploy-models",
            "--artifact", "sd_inpaint=s3://art/inpaint/model.tar.gz",
            "--mode", "sd_inpaint=async",
            "--async-output", "s3://out/async/outputs/",
            "--async-success-topic", topics["ok"],
            "--async-error-topic", topics["err"],
            "--role", ROLE,
            "--dry-run",
        ]
    )  # fmt: skip
    assert code == 0
    [plan] = json.loads(capsys.readouterr().out)
    assert plan["async_output"] == "s3://out/async/outputs/sd_inpaint/"
    assert (plan["async_success_topic"], plan["async_error_topic"]) == (topics["ok"], topics["err"])


def _results(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def _model_of(aws, endpoint: str) -> dict:
    config_name = aws.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    variant = aws.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"][0]
    return aws.describe_model(ModelName=variant["ModelName"])


def test_creates_then_is_idempotent_then_rolls_forward(tmp_path, capsys, aws):
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="artefacts")
    s3.put_bucket_versioning(Bucket="artefacts", VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket="artefacts", Key="clipseg/model.tar.gz", Body=b"clipseg v1")
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
    assert {r["action"] for r in _results(capsys)} == {"created"}
    sha1 = hashlib.sha256(archive.read_bytes()).hexdigest()
    key1 = f"tryon/sd_inpaint/{sha1}/model.tar.gz"  # content-addressed
    assert s3.head_object(Bucket="artefacts", Key=key1)["Metadata"] == {"sha256": sha1}

    inpaint = aws.describe_endpoint(EndpointName="tryon-sd-inpaint")
    assert inpaint["EndpointStatus"] == "InService"
    config = aws.describe_endpoint_config(EndpointConfigName=inpaint["EndpointConfigName"])
    variant = config["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.g4dn.xlarge" and variant["InitialInstanceCount"] == 1
    model = aws.describe_model(ModelName=variant["ModelName"])
    assert model["PrimaryContainer"]["ModelDataUrl"] == f"s3://artefacts/{key1}"
    assert "-gpu-" in model["PrimaryContainer"]["Image"]
    assert model["ExecutionRoleArn"] == ROLE
    assert model["PrimaryContainer"]["Environment"]["TRYON_ENDPOINT_KIND"] == "sd_inpaint"
    assert CONTAINER_ENVIRONMENT.items() <= model["PrimaryContainer"]["Environment"].items()
    clipseg_model = _model_of(aws, "tryon-clipseg")
    assert "-cpu-" in clipseg_model["PrimaryContainer"]["Image"]
    clipseg = aws.describe_endpoint_config(
        EndpointConfigName=aws.describe_endpoint(EndpointName="tryon-clipseg")["EndpointConfigName"]
    )
    assert clipseg["ProductionVariants"][0]["ServerlessConfig"]["MemorySizeInMB"] == 6144

    # Same artefacts again: nothing changes, nothing is uploaded a second time.
    assert run(args) == 0
    assert {r["action"] for r in _results(capsys)} == {"unchanged"}
    versions = s3.list_object_versions(Bucket="artefacts", Prefix="tryon/")["Versions"]
    assert [v["Key"] for v in versions] == [key1]

    # A new archive at the same local path: a new key, a new model, the endpoint rolls forward,
    # and the object the old model still names is left exactly as it was.
    archive.write_bytes(b"a retrained model, still not a tarball")
    sha2 = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert run(args) == 0
    actions = {r["endpoint"]: r["action"] for r in _results(capsys)}
    assert actions == {"tryon-sd-inpaint": "updated", "tryon-clipseg": "unchanged"}
    new_model = _model_of(aws, "tryon-sd-inpaint")
    assert new_model["ModelName"] != model["ModelName"]
    assert (
        new_model["PrimaryContainer"]["ModelDataUrl"]
        == f"s3://artefacts/tryon/sd_inpaint/{sha2}/model.tar.gz"
    )
    old = s3.get_object(Bucket="artefacts", Key=key1)
    assert old["Body"].read() == b"not really a tarball, moto does not look"
    assert len(s3.list_object_versions(Bucket="artefacts", Prefix=key1)["Versions"]) == 1
    assert aws.describe_model(ModelName=model["ModelName"])["PrimaryContainer"]["ModelDataUrl"].endswith(key1)

    # An S3 artefact overwritten in place (new ETag) also rolls forward.
    s3.put_object(Bucket="artefacts", Key="clipseg/model.tar.gz", Body=b"clipseg v2")
    assert run(args) == 0
    actions = {r["endpoint"]: r["action"] for r in _results(capsys)}
    assert actions == {"tryon-sd-inpaint": "unchanged", "tryon-clipseg": "updated"}
    # A new artefact URI rolls the endpoint forward to a new config.
    args[args.index("clipseg=s3://artefacts/clipseg/model.tar.gz")] = "clipseg=s3://artefacts/v2/model.tar.gz"
    s3.put_object(Bucket="artefacts", Key="v2/model.tar.gz", Body=b"clipseg v3")
    assert run(args) == 0
    assert (
        _model_of(aws, "tryon-clipseg")["PrimaryContainer"]["ModelDataUrl"]
        == "s3://artefacts/v2/model.tar.gz"
    )
    assert "updated" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("role", "message"),
    [
        ("sagemaker-exec", "--role: must be an IAM role ARN"),
        ("arn:aws:iam::123456789012:user/someone", "--role: must be an IAM role ARN"),
        (
            "arn:aws:iam::123456789012:role/missing",
            "--role: arn:aws:iam::123456789012:role/missing does not exist",
        ),
        ("arn:aws:iam::123456789012:role/lambda-exec", "cannot be assumed by SageMaker"),
        ("arn:aws:iam::999999999999:role/sagemaker-exec", "check the account"),
    ],
)
def test_bad_role_is_refused_before_any_upload(role, message, tmp_path, capsys, aws):
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="artefacts")
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"archive")
    code = run(["deploy-models", "--artifact", f"clipseg={archive}", "--bucket", "artefacts", "--role", role])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert message in err and "Traceback" not in err and "Error" not in err.split(":")[0]
    assert s3.list_objects_v2(Bucket="artefacts")["KeyCount"] == 0
    assert aws.list_models()["Models"] == []


def test_missing_s3_artefact_is_a_clear_error(capsys, aws):
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="artefacts")
    code = run(["deploy-models", "--artifact", "clipseg=s3://artefacts/nope/model.tar.gz", "--role", ROLE])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert "clipseg.model_data: s3://artefacts/nope/model.tar.gz does not exist" in err
    assert aws.list_models()["Models"] == []


def test_neuron_instance_type_is_refused_by_name(capsys, aws):
    args = [
        "--artifact",
        "sd_inpaint=s3://a/m.tar.gz",
        "--instance-type",
        "sd_inpaint=ml.inf2.xlarge",
        "--role",
        ROLE,
    ]
    assert run(["deploy-models", *args, "--dry-run"]) == EXIT_BAD_INPUT
    assert "sd_inpaint.instance_type: ml.inf2.xlarge needs a Neuron image" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--artifact", "nope=s3://a/b.tar.gz", "--dry-run", "--role", ROLE],
            "--artifact: kind must be one of",
        ),
        (["--artifact", "clipseg=/does/not/exist.tar.gz", "--dry-run", "--role", ROLE], "does not exist"),
        (
            ["--artifact", "clipseg=s3://a/model.zip", "--dry-run", "--role", ROLE],
            "clipseg.model_data: must be an s3://",
        ),
        (
            [
                "--artifact",
                "sd_inpaint=s3://a/m.tar.gz",
                "--mode",
                "sd_inpaint=serverless",
                "--dry-run",
                "--role",
                ROLE,
            ],
            "CPU-only",
        ),
        (
            [
                "--artifact",
                "sd_upscale=s3://a/m.tar.gz",
                "--mode",
                "sd_upscale=async",
                "--dry-run",
                "--role",
                ROLE,
            ],
            "async_output",
        ),
        (
            ["--artifact", "clipseg=s3://a/m.tar.gz", "--mode", "clipseg=fast", "--dry-run", "--role", ROLE],
            "realtime, serverless",
        ),
        (["--artifact", "clipseg=s3://a/m.tar.gz"], "--role is required"),
        # a dry run validates like a real run
        (["--artifact", "clipseg=s3://a/m.tar.gz", "--dry-run"], "--role is required"),
        (
            ["--artifact", "clipseg=s3://a/m.tar.gz", "--dry-run", "--role", "SageMakerExec"],
            "--role: must be an IAM role ARN",
        ),
        (["--artifact", "clipseg=model.tar.gz", "--dry-run", "--role", ROLE], "does not exist"),
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


# ------------------------------------------------------------- prefix, progress, parallel, prune
@pytest.mark.parametrize("prefix", ["-tryon", "try_on", "t" * 60, "tryon.prod"])
def test_prefix_must_give_valid_endpoint_names(prefix, capsys, aws):
    assert (
        run(
            [
                "deploy-models",
                "--artifact",
                "clipseg=s3://a/m.tar.gz",
                "--prefix",
                prefix,
                "--dry-run",
                "--role",
                ROLE,
            ]
        )
        == EXIT_BAD_INPUT
    )
    err = capsys.readouterr().err
    assert f"--prefix: {prefix!r} gives the endpoint name" in err and "63" in err
    assert run(["prune-models", "--prefix", prefix, "--dry-run"]) == EXIT_BAD_INPUT


def test_upload_reports_every_byte(tmp_path, aws):
    from tryon.aws import sagemaker_endpoints

    boto3.client("s3", region_name=REGION).create_bucket(Bucket="artefacts")
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"x" * 300_000)
    sent: list[int] = []
    sha = sagemaker_endpoints.file_sha256(archive)
    assert sagemaker_endpoints.upload_artifact(
        archive, "artefacts", "k/model.tar.gz", sha, boto3.Session(), progress=sent.append
    )
    assert sum(sent) == 300_000


def test_endpoints_are_applied_in_parallel_and_one_failure_does_not_stop_the_others(monkeypatch, capsys, aws):
    import threading

    from tryon.aws import sagemaker_endpoints

    barrier = threading.Barrier(3, timeout=10)  # passes only if all three endpoints are in flight at once

    def fake_apply(plan, *, role_arn, session, wait, on_status):
        on_status("creating")
        barrier.wait()
        if plan.kind == "sd_upscale":
            raise sagemaker_endpoints.RequestError("sd_upscale.instance_type", "no capacity")
        return {"endpoint": plan.endpoint_name, "action": "created", "status": "InService"}

    monkeypatch.setattr(sagemaker_endpoints, "apply_plan", fake_apply)
    monkeypatch.setattr(sagemaker_endpoints, "s3_artifact_digest", lambda *_a, **_k: "etag:x")
    kinds = ("clipseg", "sd_inpaint", "sd_upscale")
    argv = ["deploy-models", "--role", ROLE, "--region", REGION]
    for kind in kinds:
        argv += ["--artifact", f"{kind}=s3://a/{kind}/model.tar.gz"]
    assert run(argv) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert [json.loads(line)["endpoint"] for line in captured.out.splitlines()] == [
        "tryon-clipseg",
        "tryon-sd-inpaint",
    ]
    assert "error: sd_upscale.instance_type: no capacity" in captured.err


def _deploy_clipseg(uri: str) -> None:
    args = ["deploy-models", "--artifact", f"clipseg={uri}", "--mode", "clipseg=serverless", "--role", ROLE]
    assert run([*args, "--region", REGION]) == 0


def test_prune_deletes_only_our_unused_models_and_configs(capsys, aws):
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="artefacts")
    for version in ("v1", "v2"):
        s3.put_object(Bucket="artefacts", Key=f"{version}/model.tar.gz", Body=version.encode())
    _deploy_clipseg("s3://artefacts/v1/model.tar.gz")
    first = _model_of(aws, "tryon-clipseg")["ModelName"]
    first_config = aws.describe_endpoint(EndpointName="tryon-clipseg")["EndpointConfigName"]
    _deploy_clipseg("s3://artefacts/v2/model.tar.gz")
    second = _model_of(aws, "tryon-clipseg")["ModelName"]
    second_config = aws.describe_endpoint(EndpointName="tryon-clipseg")["EndpointConfigName"]
    assert first != second and first_config != second_config
    # Not ours: another prefix's leftovers and a hand-made model that merely starts like ours.
    container = {"Image": "img", "ModelDataUrl": "s3://artefacts/v1/model.tar.gz"}
    for name in ("other-clipseg-0123456789", "tryon-clipseg-experiment"):
        aws.create_model(ModelName=name, PrimaryContainer=container, ExecutionRoleArn=ROLE)
    capsys.readouterr()

    assert run(["prune-models", "--dry-run", "--region", REGION]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == {"endpoint_configs": [first_config], "models": [first], "deleted": False}
    assert first in {m["ModelName"] for m in aws.list_models()["Models"]}

    assert run(["prune-models", "--region", REGION]) == 0
    assert json.loads(capsys.readouterr().out)["deleted"] is True
    models = {m["ModelName"] for m in aws.list_models()["Models"]}
    assert models == {second, "other-clipseg-0123456789", "tryon-clipseg-experiment"}
    configs = {c["EndpointConfigName"] for c in aws.list_endpoint_configs()["EndpointConfigs"]}
    assert configs == {second_config}
    assert aws.describe_endpoint(EndpointName="tryon-clipseg")["EndpointStatus"] == "InService"

    assert run(["prune-models", "--region", REGION]) == 0  # nothing left to prune
    assert json.loads(capsys.readouterr().out) == {"endpoint_configs": [], "models": [], "deleted": True}


def test_profile_option_selects_the_profile(monkeypatch, capsys, tmp_path, aws):
    config = tmp_path / "config"
    config.write_text("[profile staging]\nregion = eu-west-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    argv = ["deploy-models", "--artifact", "clipseg=s3://a/m.tar.gz", "--dry-run", "--role", ROLE]
    assert run([*argv, "--profile", "staging"]) == 0
    assert ".eu-west-1." in json.loads(capsys.readouterr().out)[0]["image"]
    assert run([*argv, "--profile", "nope"]) == EXIT_AWS
    assert "--profile: " in capsys.readouterr().err


def test_shared_layout_dry_run_prints_the_endpoint_its_components_and_their_scaling(capsys, aws):
    code = run(
        [
            "deploy-models",
            "--layout", "shared",
            "--artifact", "clipseg=s3://art/clipseg/model.tar.gz",
            "--artifact", "sd_inpaint=s3://art/inpaint/model.tar.gz",
            "--artifact", "sd_upscale=s3://art/upscale/model.tar.gz",
            "--max-instances", "2",
            "--role", ROLE,
            "--dry-run",
        ]
    )  # fmt: skip
    assert code == 0
    [shared] = json.loads(capsys.readouterr().out)
    assert shared["endpoint"] == "tryon-shared" and shared["layout"] == "shared"
    assert shared["instance"] == "ml.g5.12xlarge"
    assert shared["managed_instance_scaling"] == {"min_instances": 0, "max_instances": 2}
    components = {c["kind"]: c for c in shared["components"]}
    assert sorted(components) == ["clipseg", "sd_inpaint", "sd_upscale"]
    inpaint = components["sd_inpaint"]
    assert inpaint["component"] == "tryon-shared-sd-inpaint" and inpaint["accelerators"] == 1
    assert inpaint["copies"] == {"initial": 1, "min": 0, "max": 2}
    assert "-gpu-" in inpaint["image"]
    assert inpaint["scaling"]["scale_out_from_zero"]["metric"] == "AWS/SageMaker NoCapacityInvocationFailures"
    assert aws.list_endpoints()["Endpoints"] == []


def test_shared_layout_keeps_serverless_and_async_kinds_on_their_own_endpoints(capsys, aws):
    code = run(
        [
            "deploy-models",
            "--layout", "shared",
            "--artifact", "clipseg=s3://art/clipseg/model.tar.gz",
            "--artifact", "sd_inpaint=s3://art/inpaint/model.tar.gz",
            "--artifact", "sd_upscale=s3://art/upscale/model.tar.gz",
            "--mode", "clipseg=serverless",
            "--mode", "sd_upscale=async",
            "--async-output", "s3://out/async/outputs/",
            "--role", ROLE,
            "--dry-run",
        ]
    )  # fmt: skip
    assert code == 0
    plans = json.loads(capsys.readouterr().out)
    assert [(p["endpoint"], p["mode"]) for p in plans] == [
        ("tryon-shared", "realtime"),
        ("tryon-clipseg", "serverless"),
        ("tryon-sd-upscale", "async"),
    ]
    assert [c["kind"] for c in plans[0]["components"]] == ["sd_inpaint"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--shared-instance-type", "ml.g5.2xlarge"], "ml.g5.2xlarge has 1 GPU(s); the components need 2"),
        (["--instance-type", "sd_inpaint=ml.g5.xlarge"], "set --shared-instance-type instead"),
        (["--layout", "pooled"], "--layout: must be separate or shared"),
    ],
)
def test_shared_layout_refusals_name_the_option(capsys, aws, extra, needle):
    args = [
        "deploy-models",
        "--layout", "shared",
        "--artifact", "sd_inpaint=s3://art/inpaint/model.tar.gz",
        "--artifact", "sd_upscale=s3://art/upscale/model.tar.gz",
        "--role", ROLE,
        "--dry-run",
        *extra,
    ]  # fmt: skip
    assert run(args) == EXIT_BAD_INPUT
    assert needle in capsys.readouterr().err


def test_apply_shared_plan_makes_the_calls_sagemaker_documents():
    """moto 5.2 has no inference-component APIs: botocore's Stubber checks every call against the
    service models (names, types, required members) and the order they come in."""
    from botocore.stub import ANY, Stubber

    from tryon.aws import sagemaker_endpoints as deploy

    plan = deploy.make_shared_plan(
        {"sd_inpaint": "s3://art/inpaint/model.tar.gz"},
        endpoint_name="tryon-shared",
        region=REGION,
        digests={"sd_inpaint": "sha256:abc"},
    )
    [component] = plan.components
    session = boto3.Session(region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    clients = {name: session.client(name) for name in ("sagemaker", "application-autoscaling", "cloudwatch")}
    stubs = {name: Stubber(client) for name, client in clients.items()}
    sm, scaling, cloudwatch = stubs["sagemaker"], stubs["application-autoscaling"], stubs["cloudwatch"]
    sm.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m"})
    sm.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/c"},
        {
            "EndpointConfigName": plan.config_name,
            "ExecutionRoleArn": ROLE,
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "InstanceType": "ml.g5.12xlarge",
                    "InitialInstanceCount": 1,
                    "ManagedInstanceScaling": {
                        "Status": "ENABLED",
                        "MinInstanceCount": 0,
                        "MaxInstanceCount": 1,
                    },
                    "RoutingConfig": {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"},
                }
            ],
        },
    )
    sm.add_client_error("describe_endpoint", "ValidationException", "Could not find endpoint")
    sm.add_response("create_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/e"})
    sm.add_client_error(
        "describe_inference_component", "ValidationException", "Could not find inference component"
    )
    sm.add_response(
        "create_inference_component",
        {"InferenceComponentArn": "arn:aws:sagemaker:us-east-1:123456789012:inference-component/i"},
        {
            "InferenceComponentName": "tryon-shared-sd-inpaint",
            "EndpointName": "tryon-shared",
            "VariantName": "AllTraffic",
            "RuntimeConfig": {"CopyCount": 1},
            "Specification": {
                "ModelName": component.model_name,
                "ComputeResourceRequirements": {
                    "NumberOfAcceleratorDevicesRequired": 1,
                    "NumberOfCpuCoresRequired": 4,
                    "MinMemoryRequiredInMb": 16384,
                },
            },
        },
    )
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": "inference-component/tryon-shared-sd-inpaint",
        "ScalableDimension": "sagemaker:inference-component:DesiredCopyCount",
    }
    scaling.add_response("register_scalable_target", {}, {**target, "MinCapacity": 0, "MaxCapacity": 1})
    scaling.add_response(
        "put_scaling_policy",
        {"PolicyARN": "arn:tracking", "Alarms": []},
        {
            **target,
            "PolicyName": ANY,
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": ANY,
        },
    )
    scaling.add_response(
        "put_scaling_policy",
        {"PolicyARN": "arn:step"},
        {
            **target,
            "PolicyName": "tryon-shared-sd-inpaint-from-zero",
            "PolicyType": "StepScaling",
            "StepScalingPolicyConfiguration": {
                "AdjustmentType": "ChangeInCapacity",
                "MetricAggregationType": "Maximum",
                "Cooldown": 60,
                "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
            },
        },
    )
    cloudwatch.add_response(
        "put_metric_alarm",
        {},
        {
            "AlarmName": ANY,
            "AlarmDescription": ANY,
            "Namespace": "AWS/SageMaker",
            "MetricName": "NoCapacityInvocationFailures",
            "Dimensions": [{"Name": "InferenceComponentName", "Value": "tryon-shared-sd-inpaint"}],
            "Statistic": "Sum",
            "Period": 60,
            "EvaluationPeriods": 1,
            "DatapointsToAlarm": 1,
            "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": ["arn:step"],
        },
    )

    class StubbedSession:
        def client(self, name):
            return clients[name]

    with stubs["sagemaker"], stubs["application-autoscaling"], stubs["cloudwatch"]:
        results = deploy.apply_shared_plan(plan, role_arn=ROLE, session=StubbedSession(), wait=False)
        for stub in stubs.values():
            stub.assert_no_pending_responses()
    assert results == [
        {"endpoint": "tryon-shared", "action": "created"},
        {"component": "tryon-shared-sd-inpaint", "action": "created"},
    ]
