"""Static checks of the SAM app: cfn-lint (raw and SAM-translated), sam validate, asl-validator, checkov.

The tools are expected where ``make tools`` / ``make venv`` put them; a missing tool fails the
test (it does not skip), so ``make test`` never passes without the checks.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import REPO, TEMPLATE
from support.sam import TRANSLATE

from tryon.local.template import SamTemplate, load_template
from tryon.workflow.step_errors import (
    MODERATION_TRANSIENT_ERRORS,
    NO_CAPACITY_RETRY,
    PERMANENT_ERRORS,
    TRANSIENT_ERRORS,
    no_capacity_wait_seconds,
)

BIN = Path(sys.executable).parent
CFN_LINT = BIN / "cfn-lint"
CHECKOV = BIN / "checkov"
SAM = REPO / ".venv-sam" / "bin" / "sam"
SAM_PYTHON = REPO / ".venv-sam" / "bin" / "python"
ASL_VALIDATOR = REPO / ".cache" / "node" / "node_modules" / ".bin" / "asl-validator"

ASL = REPO / "statemachine" / "tryon.asl.json"
ENV = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0", "BC_SKIP_MAPPING": "TRUE"}


def run_tool(tool: Path, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    assert tool.exists(), f"{tool} is missing: run `make tools` / `make venv`"
    return subprocess.run([str(tool), *args], capture_output=True, text=True, cwd=cwd, env=ENV, timeout=180)


def test_cfn_lint_template():
    out = run_tool(CFN_LINT, str(TEMPLATE))
    assert out.returncode == 0, out.stdout + out.stderr


def test_cfn_lint_sam_translated_template(tmp_path):
    translated = tmp_path / "translated.json"
    out = run_tool(SAM_PYTHON, "-c", TRANSLATE, str(TEMPLATE), str(translated))
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(translated.read_text())
    types = {r["Type"] for r in doc["Resources"].values()}
    assert {"AWS::Lambda::Function", "AWS::StepFunctions::StateMachine", "AWS::Events::Rule"} <= types
    lint = run_tool(CFN_LINT, str(translated))
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_sam_validate():
    out = run_tool(SAM, "validate", "--region", "us-east-1", "--template", str(TEMPLATE))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "is a valid SAM Template" in out.stdout + out.stderr


@pytest.mark.parametrize("asl", ["tryon.asl.json", "batch.asl.json"])
def test_asl_validator(tmp_path, asl):
    source = REPO / "statemachine" / asl
    text = source.read_text().replace("${Partition}", "aws")
    text = re.sub(r"\$\{(\w+)\}", r"arn:aws:lambda:us-east-1:123456789012:function:\1", text)
    path = tmp_path / asl
    path.write_text(text)
    out = run_tool(ASL_VALIDATOR, "--json-path", str(path))
    assert out.returncode == 0 and "is valid" in out.stdout, out.stdout + out.stderr


def test_checkov_passes_and_every_skip_is_justified():
    out = run_tool(
        CHECKOV,
        "-f",
        str(TEMPLATE),
        "--framework",
        "cloudformation",
        "--skip-download",
        "--quiet",
        "-o",
        "json",
    )
    report = json.loads(out.stdout[out.stdout.index("{") :])
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0 and out.returncode == 0, failed
    assert summary["passed"] > 20
    for name, res in load_template(TEMPLATE)["Resources"].items():
        for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert len(skip.get("comment", "")) > 30, f"{name}: skip {skip['id']} needs a justification"


def test_state_machine_contract():
    """Every Task: a timeout, transient-only retries with full jitter, Catch-all to the failure recorder."""
    asl = json.loads(ASL.read_text())
    template = load_template(TEMPLATE)
    subs = template["Resources"]["TryOnStateMachine"]["Properties"]["DefinitionSubstitutions"]
    assert set(re.findall(r"\$\{(\w+)\}", ASL.read_text())) == set(subs)
    states = asl["States"]
    for name, state in states.items():
        if state["Type"] != "Task":
            continue
        if state["Resource"].endswith(".waitForTaskToken"):  # an asynchronous endpoint's callback
            assert state["TimeoutSecondsPath"] and state["HeartbeatSecondsPath"], name
        else:
            assert 0 < state["TimeoutSeconds"] <= 900, name
        retried = [e for r in state["Retry"] for e in r["ErrorEquals"]]
        assert not set(retried) & set(PERMANENT_ERRORS) and "States.ALL" not in retried, name
        # full jitter everywhere but the wait for a copy of a component scaled to zero: jitter could
        # cut that wait to seconds, and it must outlast a cold start (NO_CAPACITY_RETRY)
        for retry in state["Retry"]:
            if retry["ErrorEquals"] == ["EndpointNoCapacity"]:
                assert {k: v for k, v in retry.items() if k != "ErrorEquals"} == NO_CAPACITY_RETRY, name
            else:
                assert retry["JitterStrategy"] == "FULL" and retry["BackoffRate"] > 1, name
        if name != "RecordFailure":
            assert state["Catch"] == [
                {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordFailure"}
            ]
    for name in ("Segment", "Inpaint", "Upscale"):
        assert set(TRANSIENT_ERRORS) <= {e for r in states[name]["Retry"] for e in r["ErrorEquals"]}
        assert ["EndpointNoCapacity"] in [r["ErrorEquals"] for r in states[name]["Retry"]], name
    assert no_capacity_wait_seconds() >= 3 * 300  # three times the 5 minutes AWS gives a cold start
    for name in ("ModerateInputs", "ModerateResults"):
        retried = {e for r in states[name]["Retry"] for e in r["ErrorEquals"]}
        assert set(MODERATION_TRANSIENT_ERRORS) <= retried and not set(TRANSIENT_ERRORS) & retried
    assert states["RecordFailure"]["Next"] == "RefusedOrFailed" and states["Failed"]["Type"] == "Fail"
    # a content refusal ends the execution as an outcome (status refused), every other error fails it
    assert states["RefusedOrFailed"]["Choices"] == [
        {"Variable": "$.failure.status", "StringEquals": "refused", "Next": "Refused"}
    ]
    assert states["RefusedOrFailed"]["Default"] == "Failed" and states["Refused"]["End"] is True
    # composed masks first (the Masks state), then an empty mask ends the job as no-garment-found
    assert [c["Next"] for c in states["MaskFound"]["Choices"]] == ["Masks", "NoGarmentFound"]


@pytest.mark.parametrize("resource", ["InputBucket", "OutputBucket"])
def test_buckets_are_private_encrypted_and_tls_only(resource):
    resources = load_template(TEMPLATE)["Resources"]
    props = resources[resource]["Properties"]
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    policy = next(
        r
        for r in resources.values()
        if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": resource}
    )
    statement = policy["Properties"]["PolicyDocument"]["Statement"][0]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}
    }
    if resource == "InputBucket":
        assert props["VersioningConfiguration"]["Status"] == "Enabled"
        assert props["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True


def _endpoint_statements(parameters: dict[str, str]) -> dict[str, dict]:
    """The endpoint role's policy statements by Sid, resolved for ``parameters``."""
    stack = SamTemplate(TEMPLATE, {"InpaintModelDataUrl": "s3://art/sd/model.tar.gz", **parameters})
    assert stack.condition_holds("CreateAnyEndpoint")
    role = stack.doc["Resources"]["EndpointExecutionRole"]["Properties"]
    statements = stack.resolve(role["Policies"][0]["PolicyDocument"]["Statement"])
    return {s["Sid"]: s for s in statements}


