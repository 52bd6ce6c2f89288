"""The template's shared layout: one GPU endpoint, the real-time models as its inference components,
each with its resources, scaling to zero and back, the workflow told the component names and
allowed to invoke them (cfn-lint, sam validate and checkov run over the same template in
test_template_static.py, with every layout's resources in it)."""

from __future__ import annotations

import pytest
from support.paths import TEMPLATE

from tryon.core import schema
from tryon.core.kinds import COMPONENT_RESOURCES, instance_fits
from tryon.local.template import SamTemplate

MODEL = "s3://art/model.tar.gz"
#: template prefix -> endpoint kind, environment short name
KINDS = {
    "ClipSeg": ("clipseg", "CLIPSEG"),
    "Inpaint": ("sd_inpaint", "INPAINT"),
    "Upscale": ("sd_upscale", "UPSCALE"),
}
COMPONENT_PARTS = (
    "Component",
    "ComponentScalableTarget",
    "ComponentInvocationScaling",
    "ComponentScaleFromZero",
    "ComponentNoCapacity",
)


def stack(**parameters) -> SamTemplate:
    models = {f"{k}ModelDataUrl": MODEL for k in KINDS}
    return SamTemplate(TEMPLATE, {**models, "EndpointLayout": "shared", **parameters})


def created(t: SamTemplate, name: str) -> bool:
    return t.condition_holds(t.doc["Resources"][name].get("Condition"))


def props(t: SamTemplate, name: str) -> dict:
    return t.resolve(t.doc["Resources"][name]["Properties"])


def test_one_endpoint_scales_to_zero_instances_and_names_no_model():
    t = stack()
    assert created(t, "SharedEndpoint") and created(t, "SharedEndpointConfig")
    config = props(t, "SharedEndpointConfig")
    [variant] = config["ProductionVariants"]
    assert "ModelName" not in variant and variant["InstanceType"] == "ml.g5.12xlarge"
    assert variant["ManagedInstanceScaling"] == {
        "Status": "ENABLED",
        "MinInstanceCount": 0,
        "MaxInstanceCount": t.parameters["SharedMaxInstances"],
    }
    assert config["ExecutionRoleArn"] == "local-EndpointExecutionRole-Arn"
    assert props(t, "SharedEndpoint")["EndpointName"] == "tryon-shared"
    for kind in KINDS:  # no endpoint of their own
        assert not created(t, f"{kind}Endpoint") and not created(t, f"{kind}EndpointConfig")
        assert created(t, f"{kind}Model")


@pytest.mark.parametrize("kind", KINDS)
def test_each_component_has_its_gpu_memory_copies_and_scaling(kind):
    t = stack()
    endpoint_kind, _ = KINDS[kind]
    for part in COMPONENT_PARTS:
        assert created(t, f"{kind}{part}"), part
    component = props(t, f"{kind}Component")
    name = schema.kind(endpoint_kind).component_name("tryon-shared")
    assert component["InferenceComponentName"] == name
    assert component["EndpointName"] == "local-SharedEndpoint-EndpointName"
    assert component["Specification"]["ModelName"] == f"local-{kind}Model-ModelName"
    resources = COMPONENT_RESOURCES[endpoint_kind]  # one source: deploy-models sizes the same
    assert component["Specification"]["ComputeResourceRequirements"] == {
        "NumberOfAcceleratorDevicesRequired": resources.accelerators,
        "NumberOfCpuCoresRequired": resources.cpu_cores,
        "MinMemoryRequiredInMb": resources.memory_mb,
    }
    assert component["RuntimeConfig"] == {"CopyCount": 1}
    target = props(t, f"{kind}ComponentScalableTarget")
    assert target["ResourceId"] == f"inference-component/{name}"
    assert target["ScalableDimension"] == "sagemaker:inference-component:DesiredCopyCount"
    assert target["MinCapacity"] == 0  # scale to zero per component
    tracking = props(t, f"{kind}ComponentInvocationScaling")["TargetTrackingScalingPolicyConfiguration"]
    assert (
        tracking["PredefinedMetricSpecification"]["PredefinedMetricType"]
        == "SageMakerInferenceComponentInvocationsPerCopy"
    )
    step = props(t, f"{kind}ComponentScaleFromZero")["StepScalingPolicyConfiguration"]
    assert step["AdjustmentType"] == "ChangeInCapacity"
    assert step["StepAdjustments"] == [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]
    alarm = props(t, f"{kind}ComponentNoCapacity")
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SageMaker", "NoCapacityInvocationFailures")
    assert alarm["Dimensions"] == [{"Name": "InferenceComponentName", "Value": name}]
    assert alarm["AlarmActions"] == [f"local-{kind}ComponentScaleFromZero"]
    model = props(t, f"{kind}Model")
    assert "-gpu-" in model["PrimaryContainer"]["Image"]  # a component has a GPU


