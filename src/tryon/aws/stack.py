"""Talk to a deployed try-on stack: find it, upload a photo, find and follow its execution.

Light (boto3 only). ``tryon submit``, ``tryon status`` and ``tryon results`` are thin
commands over these functions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from tryon.core import imaging
from tryon.core.errors import RequestError
from tryon.core.s3uri import is_s3_uri, parse_s3_uri

#: Outputs of template.yaml that the CLI relies on.
REQUIRED_OUTPUTS = ("InputBucketName", "OutputBucketName", "InputPrefix", "StateMachineArn")


@dataclass(frozen=True)
class Stack:
    """Where a deployed stack keeps things (from its CloudFormation outputs)."""

    name: str
    input_bucket: str
    output_bucket: str
    input_prefix: str
    state_machine_arn: str
    results_prefix: str = "results/"
    failures_prefix: str = "failures/"
    garment_prefix: str | None = None  # where garment packshots go (None: a stack without the output)
    mask_prefix: str | None = None  # where painted masks go (None: a stack deployed before mask modes)


@dataclass(frozen=True)
class Upload:
    """A photo put into the input bucket."""

    bucket: str
    key: str
    version_id: str | None
    uploaded_at: datetime


def find_stack(cfn: Any, name: str) -> Stack:
    """The stack's buckets, prefixes and state machine; RequestError if it is missing or not ours."""
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            region = cfn.meta.region_name
            raise RequestError("--stack", f"no stack named {name!r} in {region}") from None
        raise
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    missing = [key for key in REQUIRED_OUTPUTS if key not in outputs]
    if missing:
        raise RequestError(
            "--stack", f"stack {name!r} has no output(s) {', '.join(missing)}; is it a tryon stack?"
        )
    return Stack(
        name=name,
        input_bucket=outputs["InputBucketName"],
        output_bucket=outputs["OutputBucketName"],
        input_prefix=outputs["InputPrefix"],
        state_machine_arn=outputs["StateMachineArn"],
        results_prefix=outputs.get("ResultsPrefix", "results/"),
        failures_prefix=outputs.get("FailuresPrefix", "failures/"),
        garment_prefix=outputs.get("GarmentPrefix"),
        mask_prefix=outputs.get("MaskPrefix"),
    )


#: Content-Type of each image format uploads are stored with.
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


def _put_image(s3: Any, bucket: str, key: str, path: Path, field: str, metadata: Mapping[str, str]) -> Upload:
    """Put an image file (its header checked first) at ``s3://bucket/key``; never overwrites the file."""
    if not path.is_file():
        raise RequestError(field, f"{path} is not a file")
    data = path.read_bytes()
    header = imaging.read_header(data, field=field)
    started = datetime.now(UTC)
    response = s3.put_object(
        Bucket=bucket, Key=key, Body=data, ContentType=CONTENT_TYPES[header.format], Metadata=dict(metadata)
    )
    return Upload(bucket, key, response.get("VersionId"), started)


def upload_photo(
    s3: Any, stack: Stack, photo: Path, *, name: str | None = None, metadata: Mapping[str, str] | None = None
) -> Upload:
    """Check the photo locally (as Prepare will) and put it under the stack's input prefix."""
    key = f"{stack.input_prefix}{name or photo.name}"
    return _put_image(s3, stack.input_bucket, key, photo, "IMAGE", metadata or {})


def _check_prefixes(stack: Stack, kinds: set[str]) -> None:
    """Refuse files of a kind the stack has no prefix for (a stack deployed before them)."""
    if "garment" in kinds and stack.garment_prefix is None:
        raise RequestError(
            "--garment",
            f"stack {stack.name!r} has no output GarmentPrefix (deployed before garment images): "
            "update it with sam deploy",
        )
    if "mask" in kinds and stack.mask_prefix is None:
        raise RequestError(
            "--mask-mode",
            f"stack {stack.name!r} has no output MaskPrefix (deployed before painted masks): "
            "update it with sam deploy",
        )


def upload_garment(s3: Any, stack: Stack, packshot: Path) -> Upload:
    """Put a garment's packshot under the stack's garment prefix (a job names it by ``garment_image``)."""
    _check_prefixes(stack, {"garment"})
    key = f"{stack.garment_prefix}{packshot.name}"
    return _put_image(s3, stack.input_bucket, key, packshot, "--garment", {})


