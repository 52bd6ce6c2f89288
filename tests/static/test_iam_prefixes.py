"""S3 prefixes in the IAM policies: every one comes from a template parameter (or the code's own layout
constant under it), and every prefix a principal reads it may also list, so a missing object is a
404 ("does not exist"), never S3's 403 for a key the caller may not list (issue 17 item 3).

The stack is resolved with prefixes unlike the defaults, so a prefix written into a policy by
hand (``inputs/`` instead of ``${InputPrefix}``) shows up as a default where none may be.
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

import pytest
from support.paths import TEMPLATE

from tryon.local.template import SamTemplate, load_template
from tryon.workflow import claim, layout

#: Prefix parameters set to values unlike their defaults.
PREFIXES = {
    "InputPrefix": "in-x/",
    "GarmentPrefix": "packshots-x/",
    "ResultsPrefix": "out-x/",
    "FailuresPrefix": "fail-x/",
    "AsyncPrefix": "asy-x/",
    "BatchPrefix": "cat-x/",
    "AdapterPrefix": "lora-x/",
}
#: Every endpoint created and asynchronous, so every conditional statement is present.
ALL_ENDPOINTS = {
    "ClipSegModelDataUrl": "s3://art/clipseg/model.tar.gz",
    "InpaintModelDataUrl": "s3://art/sd/model.tar.gz",
    "UpscaleModelDataUrl": "s3://art/up/model.tar.gz",
    "ClipSegMode": "async",
    "InpaintMode": "async",
    "UpscaleMode": "async",
}
STACK = SamTemplate(TEMPLATE, {**PREFIXES, **ALL_ENDPOINTS})
#: The stack's own buckets as the resolver names them (objects are "<bucket ARN>/<key>").
BUCKETS = ("local-InputBucket-Arn", "local-OutputBucket-Arn")
READS = {"s3:GetObject", "s3:GetObjectVersion"}


def _list(value: object) -> list:
    return value if isinstance(value, list) else [value]


def principals() -> dict[str, list[dict]]:
    """Every function's and the endpoint role's inline statements, resolved."""
    found = {}
    for name, res in STACK.resources_of_type("AWS::Serverless::Function").items():
        policies = STACK.resolve(res["Properties"].get("Policies", []))
        found[name] = [s for p in policies if isinstance(p, dict) for s in p.get("Statement", [])]
    role = STACK.resolve(STACK.doc["Resources"]["EndpointExecutionRole"]["Properties"])
    found["EndpointExecutionRole"] = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    return found


PRINCIPALS = principals()
DEFAULTS = {name: str(load_template(TEMPLATE)["Parameters"][name]["Default"]) for name in PREFIXES}


def _read_prefixes(statements: list[dict]) -> set[tuple[str, str]]:
    """(bucket, key pattern) of every object the principal may read in the stack's buckets."""
    found = set()
    for statement in statements:
        if statement["Effect"] == "Allow" and READS & set(_list(statement["Action"])):
            for resource in _list(statement["Resource"]):
                bucket, _, key = resource.partition("/")
                if bucket in BUCKETS:
                    found.add((bucket, key))
    return found


def _listable(statements: list[dict]) -> dict[str, list[str]]:
    """Bucket -> the s3:prefix patterns the principal may list there."""
    found: dict[str, list[str]] = {}
    for statement in statements:
        if statement["Effect"] == "Allow" and "s3:ListBucket" in _list(statement["Action"]):
            patterns = statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix", "*")
            for bucket in _list(statement["Resource"]):
                found.setdefault(bucket, []).extend(_list(patterns))
    return found


@pytest.mark.parametrize("principal", sorted(PRINCIPALS))
def test_every_prefix_a_principal_reads_it_may_list(principal):
    statements = PRINCIPALS[principal]
    listable = _listable(statements)
    for bucket, key_pattern in sorted(_read_prefixes(statements)):
        # a key the read grant covers: the pattern with each wildcard standing for a few characters
        sample = key_pattern.replace("*", "a/b")
        patterns = listable.get(bucket, [])
        assert any(fnmatchcase(sample, p) for p in patterns), (
            f"{principal} may read {bucket}/{key_pattern} but not list it (s3:ListBucket with s3:prefix "
            f"covering {key_pattern}; it may list {patterns}): a missing object there is a 403, not a 404"
        )


@pytest.mark.parametrize("principal", sorted(PRINCIPALS))
def test_no_default_prefix_is_written_into_a_policy(principal):
    text = repr(PRINCIPALS[principal])
    for name, default in DEFAULTS.items():
        # a key pattern starts right after the bucket ARN, an s3:prefix value at its quote
        assert f"Arn/{default}" not in text and f"'{default}" not in text, (
            f"{principal}'s policy names {default!r}, the default of {name}: use ${{{name}}}"
        )


def test_literal_parts_under_the_prefixes_are_the_codes_layout():
    """``${AsyncPrefix}requests/`` etc.: what follows a prefix parameter is the code's own constant."""
    text = TEMPLATE.read_text()
    allowed = {
        "AsyncPrefix": {layout.ASYNC_REQUESTS, layout.ASYNC_OUTPUTS, layout.ASYNC_ERRORS},
        "ResultsPrefix": {"*/" + claim.CLAIM, layout.BATCH_REPORTS, layout.BATCH_REPORTS + layout.MAP_RUNS},
    }
    for name, parts in allowed.items():
        for literal in re.findall(r"\$\{" + name + r"\}([A-Za-z0-9_./-]+)", text):
            literal = literal.rstrip("*")
            assert {literal, literal.rstrip("/"), literal.rstrip("/") + "/"} & parts, (
                f"template.yaml writes ${{{name}}}{literal}; the code's layout has {sorted(parts)}"
            )
