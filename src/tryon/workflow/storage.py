"""Small S3 helpers: bounded reads, writes with content types, existence checks.

A missing object is a 404 only for a caller that may list the object's prefix (``s3:ListBucket``);
without that permission S3 answers 403 ``AccessDenied``, exactly as for an object the caller may
not read. Every read here turns a 404 into :class:`ObjectMissing` and a 403 into
:class:`ObjectNotReadable`, a message that names the object and both permissions, never a raw
``ClientError`` (the functions' policies grant ``s3:ListBucket`` on every prefix they read, so on
a correct deployment a missing object is reported as missing).
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from tryon.core.errors import RequestError
from tryon.workflow import clients

_MISSING_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchVersion", "NoSuchBucket"}
_FORBIDDEN_CODES = {"403", "AccessDenied", "Forbidden", "AllAccessDisabled"}


class ObjectMissing(RequestError):
    """The object (or its version) does not exist."""


class ObjectNotReadable(RequestError):
    """S3 answered 403: the object is missing and its prefix may not be listed, or it may not be read."""


def is_missing(exc: ClientError) -> bool:
    """Whether a ClientError means the object (or bucket, or version) does not exist."""
    return exc.response.get("Error", {}).get("Code", "") in _MISSING_CODES


def is_forbidden(exc: ClientError) -> bool:
    """Whether a ClientError is S3's 403 (access denied, or a missing key the caller may not list)."""
    error = exc.response.get("Error", {}).get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error in _FORBIDDEN_CODES or status == 403


def not_readable(bucket: str, key: str, field: str) -> ObjectNotReadable:
    """The error for a 403 on a read: the object, and the two permissions that decide it."""
    return ObjectNotReadable(
        field,
        f"s3://{bucket}/{key} does not exist or may not be read: S3 answers 403 AccessDenied for an "
        f"object outside the function's s3:GetObject grant, and for a missing one when the function "
        f"may not list its prefix (s3:ListBucket on arn:aws:s3:::{bucket} with s3:prefix {key})",
    )


def head(
    bucket: str, key: str, version_id: str | None = None, *, field: str = "object"
) -> dict[str, Any] | None:
    """HeadObject, or None if the object does not exist (:class:`ObjectNotReadable` on a 403)."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id:
        kwargs["VersionId"] = version_id
    try:
        return clients.client("s3").head_object(**kwargs)
    except ClientError as exc:
        if is_missing(exc):
            return None
        if is_forbidden(exc):
            raise not_readable(bucket, key, field) from exc
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
            raise ObjectMissing(field, f"s3://{bucket}/{key} does not exist") from exc
        if is_forbidden(exc):
            raise not_readable(bucket, key, field) from exc
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
    """A JSON object's content, or None if it does not exist or is too large (a 403 raises)."""
    try:
        data = get_bytes(bucket, key, max_bytes=max_bytes, field=key)
    except ObjectNotReadable:
        raise  # not "missing": the function may not see it, and must say so
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
