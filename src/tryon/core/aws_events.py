"""The AWS events the workflow is started by and listens to, read with Powertools' event classes (light).

- S3's EventBridge "Object Created" event (an upload under the input or batch prefix starts
  an execution): :func:`object_created`, through Powertools' ``S3EventBridgeNotificationEvent``.
- The SNS records of the asynchronous endpoints' notifications (CompleteAsync):
  :func:`sns_messages`, through Powertools' ``SNSEvent``.

Each turns a malformed event into :class:`tryon.core.errors.RequestError` naming the field,
never a ``KeyError``. The S3 event's object key is kept as S3 sent it (the EventBridge event
does not URL-encode it; Prepare also tries the decoded form for notifications that do).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent, SNSEvent

from tryon.core import validation
from tryon.core.errors import RequestError

#: ``source`` and ``detail-type`` of S3's EventBridge event for a new object.
S3_SOURCE = "aws.s3"
OBJECT_CREATED = "Object Created"


@dataclass(frozen=True)
class ObjectCreated:
    """The object an "Object Created" event names (its version: None in an unversioned bucket)."""

    bucket: str
    key: str
    version_id: str | None
    size: int | None = None
    etag: str = ""


def is_s3_event(event: Any) -> bool:
    """Whether ``event`` is an S3 event delivered by EventBridge (``source`` ``aws.s3`` with a ``detail``)."""
    return isinstance(event, Mapping) and event.get("source") == S3_SOURCE and "detail" in event


def object_created(event: Mapping[str, Any]) -> ObjectCreated:
    """The object of an EventBridge S3 "Object Created" event; RequestError naming the bad field."""
    s3_event = S3EventBridgeNotificationEvent(dict(event))
    detail_type = s3_event.detail_type if "detail-type" in s3_event else None
    if detail_type != OBJECT_CREATED:
        raise RequestError("detail-type", f"must be {OBJECT_CREATED!r}, got {detail_type!r}")
    detail = validation.require_mapping(s3_event.get("detail"), field="detail")
    bucket = validation.require_mapping(detail.get("bucket"), field="detail.bucket")
    obj = validation.require_mapping(detail.get("object"), field="detail.object")
    validation.get_str(bucket, "name")
    validation.get_str(obj, "key", max_length=1024, allow_empty=False)
    validation.get_str(obj, "version-id", None, max_length=1024)
    # checked: the event classes' typed view of it
    typed = s3_event.detail
    size = obj.get("size")
    return ObjectCreated(
        bucket=typed.bucket.name,
        key=typed.object["key"],  # as sent (the class's .key URL-decodes it)
        version_id=typed.object.get("version-id") or None,
        size=size if isinstance(size, int) else None,
        etag=typed.object.etag,
    )


def sns_messages(event: Mapping[str, Any]) -> Iterator[str]:
    """The message of each record of an SNS event delivered to a Lambda function, in order."""
    for record in SNSEvent(dict(event)).records:
        yield record.sns.message