def test_the_default_instance_fits_every_component():
    t = stack()
    assert instance_fits(t.parameters["SharedInstanceType"], dict.fromkeys(COMPONENT_RESOURCES, 1)) is None


@pytest.mark.parametrize("kind", KINDS)
def test_the_workflow_calls_components_by_name_and_may_invoke_them(kind):
    t = stack()
    endpoint_kind, _ = KINDS[kind]
    env = t.function_environment("PrepareFunction")
    row = schema.kind(endpoint_kind)
    assert env[row.endpoint_variable] == "tryon-shared"
    assert env[row.component_variable] == row.component_name("tryon-shared")
    function = {"ClipSeg": "SegmentFunction", "Inpaint": "InpaintFunction", "Upscale": "UpscaleFunction"}[
        kind
    ]
    [invoke] = [
        s for s in props(t, function)["Policies"][0]["Statement"] if s["Action"] == "sagemaker:InvokeEndpoint"
    ]
    arn = "arn:aws:sagemaker:us-east-1:123456789012"
    assert f"{arn}:endpoint/tryon-shared" in invoke["Resource"]
    assert (
        f"{arn}:inference-component/{schema.kind(endpoint_kind).component_name('tryon-shared')}"
        in invoke["Resource"]
    )
    # and nothing more than that: not the other components
    assert len(invoke["Resource"]) == 3


def test_the_separate_layout_is_unchanged():
    t = SamTemplate(TEMPLATE, {f"{k}ModelDataUrl": MODEL for k in KINDS})
    assert not created(t, "SharedEndpoint")
    for kind, (_, short) in KINDS.items():
        assert created(t, f"{kind}Endpoint") and not created(t, f"{kind}Component")
        env = t.function_environment("PrepareFunction")
        assert env[f"TRYON_{short}_COMPONENT"] == ""
        assert env[f"TRYON_{short}_ENDPOINT"] == t.parameters[f"{kind}EndpointName"]


def test_serverless_and_async_models_keep_their_own_endpoints_in_the_shared_layout():
    t = stack(ClipSegMode="serverless", UpscaleMode="async")
    assert created(t, "ClipSegEndpoint") and not created(t, "ClipSegComponent")
    assert (
        created(t, "UpscaleEndpoint")
        and created(t, "UpscaleScalableTarget")
        and not created(t, "UpscaleComponent")
    )
    assert created(t, "InpaintComponent") and created(t, "SharedEndpoint")
    env = t.function_environment("PrepareFunction")
    assert env["TRYON_CLIPSEG_ENDPOINT"] == "tryon-clipseg" and env["TRYON_CLIPSEG_COMPONENT"] == ""
    assert env["TRYON_INPAINT_ENDPOINT"] == "tryon-shared"


def test_no_upscaler_means_no_upscaler_component():
    t = stack(UpscaleEndpointName="")
    assert not created(t, "UpscaleComponent")
    assert t.function_environment("PrepareFunction")["TRYON_UPSCALE_ENDPOINT"] == ""


def test_the_manifest_bills_components_on_the_shared_instance_type():
    env = stack(ClipSegMode="serverless").function_environment("FinalizeFunction")
    assert env["TRYON_INPAINT_INSTANCE_TYPE"] == env["TRYON_UPSCALE_INSTANCE_TYPE"] == "ml.g5.12xlarge"
    assert env["TRYON_CLIPSEG_INSTANCE_TYPE"] == "ml.m5.xlarge"  # serverless: its own, as configured
