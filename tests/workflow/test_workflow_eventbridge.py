"""The EventBridge rule of template.yaml: S3 "Object Created" for images under the input prefix only."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from tryon.local.template import SamTemplate

BUCKET = "tryon-input-bucket"


@pytest.fixture
def rule_to_queue(repo_root):
    template = SamTemplate(repo_root / "template.yaml")
    template.resources["InputBucket"] = {"Ref": BUCKET, "Arn": f"arn:aws:s3:::{BUCKET}"}
    pattern = template.event_pattern("TryOnStateMachine", "ImageUploaded")
    with mock_aws():
        s3, events, sqs = (boto3.client(s) for s in ("s3", "events", "sqs"))
        s3.create_bucket(Bucket=BUCKET)
        s3.create_bucket(Bucket="another-bucket")
        for bucket in (BUCKET, "another-bucket"):
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )
        queue_url = sqs.create_queue(QueueName="uploads")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events.put_rule(Name="image-uploaded", EventPattern=json.dumps(pattern), State="ENABLED")
        events.put_targets(Rule="image-uploaded", Targets=[{"Id": "q", "Arn": queue_arn}])

        def matched_keys(puts):
            for bucket, key in puts:
                s3.put_object(Bucket=bucket, Key=key, Body=b"x")
            keys = []
            while True:
                msgs = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
                if not msgs:
                    return sorted(keys)
                for msg in msgs:
                    body = json.loads(msg["Body"])
                    assert body["detail-type"] == "Object Created" and body["source"] == "aws.s3"
                    keys.append(body["detail"]["object"]["key"])
                    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=msg["ReceiptHandle"])

        yield matched_keys


def test_pattern_comes_from_the_template(repo_root):
    template = SamTemplate(repo_root / "template.yaml", {"InputPrefix": "uploads/"})
    pattern = template.event_pattern("TryOnStateMachine", "ImageUploaded")
    assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
    assert {"wildcard": "uploads/*.jpg"} in pattern["detail"]["object"]["key"]


def test_rule_matches_images_under_the_input_prefix_only(rule_to_queue):
    matched = rule_to_queue(
        [
            (BUCKET, "inputs/a.jpg"),
            (BUCKET, "inputs/shop/b.PNG"),
            (BUCKET, "inputs/c.webp"),
            (BUCKET, "inputs/d.jpeg"),
            (BUCKET, "inputs/notes.txt"),
            (BUCKET, "elsewhere/e.jpg"),
            (BUCKET, "inputs.jpg"),
            ("another-bucket", "inputs/f.jpg"),
        ]
    )
    assert matched == ["inputs/a.jpg", "inputs/c.webp", "inputs/d.jpeg", "inputs/shop/b.PNG"]
