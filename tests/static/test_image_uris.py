"""One source for serving images: the template's Mappings, the SDK config and deploy-models agree."""

from __future__ import annotations

import boto3
import pytest
from support.paths import TEMPLATE

from tryon.aws import image_uris, sagemaker_endpoints
from tryon.core.errors import RequestError
from tryon.local.template import SamTemplate, load_template

#: ``AWS::URLSuffix`` of each partition (CloudFormation pseudo parameter).
URL_SUFFIX = {
    "aws": "amazonaws.com",
    "aws-cn": "amazonaws.com.cn",
    "aws-us-gov": "amazonaws.com",
    "aws-iso": "c2s.ic.gov",
    "aws-iso-b": "sc2s.sgov.gov",
}
CPU_TYPES = ["ml.m5.xlarge", "ml.c5.2xlarge", "ml.r5.large", "ml.t2.medium"]
GPU_TYPES = ["ml.g5.xlarge", "ml.g4dn.xlarge", "ml.g6e.2xlarge", "ml.p4d.24xlarge", "ml.p3.2xlarge"]
MODELS = {"ClipSegModel": "ClipSeg", "InpaintModel": "Inpaint", "UpscaleModel": "Upscale"}
REGIONS = sorted(image_uris.template_mappings()[image_uris.REGISTRY_MAPPING])


def test_template_mappings_are_generated_from_the_sdk_config():
    mappings = load_template(TEMPLATE)["Mappings"]
    generated = image_uris.template_mappings()
    assert {name: mappings[name] for name in generated} == generated
    assert image_uris.write_template(TEMPLATE, check=True) is False, "stale: run `make image-mappings`"
    assert image_uris.main(["--write-template", str(TEMPLATE), "--check"]) == 0
    # Regions outside the default account, from the issue: each has its own registry.
    accounts = generated[image_uris.REGISTRY_MAPPING]
    for region in ("af-south-1", "ap-east-1", "eu-south-1", "me-south-1", "il-central-1", "cn-north-1"):
        assert accounts[region]["Account"] != "763104351884", region


def test_write_template_replaces_only_the_generated_block(tmp_path):
    stale = TEMPLATE.read_text().replace(
        'us-east-1: { Account: "763104351884" }', 'us-east-1: { Account: "1" }'
    )
    path = tmp_path / "template.yaml"
    path.write_text(stale)
    assert image_uris.main(["--write-template", str(path), "--check"]) == 1
    assert path.read_text() == stale  # --check only looks
    assert image_uris.write_template(path) is True
    assert path.read_text() == TEMPLATE.read_text()


def _stack(region: str) -> SamTemplate:
    stack = SamTemplate(TEMPLATE, region=region)
    partition = boto3.Session().get_partition_for_region(region)
    stack.pseudo.update({"AWS::Partition": partition, "AWS::URLSuffix": URL_SUFFIX[partition]})
    return stack


def _check(stack: SamTemplate, region: str, instance_type: str) -> str:
    """The template's Image of every endpoint == deploy-models' image; returns it."""
    expected = image_uris.image_uri(region, instance_type)
    plan = sagemaker_endpoints.make_plan(
        "sd_inpaint",
        endpoint_name="e",
        model_data_url="s3://b/m.tar.gz",
        region=region,
        instance_type=instance_type,
    )
    assert plan.image_uri == expected
    for logical_id, prefix in MODELS.items():
        stack.parameters[f"{prefix}InstanceType"] = instance_type
        image = stack.resolve(stack.doc["Resources"][logical_id]["Properties"]["PrimaryContainer"]["Image"])
        assert image == expected, (logical_id, instance_type)
    return expected


@pytest.mark.parametrize("region", REGIONS)
def test_template_image_is_what_deploy_models_resolves(region):
    """For every region, a CPU and a GPU instance type and each endpoint: the same image both ways."""
    stack = _stack(region)
    account = stack.doc["Mappings"][image_uris.REGISTRY_MAPPING][region]["Account"]
    cpu, gpu = _check(stack, region, "ml.m5.xlarge"), _check(stack, region, "ml.g5.xlarge")
    assert "-cpu-py312-ubuntu22.04" in cpu and "-gpu-py312-cu124-ubuntu22.04" in gpu
    assert cpu.startswith(f"{account}.dkr.ecr.{region}.{stack.pseudo['AWS::URLSuffix']}/")


@pytest.mark.parametrize("instance_type", CPU_TYPES + GPU_TYPES)
def test_template_and_sdk_agree_on_cpu_or_gpu_per_instance_family(instance_type):
    image = _check(_stack("eu-south-1"), "eu-south-1", instance_type)
    assert ("-gpu-" in image) == (instance_type in GPU_TYPES)


def test_serverless_gets_the_cpu_image_and_the_override_wins():
    assert "-cpu-py312-" in image_uris.image_uri("eu-south-1", "ml.g5.xlarge", serverless=True)
    plan = sagemaker_endpoints.make_plan(
        "clipseg", endpoint_name="e", model_data_url="s3://b/m.tar.gz", region="us-east-1", mode="serverless"
    )
    assert "-cpu-py312-" in plan.image_uri
    stack = SamTemplate(TEMPLATE, {"InferenceImageUri": "123.dkr.ecr.x/mine:1"})
    image = stack.doc["Resources"]["InpaintModel"]["Properties"]["PrimaryContainer"]["Image"]
    assert stack.resolve(image) == "123.dkr.ecr.x/mine:1"


def test_template_defaults_pick_cpu_for_clipseg_and_gpu_for_diffusion():
    stack = SamTemplate(TEMPLATE)
    assert not stack.condition_holds("ClipSegOnGpu")
    assert stack.condition_holds("InpaintOnGpu") and stack.condition_holds("UpscaleOnGpu")


@pytest.mark.parametrize(
    ("instance_type", "message"),
    [
        ("g5.xlarge", "must look like ml.<family>.<size>"),
        ("ml.inf2.xlarge", "needs a Neuron image"),
        ("ml.trn1.2xlarge", "needs a Neuron image"),
    ],
)
def test_unsupported_instance_types_are_refused_by_name(instance_type, message):
    with pytest.raises(RequestError, match="instance_type") as info:
        image_uris.image_uri("us-east-1", instance_type)
    assert message in str(info.value)


def test_unknown_region_is_a_clear_error():
    with pytest.raises(RequestError, match=r"^region: "):
        image_uris.image_uri("xx-nowhere-1", "ml.g5.xlarge")
