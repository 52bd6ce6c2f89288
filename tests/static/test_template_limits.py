"""template.yaml's limits against tryon.core: the upscaler's time budget parameter, Lambda's 4 KB.

The numbers live in :mod:`tryon.core.upscale_budget`; the template keeps literal copies (it
cannot import them when ``sam deploy`` runs), so these tests fail when the two disagree.
"""

from __future__ import annotations

import re

import pytest
from support.paths import TEMPLATE

from tryon.core import schema, upscale_budget
from tryon.local.template import SamTemplate, load_template

#: Every function that builds jobs (tryon.workflow.job.build_job) and so estimates upscales.
JOB_BUILDERS = ("PrepareFunction", "ValidateBatchFunction")


def test_the_upscale_tile_step_parameter_is_tryon_cores():
    spec = load_template(TEMPLATE)["Parameters"][upscale_budget.TILE_STEP_SECONDS_PARAMETER]
    assert spec["Type"] == "Number"
    assert float(spec["Default"]) == upscale_budget.DEFAULT_TILE_STEP_SECONDS
    assert (float(spec["MinValue"]), float(spec["MaxValue"])) == upscale_budget.TILE_STEP_SECONDS_RANGE
    assert "docs/benchmarks.md#upscaler-time-budget" in spec["Description"]


def test_every_function_that_builds_jobs_gets_the_upscale_tile_step():
    stack = SamTemplate(TEMPLATE, {upscale_budget.TILE_STEP_SECONDS_PARAMETER: "0.7"})
    for logical_id in JOB_BUILDERS:
        env = stack.function_environment(logical_id)
        assert env[upscale_budget.TILE_STEP_SECONDS_VARIABLE] == "0.7", logical_id
        assert upscale_budget.tile_step_seconds(env) == 0.7


# ------------------------------------------------------------------ Lambda's 4 KB environment
#: The longest an AWS-made value can be, by the resource a variable refers to. CloudFormation
#: names what the template leaves unnamed ``<stack>-<logical id>-<up to 13 random characters>``;
#: a stack name has at most 128 characters; bucket names at most 63.
STACK_NAME_MAX = 128
_PARTITION_REGION_ACCOUNT = len("arn:aws-us-gov:") + len("us-gov-west-1") + len(":123456789012:")


def _generated_name(logical_id: str) -> int:
    return STACK_NAME_MAX + 1 + len(logical_id) + 1 + 13


def _resource_value(logical_id: str, resource: dict) -> int:
    kind = resource["Type"]
    if kind == "AWS::S3::Bucket":
        return 63
    if kind == "AWS::SNS::Topic":  # Ref: the topic's ARN
        return _PARTITION_REGION_ACCOUNT + len("sns") + _generated_name(logical_id)
    if kind == "AWS::DynamoDB::Table":  # Ref: the table's name
        return _generated_name(logical_id)
    if kind == "AWS::SQS::Queue":  # Ref: the queue's URL; queue names have at most 80 characters
        return len("https://sqs.us-gov-west-1.amazonaws.com/123456789012/") + 80
    if kind == "AWS::SSM::Parameter":  # Ref: the parameter's name
        name = resource["Properties"]["Name"]
        return _sub_value(name["Fn::Sub"] if isinstance(name, dict) else name, {})
    raise AssertionError(f"{logical_id} ({kind}): how long is its Ref? add it here")


def _parameter_value(name: str, spec: dict) -> int:
    if spec["Type"] == "Number":
        return schema.NUMBER_TEXT_MAX
    if "AllowedValues" in spec:
        return max(len(str(value)) for value in spec["AllowedValues"])
    assert "MaxLength" in spec, (
        f"template parameter {name} reaches a function's environment: give it a MaxLength"
    )
    return int(spec["MaxLength"])


def _sub_value(text: str, local: dict) -> int:
    pseudo = {"AWS::StackName": STACK_NAME_MAX, "AWS::Region": len("us-gov-west-1"), "AWS::Partition": 10}
    total = 0
    for literal, name in re.findall(r"([^$]*)(?:\$\{([^}]+)\})?", text):
        total += len(literal)
        if name:
            total += pseudo[name] if name in pseudo else _worst({"Ref": name})
    return total


