"""tryon.local.iam: API calls as IAM requests, and IAM's evaluation rules (no moto)."""

from __future__ import annotations

import pytest

from tryon.local import iam

WHERE = {"partition": "aws", "region": "us-east-1", "account": "123456789012"}


def requests(service: str, operation: str, **params) -> list[tuple[str, str, tuple]]:
    found = iam.requests_for(service, operation, params, **WHERE)
    assert found is not None, f"{service}.{operation} is not mapped"
    return [(r.action, r.resource, r.context) for r in found]


def test_s3_reads_by_version_need_get_object_version():
    assert requests("s3", "HeadObject", Bucket="b", Key="inputs/a.png") == [
        ("s3:GetObject", "arn:aws:s3:::b/inputs/a.png", ())
    ]
    assert requests("s3", "GetObject", Bucket="b", Key="k", VersionId="v1")[0][0] == "s3:GetObjectVersion"
    assert requests("s3", "PutObject", Bucket="b", Key="k", IfNoneMatch="*")[0][0] == "s3:PutObject"
    assert requests("s3", "ListObjectsV2", Bucket="b", Prefix="results/") == [
        ("s3:ListBucket", "arn:aws:s3:::b", (("s3:prefix", "results/"),))
    ]


def test_a_missing_key_is_decided_by_list_bucket_on_its_prefix():
    request = iam.missing_object_request("b", "garments/x.png", partition="aws-cn")
    assert (request.action, request.resource, request.context, request.implicit) == (
        "s3:ListBucket",
        "arn:aws-cn:s3:::b",
        (("s3:prefix", "garments/x.png"),),
        True,
    )


def test_other_services_name_their_resources():
    assert requests("sagemaker-runtime", "InvokeEndpoint", EndpointName="TryOn-X") == [
        ("sagemaker:InvokeEndpoint", "arn:aws:sagemaker:us-east-1:123456789012:endpoint/tryon-x", ())
    ]
    assert (
        requests("dynamodb", "UpdateItem", TableName="t")[0][1]
        == "arn:aws:dynamodb:us-east-1:123456789012:table/t"
    )
    assert requests("stepfunctions", "SendTaskSuccess", taskToken="x") == [
        ("states:SendTaskSuccess", "*", ())
    ]
    assert requests("events", "PutEvents", Entries=[{"Source": "s"}, {"EventBusName": "other"}]) == [
        ("events:PutEvents", "arn:aws:events:us-east-1:123456789012:event-bus/default", ()),
        ("events:PutEvents", "arn:aws:events:us-east-1:123456789012:event-bus/other", ()),
    ]
    assert requests("sns", "Publish", TopicArn="arn:aws:sns:us-east-1:1:t") == [
        ("sns:Publish", "arn:aws:sns:us-east-1:1:t", ())
    ]


def test_an_unmapped_call_is_none_so_the_permission_check_names_it():
    assert iam.requests_for("s3", "RestoreObject", {"Bucket": "b", "Key": "k"}, **WHERE) is None
    assert iam.requests_for("kinesis", "PutRecord", {}, **WHERE) is None


def test_a_copy_reads_its_source_and_writes_its_destination():
    copy = iam.requests_for(
        "s3", "CopyObject", {"Bucket": "b", "Key": "k", "CopySource": {"Bucket": "s", "Key": "p/x"}}, **WHERE
    )
    assert [(r.action, r.resource) for r in copy] == [
        ("s3:GetObject", "arn:aws:s3:::s/p/x"),
        ("s3:PutObject", "arn:aws:s3:::b/k"),
    ]
    versioned = iam.requests_for(
        "s3", "CopyObject", {"Bucket": "b", "Key": "k", "CopySource": "s/p/x?versionId=v1"}, **WHERE
    )
    assert (versioned[0].action, versioned[0].resource) == ("s3:GetObjectVersion", "arn:aws:s3:::s/p/x")


