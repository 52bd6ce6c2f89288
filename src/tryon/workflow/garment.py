"""A job's garment reference image: where it may live, Prepare's checks, and its preview panel (light).

A job names its garment's packshot with the ``garment_image`` parameter (an ``s3://`` URI,
``?versionId=`` allowed): in the console input, as ``x-amz-meta-garment-image`` on the
upload, or as a batch column. It must lie in the input bucket under the garment prefix
(``TRYON_GARMENT_PREFIX``, template parameter ``GarmentPrefix``, default ``garments/``; not
under the input prefix, where an upload would start a try-on of the packshot itself).
Prepare checks it like the photo (exists, size, header, full decode) and pins the version
it read, so the endpoint conditions on exactly that object; nothing ever writes to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from tryon.core.errors import RequestError
from tryon.core.s3uri import parse_versioned_s3_uri, s3_uri, version_or_none
from tryon.workflow import storage
from tryon.workflow.settings import IMAGE_SUFFIXES, Settings
from tryon.workflow.state import JobGarment

if TYPE_CHECKING:  # Pillow is imported only where images are decoded (not every function has it)
    from PIL import Image

    from tryon.core.imaging import ImageHeader

FIELD = "garment_image"
#: Reads and checks one image object: ``(settings, bucket, key, head, field) -> header``.
Inspect = Callable[[Settings, str, str, Mapping[str, Any], str], "ImageHeader"]


def check(settings: Settings, uri: str, inspect: Inspect) -> JobGarment:
    """The garment image ``uri`` names, validated and pinned to the version read (RequestError if not)."""
    bucket, key, version = parse_versioned_s3_uri(uri, field=FIELD)
    where = s3_uri(settings.input_bucket, settings.garment_prefix)
    if bucket != settings.input_bucket or not key.startswith(settings.garment_prefix):
        raise RequestError(FIELD, f"{uri} is not under {where} (garment images live there)")
    if not key.lower().endswith(IMAGE_SUFFIXES):
        raise RequestError(FIELD, f"{uri} must end with one of {', '.join(IMAGE_SUFFIXES)}")
    head = storage.head(bucket, key, version, field=FIELD)
    if head is None:
        raise RequestError(FIELD, f"{uri} does not exist (or the version is gone)")
    header = inspect(settings, bucket, key, head, FIELD)
    read = version_or_none(head.get("VersionId"))
    return {
        "bucket": bucket,
        "key": key,
        "version_id": read,
        "uri": s3_uri(bucket, key, read),
        "size": int(head.get("ContentLength", 0)),
        "image": asdict(header),
    }


def read_image(garment: JobGarment, settings: Settings) -> Image.Image:
    """The garment image as Prepare checked it (that version), decoded for the preview."""
    from tryon.core import imaging

    data = storage.get_bytes(
        garment["bucket"],
        garment["key"],
        max_bytes=settings.max_input_bytes,
        field=FIELD,
        version_id=garment["version_id"],
    )
    return imaging.decode_image(
        data, field=FIELD, max_bytes=settings.max_input_bytes, max_pixels=settings.max_input_pixels
    )
