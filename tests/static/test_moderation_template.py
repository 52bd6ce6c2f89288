"""The moderation's wiring in template.yaml and the ASL: who may call Rekognition, who may read the
quarantine (checked over the bucket policy), and the settings' one source of truth."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from support.paths import REPO, TEMPLATE, TRYON_ASL

from tryon.core import content_policy
from tryon.local.template import SamTemplate, load_template

DETECT = "rekognition:DetectModerationLabels"
OPERATOR_ARN = "local-OperatorRole-Arn"  # !GetAtt OperatorRole.Arn as the local resolver spells it


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(node: Any) -> Iterator[dict[str, Any]]:
    """Every policy statement under ``node`` (both branches of an ``Fn::If``)."""
    if isinstance(node, Mapping):
        if "Effect" in node and ("Action" in node or "NotAction" in node):
            yield dict(node)
            return
        for value in node.values():
            yield from _statements(value)
    elif isinstance(node, list):
        for value in node:
            yield from _statements(value)


def identity_policies(doc: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Logical id of each principal the template creates (function, state machine, role) -> its statements."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, res in doc["Resources"].items():
        props = res.get("Properties", {})
        if res["Type"] in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
            out[name] = list(_statements(props.get("Policies", [])))
        elif res["Type"] == "AWS::IAM::Role":
            out[name] = list(_statements(props.get("Policies", [])))
            assert not props.get("ManagedPolicyArns"), f"{name}: managed policies would escape this check"
        elif res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            raise AssertionError(f"{name}: a standalone policy; teach this test who it is attached to")
    return out


def _allows(statement: Mapping[str, Any], action: str) -> bool:
    return statement["Effect"] == "Allow" and any(
        fnmatch.fnmatchcase(action.lower(), str(a).lower()) for a in _items(statement.get("Action", []))
    )


def test_only_the_moderate_function_may_call_rekognition():
    doc = load_template(TEMPLATE)
    granted = {
        name for name, stmts in identity_policies(doc).items() if any(_allows(s, DETECT) for s in stmts)
    }
    assert granted == {"ModerateFunction"}
    [statement] = [s for s in identity_policies(doc)["ModerateFunction"] if _allows(s, DETECT)]
    # the one action, nothing else of Rekognition; "*" because the action has no resource type
    assert _items(statement["Action"]) == [DETECT] and statement["Resource"] == "*"
    for name, stmts in identity_policies(doc).items():
        for s in stmts:
            actions = [str(a) for a in _items(s.get("Action", []))]
            assert not [a for a in actions if a in ("*", "rekognition:*")], name
    # nor does a SAM policy template or a managed policy named instead of statements
    for name, res in doc["Resources"].items():
        for policy in _items(res.get("Properties", {}).get("Policies", [])):
            named = [policy] if isinstance(policy, str) else [k for k in policy if k != "Statement"]
            assert not [p for p in named if "rekognition" in p.lower()], name


def test_the_moderate_function_is_the_only_caller_in_the_code_and_the_state_machine():
    asl = json.loads(TRYON_ASL.read_text())
    callers = {n for n, s in asl["States"].items() if s.get("Resource") == "${ModerateFunctionArn}"}
    assert callers == {"ModerateInputs", "ModerateResults"}
    assert (
        "aws-sdk:rekognition" not in TRYON_ASL.read_text()
    )  # no SDK integration: the role would be the state machine's
    callers_in_code = [
        path.relative_to(REPO).as_posix()
        for path in (REPO / "src" / "tryon").rglob("*.py")
        if 'client("rekognition")' in path.read_text()
    ]
    assert callers_in_code == ["src/tryon/workflow/moderate.py"]
    moderate = load_template(TEMPLATE)["Resources"]["ModerateFunction"]["Properties"]
    assert (
        moderate["CodeUri"] == "functions/moderate/"
        and "moderate.moderate" in (REPO / "functions" / "moderate" / "app.py").read_text()
    )


# ---------------------------------------------------------------------------- the quarantine


def _condition_holds(condition: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    """The condition operators the bucket policy uses (anything else fails the test)."""
    for operator, pairs in condition.items():
        for key, expected in pairs.items():
            value = context.get(key)
            wanted = [str(v) for v in _items(expected)]
            if operator == "Bool":
                ok = value is not None and value.lower() in [w.lower() for w in wanted]
            elif operator == "ArnNotEquals":
                ok = value is not None and value not in wanted
            elif operator == "ArnEquals":
                ok = value in wanted
            else:
                raise AssertionError(f"condition operator {operator} is not evaluated by this test")
            if not ok:
                return False
    return True


def bucket_policy_denies(
    statements: list[dict[str, Any]], action: str, resource: str, principal: str
) -> bool:
    """Whether an explicit Deny of the bucket policy matches the request (TLS in use)."""
    context = {"aws:PrincipalArn": principal, "aws:SecureTransport": "true"}
    for s in statements:
        if s["Effect"] != "Deny" or s.get("Principal") not in ("*", {"AWS": "*"}):
            continue
        if not any(fnmatch.fnmatchcase(action, a) for a in _items(s["Action"])):
            continue
        if not any(fnmatch.fnmatchcase(resource, r) for r in _items(s["Resource"])):
            continue
        if _condition_holds(s.get("Condition", {}), context):
            return True
    return False


@pytest.fixture(scope="module")
def stack():
    return SamTemplate(TEMPLATE)


def _bucket_statements(stack: SamTemplate) -> list[dict[str, Any]]:
    policy = stack.doc["Resources"]["OutputBucketPolicy"]["Properties"]
    return stack.resolve(policy["PolicyDocument"]["Statement"])


#: Whoever else might try: every role the stack creates (SAM names a function's role
#: <logical id>Role), the endpoints' role, and an administrator whose own policy allows s3:*.
OTHERS = [
    *(f"arn:aws:iam::123456789012:role/tryon-local-{name}Role-ABC" for name in (
        "PrepareFunction", "ModerateFunction", "FinalizeFunction", "RecordFailureFunction",
        "SummarizeBatchFunction", "TryOnStateMachine",
    )),
    "arn:aws:iam::123456789012:role/tryon-local-EndpointExecutionRole-XYZ",
    "arn:aws:iam::123456789012:role/Admin",
    "arn:aws:iam::123456789012:root",
    "arn:aws:iam::123456789012:user/shopper-support",
]  # fmt: skip


@pytest.mark.parametrize("action", ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectAttributes"])
def test_the_quarantine_is_readable_only_by_the_operator_role(stack, action):
    statements = _bucket_statements(stack)
    quarantined = "local-OutputBucket-Arn/quarantine/0123abcd/inpainted-0.png"
    assert not bucket_policy_denies(statements, action, quarantined, OPERATOR_ARN)
    for principal in OTHERS:
        assert bucket_policy_denies(statements, action, quarantined, principal), principal
    # the results stay readable as before: the deny covers the quarantine prefix only
    published = "local-OutputBucket-Arn/results/photo/0123abcd/inpainted-0.png"
    assert not any(bucket_policy_denies(statements, action, published, p) for p in OTHERS)


def test_the_operator_role_may_read_what_it_reviews_and_nothing_else_may(stack):
    policies = identity_policies(stack.doc)
    quarantined = "local-OutputBucket-Arn/quarantine/0123abcd/inpainted-0.png"

    def reads(statements):
        resolved = stack.resolve(statements)
        return [
            s
            for s in resolved
            if _allows(s, "s3:GetObject")
            and any(fnmatch.fnmatchcase(quarantined, r) for r in _items(s["Resource"]))
        ]

    assert reads(policies["OperatorRole"]), "the operator role's own policy lets it read the quarantine"
    assert {name for name, stmts in policies.items() if reads(stmts)} == {"OperatorRole"}
    # only the Moderate function writes there
    writers = {
        name
        for name, stmts in policies.items()
        for s in stack.resolve(stmts)
        if _allows(s, "s3:PutObject")
        and any(fnmatch.fnmatchcase(quarantined, r) for r in _items(s["Resource"]))
    }
    assert writers == {"ModerateFunction"}
    trust = stack.resolve(stack.doc["Resources"]["OperatorRole"]["Properties"]["AssumeRolePolicyDocument"])
    assert trust["Statement"][0]["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    chosen = SamTemplate(TEMPLATE, {"OperatorPrincipalArn": "arn:aws:iam::123456789012:role/TrustAndSafety"})
    trust = chosen.resolve(chosen.doc["Resources"]["OperatorRole"]["Properties"]["AssumeRolePolicyDocument"])
    assert trust["Statement"][0]["Principal"] == {"AWS": "arn:aws:iam::123456789012:role/TrustAndSafety"}


def test_pending_and_quarantined_images_expire(stack):
    rules = stack.resolve(
        stack.doc["Resources"]["OutputBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    )
    by_prefix = {r.get("Prefix"): r for r in rules}
    assert by_prefix["pending/"]["ExpirationInDays"] == 1
    assert by_prefix["quarantine/"]["ExpirationInDays"] == stack.parameters["QuarantineRetentionDays"] == "90"


# ---------------------------------------------------------------------------- the settings


def test_template_defaults_are_the_policys_defaults_and_reach_every_function(stack):
    params = stack.doc["Parameters"]
    assert params["ContentModeration"]["Default"] == "on"
    assert params["ContentModeration"]["AllowedValues"] == ["on", "off"]
    assert tuple(params["ModerationCategories"]["Default"].split(",")) == content_policy.DEFAULT_CATEGORIES
    assert float(params["ModerationMinConfidence"]["Default"]) == content_policy.DEFAULT_MIN_CONFIDENCE
    assert (params["ModerationMinConfidence"]["MinValue"], params["ModerationMinConfidence"]["MaxValue"]) == (
        0,
        100,
    )
    # Prepare records the settings in each job: short ones in its environment, long ones in SSM
    # parameters under /<stack>/moderation/ (Lambda's 4 KB: tests/static/test_template_limits.py)
    resources = stack.doc["Resources"]
    env = resources["PrepareFunction"]["Properties"]["Environment"]["Variables"]
    stored = {
        res["Properties"]["Value"]["Ref"]: res["Properties"]["Name"]["Fn::Sub"]
        for res in resources.values()
        if res["Type"] == "AWS::SSM::Parameter" and "/moderation/" in json.dumps(res["Properties"]["Name"])
    }
    assert env[content_policy.PARAMETERS_VARIABLE] == {"Fn::Sub": "/${AWS::StackName}/moderation/"}
    for parameter, variable in content_policy.CONFIG_VARIABLES.items():
        if parameter in content_policy.STORED_PARAMETERS:
            name = content_policy.STORED_PARAMETERS[parameter]
            assert stored[parameter] == f"/${{AWS::StackName}}/moderation/{name}" and variable not in env
        else:
            assert env[variable] == {"Ref": parameter}
    assert _moderation(stack) == content_policy.ModerationConfig()
    # an empty setting has no parameter (SSM refuses empty values); the categories always have one
    assert set(stack.ssm_parameters("/tryon-local/moderation/")) == {"categories"}
    labelled = SamTemplate(TEMPLATE, {"ModerationAllowedLabels": "Bare Back"})
    assert _moderation(labelled).allowed_labels == ("Bare Back",)


def _moderation(stack: SamTemplate) -> content_policy.ModerationConfig:
    """The settings Prepare reads from this template's stack (environment and SSM parameters)."""
    env = stack.function_environment("PrepareFunction")
    return content_policy.parse_config(env, stack.ssm_parameters(env[content_policy.PARAMETERS_VARIABLE]))


