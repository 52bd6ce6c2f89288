"""The template's endpoint modes: async endpoint configs, the callback's resources, scale to zero."""

from __future__ import annotations

import pytest
from support.paths import TEMPLATE

from tryon.local.template import SamTemplate
from tryon.workflow import async_tokens, layout

MODEL = "s3://art/model.tar.gz"
KINDS = ["ClipSeg", "Inpaint", "Upscale"]
SCALING = ("ScalableTarget", "BacklogScaling", "ScaleFromZero", "BacklogWithoutCapacity")


def stack(kind: str, mode: str) -> SamTemplate:
    return SamTemplate(TEMPLATE, {f"{kind}ModelDataUrl": MODEL, f"{kind}Mode": mode})


def resource(t: SamTemplate, name: str) -> dict:
    return t.resolve(t.doc["Resources"][name]["Properties"])


@pytest.mark.parametrize("kind", KINDS)
def test_an_async_endpoint_answers_to_s3_notifies_sns_and_scales_from_zero(kind: str) -> None:
    t = stack(kind, "async")
    config = resource(t, f"{kind}EndpointConfig")
    output = config["AsyncInferenceConfig"]["OutputConfig"]
    prefix = t.parameters["AsyncPrefix"]
    assert output["S3OutputPath"] == layout.s3_uri("local-OutputBucket", prefix + layout.ASYNC_OUTPUTS)
    assert output["S3FailurePath"] == layout.s3_uri("local-OutputBucket", prefix + layout.ASYNC_ERRORS)
    assert output["NotificationConfig"] == {
        "SuccessTopic": "local-AsyncSuccessTopic",
        "ErrorTopic": "local-AsyncErrorTopic",
    }
    [variant] = config["ProductionVariants"]
    assert variant["InitialInstanceCount"] == 1 and "ServerlessConfig" not in variant
    for suffix in SCALING:
        assert t.condition_holds(t.doc["Resources"][f"{kind}{suffix}"]["Condition"])
    target = resource(t, f"{kind}ScalableTarget")
    assert target["MinCapacity"] == 0 and target["MaxCapacity"] == t.parameters["AsyncMaxInstances"]
    assert target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    tracking = resource(t, f"{kind}BacklogScaling")["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["CustomizedMetricSpecification"]["MetricName"] == "ApproximateBacklogSizePerInstance"
    alarm = resource(t, f"{kind}BacklogWithoutCapacity")
    assert alarm["MetricName"] == "HasBacklogWithoutCapacity"
    assert alarm["AlarmActions"] == [f"local-{kind}ScaleFromZero"]
    step = resource(t, f"{kind}ScaleFromZero")["StepScalingPolicyConfiguration"]
    assert step["StepAdjustments"] == [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]


def test_diffusion_endpoints_are_never_serverless() -> None:
    """Serverless is CPU-only and 60 s a call (deploy-models refuses it for them too)."""
    params = SamTemplate(TEMPLATE).doc["Parameters"]
    assert params["ClipSegMode"]["AllowedValues"] == ["realtime", "serverless", "async"]
    for kind in ("Inpaint", "Upscale"):
        assert params[f"{kind}Mode"]["AllowedValues"] == ["realtime", "async"]


@pytest.mark.parametrize("kind", ["ClipSeg"])
def test_a_serverless_endpoint_has_no_instances_and_runs_the_cpu_image(kind: str) -> None:
    t = stack(kind, "serverless")
    config = resource(t, f"{kind}EndpointConfig")
    [variant] = config["ProductionVariants"]
    assert "InstanceType" not in variant and "InitialInstanceCount" not in variant
    assert int(variant["ServerlessConfig"]["MemorySizeInMB"]) <= 6144  # serverless: 1-6 GB
    assert "AsyncInferenceConfig" not in config
    assert not t.condition_holds(f"{kind}OnGpu")
    assert not any(t.condition_holds(t.doc["Resources"][f"{kind}{s}"]["Condition"]) for s in SCALING)


@pytest.mark.parametrize("mode", ["realtime", "async"])
def test_the_workflow_and_the_handlers_are_told_each_mode(mode: str) -> None:
    t = stack("Inpaint", mode)
    env = t.function_environment("PrepareFunction")
    assert env["TRYON_INPAINT_MODE"] == mode and env["TRYON_CLIPSEG_MODE"] == "realtime"
    model = resource(t, "InpaintModel")
    assert model["PrimaryContainer"]["Environment"]["TRYON_ENDPOINT_MODE"] == mode


def test_the_token_table_keys_and_expires_what_the_code_writes() -> None:
    table = resource(stack("Inpaint", "async"), "AsyncTokenTable")
    assert table["KeySchema"] == [{"AttributeName": async_tokens.KEY, "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": async_tokens.TTL_ATTRIBUTE, "Enabled": True}


def test_the_callback_functions_have_least_privilege() -> None:
    t = stack("Inpaint", "async")
    submit = {s["Sid"]: s for s in resource(t, "SubmitAsyncFunction")["Policies"][0]["Statement"]}
    assert submit["WriteRequests"]["Resource"] == "local-OutputBucket-Arn/async/requests/*"
    assert submit["InvokeAsync"]["Action"] == "sagemaker:InvokeEndpointAsync"
    assert sorted(submit["KeepTaskTokens"]["Action"]) == ["dynamodb:DeleteItem", "dynamodb:PutItem"]
    complete = resource(t, "CompleteAsyncFunction")
    assert {e["Properties"]["Topic"] for e in complete["Events"].values()} == {
        "local-AsyncSuccessTopic",
        "local-AsyncErrorTopic",
    }
    statements = {s["Sid"]: s for s in complete["Policies"][0]["Statement"]}
    assert statements["ReadAnswersAndErrors"]["Action"] == "s3:GetObject"
    assert "s3:PutObject" not in str(statements)
    roles = {
        s["Sid"]
        for s in t.resolve(t.doc["Resources"]["EndpointExecutionRole"]["Properties"])["Policies"][0][
            "PolicyDocument"
        ]["Statement"]
    }
    assert {"AsyncRequests", "AsyncAnswers", "AsyncNotifications"} <= roles
    realtime = SamTemplate(TEMPLATE, {"InpaintModelDataUrl": MODEL})
    statements = realtime.resolve(realtime.doc["Resources"]["EndpointExecutionRole"]["Properties"])
    assert "AsyncAnswers" not in str(statements)