@pytest.mark.parametrize(
    ("parameters", "adapter_bucket_arn"),
    [
        ({}, "local-OutputBucket-Arn"),
        ({"AdapterBucket": "my-adapters", "AdapterPrefix": "lora/"}, "arn:aws:s3:::my-adapters"),
    ],
)
def test_endpoint_role_reads_requests_writes_results_and_reads_adapters_only(parameters, adapter_bucket_arn):
    prefix = parameters.get("AdapterPrefix", "adapters/")
    statements = _endpoint_statements(parameters)
    s3 = {
        sid: s for sid, s in statements.items() if any(str(a).startswith("s3:") for a in _list(s["Action"]))
    }
    assert set(s3) == {
        "ReadModelArtifacts",
        "ReadImagesNamedInRequests",
        "WritePendingImages",
        "ListAdapters",
        "ReadAdapters",
        "ListImagesNamedInRequests",
    }
    assert all(s["Effect"] == "Allow" for s in s3.values())
    assert _list(s3["ReadModelArtifacts"]["Resource"]) == ["arn:aws:s3:::art/sd/model.tar.gz"]
    read = s3["ReadImagesNamedInRequests"]
    assert sorted(_list(read["Action"])) == ["s3:GetObject", "s3:GetObjectVersion"]
    assert _list(read["Resource"]) == [
        "local-InputBucket-Arn/inputs/*",
        "local-InputBucket-Arn/garments/*",  # garment reference images (garment_image)
        "local-OutputBucket-Arn/pending/*",  # the mask and the inpainted images, before publishing
    ]
    # a missing image is a 404 ("does not exist"), not a 403: the read prefixes may be listed
    listing = s3["ListImagesNamedInRequests"]
    assert _list(listing["Action"]) == ["s3:ListBucket"]
    assert _list(listing["Resource"]) == ["local-InputBucket-Arn", "local-OutputBucket-Arn"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["inputs/*", "garments/*", "pending/*"]}}
    # The endpoints write under the pending prefix only: nothing reaches the results unchecked.
    write = s3["WritePendingImages"]
    assert _list(write["Action"]) == ["s3:PutObject"]
    assert _list(write["Resource"]) == ["local-OutputBucket-Arn/pending/*"]
    listing = s3["ListAdapters"]
    assert _list(listing["Action"]) == ["s3:ListBucket"] and _list(listing["Resource"]) == [
        adapter_bucket_arn
    ]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": f"{prefix}*"}}
    adapters = s3["ReadAdapters"]
    assert _list(adapters["Action"]) == ["s3:GetObject"]
    assert _list(adapters["Resource"]) == [f"{adapter_bucket_arn}/{prefix}*"]
    # Nothing may delete, and nothing but the pending prefix may be written.
    actions = {a for s in statements.values() for a in _list(s["Action"])}
    assert not {a for a in actions if "Delete" in a or a in {"s3:*", "*"}}