def test_turning_moderation_off_needs_a_reason_on_aws_and_locally():
    rule = load_template(TEMPLATE)["Rules"]["ModerationOffNeedsAReason"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "ContentModeration"}, "off"]}
    assert rule["Assertions"][0]["Assert"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ContentModerationOffReason"}, ""]}]
    }
    off = SamTemplate(TEMPLATE, {"ContentModeration": "off"})
    with pytest.raises(content_policy.RequestError, match=r"^ContentModerationOffReason: is required"):
        _moderation(off)
    signed = SamTemplate(
        TEMPLATE, {"ContentModeration": "off", "ContentModerationOffReason": "studio photos"}
    )
    config = _moderation(signed)
    assert not config.enabled and config.off_reason == "studio photos"


def test_the_docs_list_the_default_categories_and_every_template_parameter():
    page = (REPO / "docs" / "responsible-use.md").read_text()
    for category in content_policy.DEFAULT_CATEGORIES:
        assert f"`{category}`" in page, category
    for parameter in (
        *content_policy.CONFIG_VARIABLES,
        "QuarantinePrefix",
        "QuarantineRetentionDays",
        "OperatorPrincipalArn",
    ):
        assert f"`{parameter}`" in page, parameter
    assert content_policy.POLICY_VERSION in page
    assert Path(REPO / "docs" / "cost.md").read_text().count("DetectModerationLabels") >= 1
