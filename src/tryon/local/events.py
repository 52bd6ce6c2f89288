"""The events AWS sends, built for objects in the local buckets (moto's own differ in details)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any


def s3_object_created(s3: Any, bucket: str, key: str, *, account: str, region: str) -> dict[str, Any]:
    """The EventBridge "Object Created" event S3 sends for an existing object."""
    head = s3.head_object(Bucket=bucket, Key=key)
    obj: dict[str, Any] = {
        "key": key,
        "size": head["ContentLength"],
        "etag": head["ETag"].strip('"'),
        "sequencer": f"{time.time_ns():X}",
    }
    if head.get("VersionId"):
        obj["version-id"] = head["VersionId"]
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": account,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": obj,
            "request-id": uuid.uuid4().hex[:16].upper(),
            "requester": account,
            "source-ip-address": "127.0.0.1",
            "reason": "PutObject",
        },
    }
