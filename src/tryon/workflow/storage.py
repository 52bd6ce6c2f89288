"""Small S3 helpers: bounded reads, writes with content types, existence checks."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from tryon.core.errors import RequestError
from tryon.workflow import clients

_MISSING_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchVersion", "NoSuchBucket"}


def is_missing(exc: ClientError) -> bool:
    """Whether a ClientError means the object (or bucket, or version) does not exist."""
    return exc.response.get("Error", {}).get("Code", "") in _MISSING_CODES


def head(bucket: str, key: str, version_id: str | None = None) -> dict[str, Any] | None:
    """HeadObject, or None if the object does not exist."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id:
        kwargs["VersionId"] = version_id
    try:
        return clients.client("s3").head_object(**kwargs)
    except ClientError as exc:
        if is_missing(exc):
            return None
        raise


def get_bytes(
    bucket: str,
    key: str,
    *,
    max_bytes: int,
    field: str,
    version_id: str | None = None,
    byte_range: tuple[int, int] | None = None,
) -> bytes:
    """An object's bytes (or a range of them), refusing anything larger than ``max_bytes``."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id:
        kwargs["VersionId"] = version_id
    if byte_range:
        kwargs["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
    try:
        obj = clients.client("s3").get_object(**kwargs)
    except ClientError as exc:
        if is_missing(exc):
            raise RequestError(field, f"s3://{bucket}/{key} does not exist") from exc
        raise
    length = obj.get("ContentLength", 0)
    if length > max_bytes:
        obj["Body"].close()
        raise RequestError(field, f"is {length} bytes; the limit is {max_bytes} bytes")
    return obj["Body"].read(max_bytes + 1)[: max_bytes + 1]


def put_bytes(bucket: str, key: str, data: bytes, content_type: str) -> None:
    """PutObject with a content type."""
    clients.client("s3").put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)


def put_json(bucket: str, key: str, document: Any) -> None:
    """PutObject of a JSON document (indented, UTF-8)."""
    put_bytes(bucket, key, json.dumps(document, indent=2, sort_keys=True).encode(), "application/json")


def get_json(bucket: str, key: str, *, max_bytes: int = 1024 * 1024) -> Any | None:
    """A JSON object's content, or None if it does not exist."""
    try:
        data = get_bytes(bucket, key, max_bytes=max_bytes, field=key)
    except RequestError:
        return None
    return json.loads(data)


def copy(bucket: str, source_key: str, dest_key: str) -> None:
    """CopyObject within a bucket (server side; content type and metadata kept).

    Idempotent for a step that is retried: a source already moved away is fine when the
    destination exists.
    """
    try:
        clients.client("s3").copy_object(
            Bucket=bucket, Key=dest_key, CopySource={"Bucket": bucket, "Key": source_key}
        )
    except ClientError as exc:
        if not is_missing(exc) or head(bucket, dest_key) is None:
            raise


def delete_all(bucket: str, keys: list[str]) -> None:
    """DeleteObject of each key (a missing key is no error: S3 answers 204 for it too)."""
    s3 = clients.client("s3")
    for key in keys:
        s3.delete_object(Bucket=bucket, Key=key)