_DOC = load_template(TEMPLATE)


def _worst(value) -> int:
    """The longest text a variable's value can take in any deployment of the template."""
    if isinstance(value, str | int | float):
        return len(str(value))
    ((function, argument),) = value.items()
    if function == "Ref":
        if argument in _DOC["Parameters"]:
            return _parameter_value(argument, _DOC["Parameters"][argument])
        return _resource_value(argument, _DOC["Resources"][argument])
    if function == "Fn::If":
        return max(_worst(branch) for branch in argument[1:])
    if function == "Fn::Sub":
        return _sub_value(argument, {})
    raise AssertionError(f"no worst case for {function}")


def worst_environment_bytes(logical_id: str) -> dict[str, int]:
    """Each variable's worst JSON bytes (key and value, quotes, colon, comma) in a function's environment."""
    glob = _DOC["Globals"]["Function"]["Environment"]["Variables"]
    own = _DOC["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {})
    return {name: len(name) + _worst(value) + 6 for name, value in {**glob, **own}.items()}


FUNCTIONS = [name for name, res in _DOC["Resources"].items() if res["Type"] == "AWS::Serverless::Function"]


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_every_functions_environment_fits_lambdas_4_kb_whatever_the_parameters(logical_id):
    """The template's limits add up: the longest values every parameter allows still fit 4 KB.

    Counted in characters of ASCII text (docs/deploy.md: a non-ASCII character takes 2-4 bytes,
    and the local stack refuses a function whose actual variables exceed 4 KB, as Lambda does).
    """
    sizes = worst_environment_bytes(logical_id)
    total = sum(sizes.values()) + 1  # the braces, less the last comma
    largest = sorted(sizes, key=sizes.get, reverse=True)[:5]
    assert total <= schema.LAMBDA_ENVIRONMENT_BYTES, (
        f"{logical_id}: {total} bytes at worst (largest: {', '.join(f'{n} {sizes[n]}' for n in largest)})"
    )


def test_presets_live_in_an_ssm_parameter_the_job_builders_may_read():
    """The Presets parameter (up to 4 KB) would not fit Lambda's environment: it is an SSM parameter."""
    doc = _DOC
    assert "TRYON_PRESETS" not in doc["Globals"]["Function"]["Environment"]["Variables"]
    presets = doc["Resources"]["PresetsParameter"]
    assert presets["Type"] == "AWS::SSM::Parameter" and presets["Condition"] == "HasPresets"
    assert presets["Properties"]["Value"] == {"Ref": "Presets"}
    name = "/${AWS::StackName}/presets"
    assert presets["Properties"]["Name"] == {"Fn::Sub": name}
    arn = {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter" + name}
    for logical_id in FUNCTIONS:
        props = doc["Resources"][logical_id]["Properties"]
        variable = props.get("Environment", {}).get("Variables", {}).get("TRYON_PRESETS_PARAMETER")
        statements = [
            s for p in props.get("Policies", []) if isinstance(p, dict) for s in p.get("Statement", [])
        ]
        reads = [s["Fn::If"][1] for s in statements if isinstance(s, dict) and "Fn::If" in s]
        reads = [s for s in reads if s.get("Action") == "ssm:GetParameter"]
        if logical_id in JOB_BUILDERS:
            assert variable == {"Fn::If": ["HasPresets", {"Ref": "PresetsParameter"}, ""]}, logical_id
            assert [s["Resource"] for s in reads] == [arn], logical_id
        else:
            assert variable is None and reads == [], logical_id
    # (the moderation settings' parameters are always there: tests/static/test_moderation_template.py)
    stack = SamTemplate(TEMPLATE, {"Presets": '{"studio": {"steps": 44}}'})
    assert stack.resources_of_type("AWS::SSM::Parameter")["PresetsParameter"] == presets
    assert "PresetsParameter" not in SamTemplate(TEMPLATE).resources_of_type("AWS::SSM::Parameter")
