"""S3 for the model handlers: objects a request names (the version it names), and the outputs it asks for.

Faults are classified where they happen:

- the client's (the object or version does not exist, access is denied, the URI is bad) ->
  :class:`tryon.core.errors.RequestError` naming the field and the URI (HTTP 400, not retried);
  so is a server without AWS credentials or region (a local one), which no retry would help;
- S3's own (throttling, 5xx, time-outs, connection faults) ->
  :class:`tryon.core.errors.DependencyUnavailable` (HTTP 503 locally; the workflow retries it).

Outputs are PNGs from :mod:`tryon.handlers.png_writer` (compressed in its threads) and each is
uploaded from a small thread pool as soon as its bytes are ready, so one image's upload overlaps
the next one's compression (``docs/endpoint-outputs.md#encoding``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from PIL import Image

from tryon.core import contract, imaging
from tryon.core.errors import DependencyUnavailable, RequestError
from tryon.core.s3uri import parse_versioned_s3_uri
from tryon.handlers.png_writer import PendingPNG, start_png

#: S3 error codes that mean the request named something it may not read or that is not there.
_CLIENT_CODES = frozenset(
    {
        "NoSuchKey",
        "NoSuchBucket",
        "NoSuchVersion",
        "NotFound",
        "404",
        "AccessDenied",
        "403",
        "AllAccessDisabled",
        "InvalidArgument",
        "InvalidBucketName",
        "InvalidObjectState",
        "InvalidRange",
        "400",
    }
)
#: Concurrent uploads of one answer's images.
MAX_UPLOADS = 4


def s3_client() -> Any:
    """A boto3 S3 client (``TRYON_S3_ENDPOINT_URL`` overrides the endpoint)."""
    import boto3

    return boto3.client("s3", endpoint_url=os.environ.get("TRYON_S3_ENDPOINT_URL") or None)


def classify(exc: Exception, *, field: str, uri: str, action: str) -> Exception:
    """The error to raise for an S3 fault: RequestError (the client's) or DependencyUnavailable."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        message = error.get("Message") or code
        if code in {"AccessDenied", "403", "AllAccessDisabled"}:
            return RequestError(field, f"{uri} could not be {action}: access denied (the endpoint's role)")
        if code in _CLIENT_CODES or (400 <= status < 500 and status not in (408, 429)):
            if code in {"NoSuchKey", "NoSuchVersion", "NotFound", "404"}:
                return RequestError(field, f"{uri} does not exist (or the version is gone)")
            if code == "NoSuchBucket":
                return RequestError(field, f"{uri}: the bucket does not exist")
            return RequestError(field, f"{uri} could not be {action}: {message}")
        return DependencyUnavailable(
            f"S3 failed while the {field} {uri} was {action} ({code or status}): {message}"
        )
    if isinstance(exc, NoCredentialsError | NoRegionError):  # no retry helps: the server's own setup
        lacking = "credentials" if isinstance(exc, NoCredentialsError) else "region"
        return RequestError(
            field,
            f"{uri} could not be {action}: the endpoint has no AWS {lacking} "
            "(a local server reads s3:// with the credentials and region of the shell that started it; "
            "send the image base64 instead)",
        )
    if isinstance(exc, BotoCoreError):
        return DependencyUnavailable(f"S3 could not be reached while the {field} {uri} was {action}: {exc}")
    return exc


def read_object(uri: str, *, field: str, max_bytes: int = imaging.DEFAULT_MAX_BYTES) -> bytes:
    """Bytes of ``s3://bucket/key[?versionId=V]`` (that version when named), at most ``max_bytes``."""
    bucket, key, version = parse_versioned_s3_uri(uri, field=field)
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version:
        kwargs["VersionId"] = version
    try:
        obj = s3_client().get_object(**kwargs)
        size = int(obj.get("ContentLength", 0))
        if size > max_bytes:
            obj["Body"].close()
            raise RequestError(field, f"is {size} bytes; the limit is {max_bytes} bytes")
        return obj["Body"].read()
    except RequestError:
        raise
    except Exception as exc:
        raise classify(exc, field=field, uri=uri, action="read") from exc


@dataclass(frozen=True)
class OutputTarget:
    """Where an endpoint writes its images: ``s3://bucket/<prefix><name>[-<i>|-<label>].png``."""

    bucket: str
    prefix: str
    name: str

    def key(self, index: int | str | None = None) -> str:
        """``<prefix><name>.png``, or ``<prefix><name>-<index>.png`` for one of several images.

        ``index`` may be a label (``depth``) for an image that goes with the others (a control image).
        """
        suffix = "" if index is None else f"-{index}"
        return f"{self.prefix}{self.name}{suffix}.png"


def output_target(contract_: contract.EndpointContract, payload: Mapping[str, Any]) -> OutputTarget | None:
    """The request's validated ``output``/``output_name``, or None when images come back base64."""
    parsed = contract.read_output(contract_, payload)
    return None if parsed is None else OutputTarget(*parsed)


def _put_png(client: Any, bucket: str, key: str, png: PendingPNG) -> dict[str, Any]:
    data = png.result()
    uri = f"s3://{bucket}/{key}"
    try:
        response = client.put_object(Bucket=bucket, Key=key, Body=data, ContentType="image/png")
    except Exception as exc:
        raise classify(exc, field="output", uri=uri, action="written") from exc
    written = {"uri": uri, "key": key, "bytes": len(data), "size": [png.width, png.height]}
    if response.get("VersionId"):
        written["version_id"] = response["VersionId"]
    return written


def write_pngs(
    target: OutputTarget, images: Sequence[Image.Image | PendingPNG], *, indexed: bool
) -> list[dict[str, Any]]:
    """Upload ``images`` as PNGs, each once compressed; one ``{"uri", "key", "bytes", "size"}`` each.

    An item is an image or a :class:`~tryon.handlers.png_writer.PendingPNG` already being compressed.
    """
    return _write(target, [target.key(i if indexed else None) for i in range(len(images))], images)


def write_labelled_pngs(
    target: OutputTarget, images: Mapping[str, Image.Image | PendingPNG]
) -> dict[str, dict[str, Any]]:
    """Upload each image as ``<prefix><name>-<label>.png``; label -> ``{"uri", "key", "bytes", "size"}``."""
    labels = list(images)
    written = _write(target, [target.key(label) for label in labels], [images[label] for label in labels])
    return dict(zip(labels, written, strict=True))


def _write(
    target: OutputTarget, keys: Sequence[str], images: Sequence[Image.Image | PendingPNG]
) -> list[dict[str, Any]]:
    """Upload ``images`` under ``keys``, in parallel when there are several."""
    if not images:
        return []
    pngs = [image if isinstance(image, PendingPNG) else start_png(image) for image in images]
    client = s3_client()
    if len(pngs) == 1:
        return [_put_png(client, target.bucket, keys[0], pngs[0])]
    try:
        with ThreadPoolExecutor(
            max_workers=min(len(pngs), MAX_UPLOADS), thread_name_prefix="tryon-upload"
        ) as pool:
            futures = [
                pool.submit(_put_png, client, target.bucket, k, png)
                for k, png in zip(keys, pngs, strict=True)
            ]
            return [f.result() for f in futures]
    finally:
        for png in pngs:  # after a failed upload nobody reads the rest
            png.cancel()