def _list(value: object) -> list:
    return value if isinstance(value, list) else [value]


def test_every_function_logs_to_a_log_group_with_the_stacks_retention():
    resources = load_template(TEMPLATE)["Resources"]
    functions = {n: r for n, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}
    assert len(functions) >= 6
    groups = set()
    for name, res in functions.items():
        logging = res["Properties"]["LoggingConfig"]
        assert logging["LogFormat"] == "JSON", name
        group = resources[logging["LogGroup"]["Ref"]]
        assert group["Type"] == "AWS::Logs::LogGroup", name
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
        groups.add(logging["LogGroup"]["Ref"])
    assert len(groups) == len(functions)  # one each


def test_versioned_buckets_are_retained_by_sam_delete():
    resources = load_template(TEMPLATE)["Resources"]
    for name in ("InputBucket", "OutputBucket"):
        assert resources[name]["DeletionPolicy"] == resources[name]["UpdateReplacePolicy"] == "Retain"


def test_upload_limits_cannot_exceed_what_the_handlers_accept():
    from tryon.core import imaging

    params = load_template(TEMPLATE)["Parameters"]
    assert (
        params["MaxInputBytes"]["MaxValue"] == imaging.DEFAULT_MAX_BYTES >= params["MaxInputBytes"]["Default"]
    )
    assert (
        params["MaxInputPixels"]["MaxValue"]
        == imaging.DEFAULT_MAX_PIXELS
        >= params["MaxInputPixels"]["Default"]
    )


def test_every_endpoint_container_gets_the_container_environment():
    """One model-server worker and no Hub access, as ``deploy-models`` sets (tryon.core.kinds)."""
    from tryon.core.kinds import CONTAINER_ENVIRONMENT

    resources = load_template(TEMPLATE)["Resources"]
    models = {name: r for name, r in resources.items() if r["Type"] == "AWS::SageMaker::Model"}
    assert len(models) == 3
    for name, model in models.items():
        env = model["Properties"]["PrimaryContainer"]["Environment"]
        assert CONTAINER_ENVIRONMENT.items() <= env.items(), name
