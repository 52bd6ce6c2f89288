"""S3 URIs and object versions: one parser, one formatter, one rule for the "null" version (light).

Images travel as ``s3://bucket/key``, pinned to one object version as
``s3://bucket/key?versionId=V``; outputs, adapters and training data are named by prefix
(``s3://bucket/prefix/``). S3 reports the version of an object in an unversioned bucket as
``"null"`` (HeadObject's ``VersionId``, the EventBridge event's ``version-id``): that is no
version, and :func:`version_or_none` says so in one place. Standard library only.
"""

from __future__ import annotations

import re
from typing import Any

from tryon.core.errors import RequestError

SCHEME = "s3://"
#: ``?versionId=...`` at the end of an object URI names one version of the object.
_VERSION_SUFFIX = re.compile(r"\?versionId=([A-Za-z0-9._+=-]{1,1024})$")


def is_s3_uri(value: Any) -> bool:
    """Whether ``value`` is a string starting with ``s3://``."""
    return isinstance(value, str) and value.startswith(SCHEME)


def version_or_none(version_id: Any) -> str | None:
    """An object version id, or None for none: S3 says ``"null"`` for unversioned objects."""
    return None if version_id in (None, "", "null") else str(version_id)


def s3_uri(bucket: str, key: str, version_id: str | None = None) -> str:
    """``s3://bucket/key``, with ``?versionId=V`` when a version is named (what endpoints read)."""
    uri = f"{SCHEME}{bucket}/{key}"
    version = version_or_none(version_id)
    return f"{uri}?versionId={version}" if version else uri


def _split(uri: Any) -> tuple[str, str]:
    """(bucket, rest) of an ``s3://`` URI; ("", "") when it is not one."""
    if not is_s3_uri(uri):
        return "", ""
    bucket, _, rest = uri[len(SCHEME) :].partition("/")
    return bucket, rest


def parse_s3_uri(uri: Any, *, field: str) -> tuple[str, str]:
    """(bucket, key) of ``s3://bucket/key``; RequestError naming ``field`` if malformed."""
    bucket, key = _split(uri)
    if not bucket or not key:
        raise RequestError(field, f"must be an s3://bucket/key URI, got {uri!r}")
    return bucket, key


def parse_versioned_s3_uri(uri: Any, *, field: str) -> tuple[str, str, str | None]:
    """(bucket, key, version id or None) of ``s3://bucket/key`` or ``s3://bucket/key?versionId=V``."""
    version = None
    if isinstance(uri, str) and (match := _VERSION_SUFFIX.search(uri)):
        uri, version = uri[: match.start()], match.group(1)
    bucket, key = parse_s3_uri(uri, field=field)
    return bucket, key, version


def parse_s3_prefix(uri: Any, *, field: str, what: str = "s3://bucket/prefix/") -> tuple[str, str]:
    """(bucket, prefix) of ``s3://bucket/`` or ``s3://bucket/prefix/`` (the prefix may be empty)."""
    bucket, prefix = _split(uri)
    if not bucket:
        raise RequestError(field, f"must be an {what} URI, got {uri!r}")
    return bucket, prefix


def bucket_and_key(uri_or_key: str, default_bucket: str) -> tuple[str, str]:
    """(bucket, key) of an ``s3://`` URI, or of a plain key in ``default_bucket``."""
    if is_s3_uri(uri_or_key):
        return _split(uri_or_key)
    return default_bucket, uri_or_key
