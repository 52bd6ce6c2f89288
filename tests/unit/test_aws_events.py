"""The S3 "Object Created" event and SNS records, read with Powertools' event classes (aws_events)."""

from __future__ import annotations

import json
import re

import pytest
from support.paths import REPO

from tryon.core import aws_events
from tryon.core.errors import RequestError


def _event(**object_fields):
    obj = {"key": "inputs/look 1.png", "size": 1234, "etag": "abc", "sequencer": "0A", **object_fields}
    return {
        "version": "0",
        "id": "e1",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-11-22T00:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:s3:::in"],
        "detail": {"version": "0", "bucket": {"name": "in"}, "object": obj, "reason": "PutObject"},
    }


def test_an_object_created_event_names_its_object():
    created = aws_events.object_created(_event(**{"version-id": "v1"}))
    assert created == aws_events.ObjectCreated("in", "inputs/look 1.png", "v1", 1234, "abc")
    assert aws_events.object_created(_event()).version_id is None  # an unversioned bucket's object
    # the key as S3 sent it: Prepare tries its URL-decoded form itself (notifications encode keys)
    assert aws_events.object_created(_event(key="inputs/look+1.png")).key == "inputs/look+1.png"
    assert aws_events.is_s3_event(_event()) and not aws_events.is_s3_event({"image": "s3://in/inputs/a.png"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"detail-type": "Object Deleted"}, "detail-type: must be 'Object Created', got 'Object Deleted'"),
        ({"detail": {"bucket": {"name": "in"}}}, "detail.object: must be a JSON object"),
        ({"detail": {"object": {"key": "k"}}}, "detail.bucket: must be a JSON object"),
        ({"detail": {"bucket": {"name": "in"}, "object": {"size": 1}}}, "key: is required"),
        ({"detail": {"bucket": {"name": "in"}, "object": {"key": ""}}}, "key: must not be empty"),
    ],
)
def test_a_malformed_event_is_refused_naming_the_field(change, message):
    with pytest.raises(RequestError, match="^" + re.escape(message)):
        aws_events.object_created({**_event(), **change})


def test_sns_records_give_their_messages_in_order():
    records = [
        {"EventSource": "aws:sns", "Sns": {"Message": json.dumps({"n": n}), "Type": "Notification"}}
        for n in (1, 2)
    ]
    assert [json.loads(m)["n"] for m in aws_events.sns_messages({"Records": records})] == [1, 2]
    assert list(aws_events.sns_messages({"Records": []})) == []


#: Reading an S3 event or an SNS record by hand, or logging without Powertools' Logger.
_BY_HAND = re.compile(
    r'\["Sns"\]|\["detail"\]\["(object|bucket)"\]|"detail-type"\) !=|\bprint\(|logging\.getLogger'
)


def test_the_lambda_code_reads_events_and_logs_only_through_powertools():
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for root in ("functions", "src/tryon/core", "src/tryon/workflow")
        for path in sorted((REPO / root).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if _BY_HAND.search(line)
    ]
    assert not found, "use tryon.core.aws_events / tryon.workflow.entry:\n" + "\n".join(found)
