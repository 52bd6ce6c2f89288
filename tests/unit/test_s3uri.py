"""One S3 URI / object-version helper (tryon.core.s3uri), and nobody else splitting URIs by hand."""

from __future__ import annotations

import re

import pytest
from support.paths import REPO

from tryon.core import imaging, s3uri
from tryon.core.errors import RequestError
from tryon.workflow import layout


def test_object_uris_round_trip_with_and_without_a_version():
    assert s3uri.s3_uri("b", "inputs/p.png") == "s3://b/inputs/p.png"
    assert s3uri.s3_uri("b", "inputs/p.png", "v1") == "s3://b/inputs/p.png?versionId=v1"
    # S3's "null" version (an unversioned bucket) is no version
    assert s3uri.s3_uri("b", "k", "null") == s3uri.s3_uri("b", "k", "") == "s3://b/k"
    assert s3uri.parse_versioned_s3_uri("s3://b/a/k.png?versionId=v1", field="image") == (
        "b",
        "a/k.png",
        "v1",
    )
    assert s3uri.parse_versioned_s3_uri("s3://b/a/k.png", field="image") == ("b", "a/k.png", None)
    assert s3uri.parse_s3_uri("s3://b/k/e.png", field="x") == ("b", "k/e.png")
    assert [s3uri.version_or_none(v) for v in (None, "", "null", "3HL4kqtJ")] == [
        None,
        None,
        None,
        "3HL4kqtJ",
    ]


@pytest.mark.parametrize("uri", ["s3://bucket-only", "s3:///key", "https://b/k", "b/k", None, 3])
def test_malformed_uris_are_refused_naming_the_field(uri):
    with pytest.raises(RequestError, match=r"^image: must be an s3://bucket/key URI"):
        s3uri.parse_versioned_s3_uri(uri, field="image")


def test_prefixes_and_keys():
    assert s3uri.parse_s3_prefix("s3://b/", field="output_path") == ("b", "")
    assert s3uri.parse_s3_prefix("s3://b/adapters/a/", field="output_path") == ("b", "adapters/a/")
    with pytest.raises(RequestError, match=r"^output_path: must be an s3://bucket/prefix/ URI"):
        s3uri.parse_s3_prefix("b/adapters/", field="output_path")
    assert s3uri.bucket_and_key("s3://b/k", "out") == ("b", "k")
    assert s3uri.bucket_and_key("results/x/manifest.json", "out") == ("out", "results/x/manifest.json")
    assert s3uri.is_s3_uri("s3://b/k") and not s3uri.is_s3_uri(b"s3://b/k")


def test_the_old_names_are_the_helper():
    assert imaging.parse_s3_uri is s3uri.parse_s3_uri and layout.s3_uri is s3uri.s3_uri


#: What splitting an S3 URI or normalising the "null" version by hand looks like.
_BY_HAND = re.compile(r'\[5:\]|\[len\("s3://"\)|removeprefix\("s3://"\)|in \(None, "null"\)|[!=]= "null"')


def test_no_module_splits_s3_uris_or_normalises_versions_by_hand():
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for root in ("src/tryon", "functions")
        for path in sorted((REPO / root).rglob("*.py"))
        if path.name != "s3uri.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if _BY_HAND.search(line)
    ]
    assert not found, "use tryon.core.s3uri instead:\n" + "\n".join(found)
