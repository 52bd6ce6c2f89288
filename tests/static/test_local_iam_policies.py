"""The local stack enforces the policies SAM deploys: tryon.local.iam's reading of each function's
policy in template.yaml equals the role statements of the SAM-translated template."""

from __future__ import annotations

import json

import pytest
from support.paths import TEMPLATE
from support.sam import role_statements, translated

from tryon.local import iam
from tryon.local.template import SamTemplate

FUNCTIONS = sorted(SamTemplate(TEMPLATE).resources_of_type("AWS::Serverless::Function"))


def _canonical(statements: list[dict]) -> list[str]:
    return sorted(json.dumps(s, sort_keys=True) for s in statements)


@pytest.mark.parametrize("parameters", [{}, {"UpscaleEndpointName": "", "AsyncPrefix": "a/"}])
@pytest.mark.parametrize("function", FUNCTIONS)
def test_the_harness_reads_each_policy_as_sam_translates_it(function, parameters):
    stack = SamTemplate(TEMPLATE, parameters)
    sam = stack.resolve(role_statements(translated(), function))
    assert _canonical(iam.function_statements(stack, function)) == _canonical(sam)


def test_every_function_gets_only_its_own_managed_policies():
    """Besides the statements, SAM attaches logging and X-Ray write access: no call of ours needs more."""
    doc = translated()
    for function in FUNCTIONS:
        role = doc["Resources"][function]["Properties"]["Role"]["Fn::GetAtt"][0]
        managed = doc["Resources"][role]["Properties"]["ManagedPolicyArns"]
        assert sorted(managed) == [
            "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
            "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        ], function