def test_ssm_parameters_and_paths_are_named_by_their_hierarchy():
    one = iam.requests_for("ssm", "GetParameter", {"Name": "/stack/presets"}, **WHERE)
    assert [(r.action, r.resource) for r in one] == [
        ("ssm:GetParameter", "arn:aws:ssm:us-east-1:123456789012:parameter/stack/presets")
    ]
    path = iam.requests_for("ssm", "GetParametersByPath", {"Path": "/stack/moderation/"}, **WHERE)
    assert [(r.action, r.resource) for r in path] == [
        ("ssm:GetParametersByPath", "arn:aws:ssm:us-east-1:123456789012:parameter/stack/moderation")
    ]


def test_rekognition_has_no_resource_and_reads_an_s3_image_as_the_caller():
    inline = iam.requests_for("rekognition", "DetectModerationLabels", {"Image": {"Bytes": b"x"}}, **WHERE)
    assert [(r.action, r.resource) for r in inline] == [("rekognition:DetectModerationLabels", "*")]
    named = iam.requests_for(
        "rekognition",
        "DetectModerationLabels",
        {"Image": {"S3Object": {"Bucket": "b", "Name": "in/a.jpg"}}},
        **WHERE,
    )
    assert [(r.action, r.resource) for r in named][1] == ("s3:GetObject", "arn:aws:s3:::b/in/a.jpg")


LIST_RESULTS = {
    "Sid": "ListResults",
    "Effect": "Allow",
    "Action": "s3:ListBucket",
    "Resource": "arn:aws:s3:::out",
    "Condition": {"StringLike": {"s3:prefix": ["results/*", "async/outputs/*"]}},
}
READ = {"Sid": "Read", "Effect": "Allow", "Action": ["s3:Get*"], "Resource": "arn:aws:s3:::out/results/*"}


@pytest.mark.parametrize(
    ("key", "allowed"),
    [("results/a/claim.json", True), ("async/outputs/x.out", True), ("garments/x.png", False), ("", False)],
)
def test_conditions_decide_a_listing(key, allowed):
    request = iam.missing_object_request("out", key, partition="aws")
    decision = iam.evaluate([LIST_RESULTS], request)
    assert decision.allowed is allowed and decision.statement == ("ListResults" if allowed else None)


def test_wildcards_in_actions_and_resources():
    assert iam.evaluate([READ], iam.Request("s3:GetObjectVersion", "arn:aws:s3:::out/results/a/b")).allowed
    assert iam.evaluate(
        [READ], iam.Request("S3:getobject", "arn:aws:s3:::out/results/x")
    ).allowed  # actions: any case
    assert not iam.evaluate([READ], iam.Request("s3:GetObject", "arn:aws:s3:::out/Results/x")).allowed
    assert not iam.evaluate([READ], iam.Request("s3:PutObject", "arn:aws:s3:::out/results/x")).allowed


def test_an_explicit_deny_wins():
    deny = {
        "Sid": "NoClaims",
        "Effect": "Deny",
        "Action": "s3:*",
        "Resource": "arn:aws:s3:::out/results/*/claim.json",
    }
    decision = iam.evaluate(
        [READ, deny], iam.Request("s3:GetObject", "arn:aws:s3:::out/results/a/claim.json")
    )
    assert decision == iam.Decision(False, "NoClaims")


def test_a_missing_condition_key_fails_unless_if_exists():
    like = {
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": "*",
        "Condition": {"StringLike": {"s3:prefix": "a*"}},
    }
    assert not iam.evaluate([like], iam.Request("s3:ListBucket", "arn:aws:s3:::b")).allowed
    if_exists = {**like, "Condition": {"StringLikeIfExists": {"s3:prefix": "a*"}}}
    assert iam.evaluate([if_exists], iam.Request("s3:ListBucket", "arn:aws:s3:::b")).allowed


def test_what_is_not_modelled_raises_instead_of_allowing():
    odd = {
        "Effect": "Allow",
        "Action": "s3:*",
        "Resource": "*",
        "Condition": {"IpAddress": {"aws:SourceIp": "1.2.3.4"}},
    }
    with pytest.raises(ValueError, match="IpAddress is not modelled"):
        iam.evaluate([odd], iam.Request("s3:GetObject", "arn:aws:s3:::b/k"))
    with pytest.raises(ValueError, match="NotAction"):
        iam.evaluate(
            [{"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}], iam.Request("s3:GetObject", "x")
        )