def upload_job(
    s3: Any,
    stack: Stack,
    photo: Path,
    *,
    overrides: Mapping[str, Any],
    preset: str | None = None,
    files: Sequence[Any] = (),
    name: str | None = None,
) -> tuple[Upload, dict[str, str]]:
    """What ``tryon submit`` (and ``tryon eval --stack``, the studio) uploads to start one job:
    each file the job names first (packshots, painted masks), then the photo with the job's
    parameters as its metadata, naming those very versions. ``files``: each with ``override``,
    ``path`` and ``kind`` (``garment`` or ``mask``: :class:`tryon.cli.garment_specs.Upload`).
    Returns the photo's upload and each file's URI by the override it fills."""
    from tryon.core.s3uri import s3_uri
    from tryon.workflow import params

    _check_prefixes(stack, {item.kind for item in files})  # before anything is uploaded
    uris: dict[str, str] = {}
    for item in files:
        put = upload_garment if item.kind == "garment" else upload_mask
        done = put(s3, stack, item.path)
        uris[item.override] = s3_uri(done.bucket, done.key, done.version_id)
    metadata = params.to_metadata({**overrides, **uris}, preset)
    return upload_photo(s3, stack, photo, name=name, metadata=metadata), uris


def download_results(s3: Any, artifact_uri: str | None, out_dir: Path) -> list[Path]:
    """Everything an execution wrote (its result prefix, or its failure record) into ``out_dir``."""
    if artifact_uri is None:
        return []
    bucket, keys = result_keys(s3, artifact_uri)
    return download(s3, bucket, keys, out_dir)


def upload_mask(s3: Any, stack: Stack, mask: Path) -> Upload:
    """Put a painted mask under the stack's mask prefix (a job names it by ``mask_image``)."""
    _check_prefixes(stack, {"mask"})
    return _put_image(s3, stack.input_bucket, f"{stack.mask_prefix}{mask.name}", mask, "--mask-mode", {})


def _execution_object(sfn: Any, execution_arn: str) -> tuple[str, str] | None:
    """(bucket, key) an execution was started for, from its input (S3 event or console input)."""
    from tryon.core import aws_events  # Powertools: the workflow's dependency, imported where used

    raw = sfn.describe_execution(executionArn=execution_arn).get("input") or "{}"
    event = json.loads(raw)
    if aws_events.is_s3_event(event):
        try:
            created = aws_events.object_created(event)
        except RequestError:
            return None
        return created.bucket, created.key
    if is_s3_uri(event.get("image")):
        return parse_s3_uri(event["image"], field="image")
    return None


def find_execution(
    sfn: Any, stack: Stack, upload: Upload, *, timeout_seconds: float = 120.0, poll_seconds: float = 2.0
) -> str:
    """The execution EventBridge started for ``upload``; TimeoutError if none appears in time."""
    deadline = time.monotonic() + timeout_seconds
    not_before = upload.uploaded_at - timedelta(minutes=1)
    checked: set[str] = set()
    while True:
        pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=stack.state_machine_arn)
        for page in pages:
            recent = [e for e in page["executions"] if e["startDate"] >= not_before]
            for execution in recent:
                arn = execution["executionArn"]
                if arn in checked:
                    continue
                checked.add(arn)
                if _execution_object(sfn, arn) == (upload.bucket, upload.key):
                    return arn
            if len(recent) < len(page["executions"]):
                break  # executions are listed newest first
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"no execution started for s3://{upload.bucket}/{upload.key} within {timeout_seconds:.0f} s; "
                "check the EventBridge rule and the event dead-letter queue"
            )
        time.sleep(poll_seconds)


def resolve_execution(sfn: Any, stack: Stack, ref: str) -> str:
    """An execution ARN from an ARN, an execution name, or a job id (searched in execution outputs)."""
    if ref.startswith("arn:"):
        return ref
    prefix = stack.state_machine_arn.replace(":stateMachine:", ":execution:")
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=stack.state_machine_arn):
        for execution in page["executions"]:
            if execution["name"] == ref:
                return execution["executionArn"]
            output = sfn.describe_execution(executionArn=execution["executionArn"]).get("output")
            if output and json.loads(output).get("job_id") == ref:
                return execution["executionArn"]
    raise RequestError("EXECUTION", f"no execution or job {ref!r} in {prefix.rsplit(':', 1)[0]}")


def result_keys(s3: Any, artifact_uri: str) -> tuple[str, list[str]]:
    """(bucket, keys) of everything an execution wrote: its result prefix, or its failure record."""
    bucket, key = parse_s3_uri(artifact_uri, field="artifact")
    prefix = key.rsplit("/", 1)[0] + "/" if key.endswith("/manifest.json") else key
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return bucket, keys


def download(s3: Any, bucket: str, keys: list[str], out_dir: Path) -> list[Path]:
    """Download ``keys`` into ``out_dir`` (flat: the last path component), return the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for key in keys:
        target = out_dir / key.rsplit("/", 1)[-1]
        s3.download_file(bucket, key, str(target))
        files.append(target)
    return files
