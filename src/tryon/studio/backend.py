"""What the studio page does, on a stack: the code path of ``tryon submit``/``status``/``results``.

A :class:`StackBackend` talks to one try-on stack through boto3 clients: a deployed stack with
the user's own credentials (``tryon studio --stack NAME``), or the local stack that
``tryon run`` uses (:func:`tryon.studio.local_stack.open_local`), published on moto under a stack name
so that both back ends are this one class. It reads and writes only under the stack's
documented prefixes (its outputs: input, garment, mask, batch prefixes in the input bucket;
results, failures and batch reports in the output bucket; the adapter prefix).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tryon.aws import stack as stacks
from tryon.aws.executions import ExecutionResult, StateEvent, failure_summary, follow_execution
from tryon.core.errors import RequestError
from tryon.core.s3uri import parse_s3_uri, s3_uri

#: Outputs the batch tabs need (a stack deployed before batches lacks them).
BATCH_OUTPUTS = ("BatchStateMachineArn", "BatchPrefix", "BatchReportsPrefix")


@dataclass(frozen=True)
class FileUpload:
    """A local file a job names (a packshot, a painted mask): uploaded first, its URI then ``override``."""

    override: str  # garment_image, upper-body.mask_image, ...
    path: Path
    kind: str  # garment | mask
    option: str  # what the page calls it, for errors


@dataclass
class JobRequest:
    """One try-on as the page describes it: the photo, the job overrides, the files it names."""

    photo: Path
    overrides: dict[str, Any]
    uploads: list[FileUpload] = field(default_factory=list)
    preset: str | None = None


@dataclass
class RunOutcome:
    """How a job ended: the execution, the files it wrote (downloaded), the error in words."""

    result: ExecutionResult
    files: list[Path]
    error: str | None  # "Segment: ..." as ``tryon run`` prints it after ``error:``; None on success


def check_job(request: JobRequest) -> None:
    """Everything Prepare checks before anything uploads: the photo and each file (format, size,
    decoding, the name's suffix), every value, the preset, each garment's mask mode, the outfit,
    the content policy (:func:`tryon.local.runner.check_parameters`, as ``tryon submit``)."""
    from tryon.local.runner import check_parameters, check_photo

    check_photo(request.photo, field="photo")
    for item in request.uploads:
        check_photo(item.path, field=item.option)
    check_parameters(request.overrides, request.preset, uploads=request.uploads)


class StackBackend:
    """One try-on stack, reached through ``client(service)`` (a boto3 session's, or the local moto's)."""

    def __init__(
        self,
        client: Callable[[str], Any],
        stack_name: str,
        *,
        label: str,
        local_adapters: Sequence[str] = (),
        local: bool = False,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.label = label
        self.local = local
        self._local_adapters = list(local_adapters)
        cfn = client("cloudformation")
        self.stack = stacks.find_stack(cfn, stack_name)
        described = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        self.outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
        #: the stack's template parameters (its job defaults, prefixes): CloudFormation's, else ``parameters``
        self.parameters = dict(parameters or {}) | {
            p["ParameterKey"]: p.get("ParameterValue", "") for p in described.get("Parameters", [])
        }
        for attribute, name in (("results_prefix", "ResultsPrefix"), ("failures_prefix", "FailuresPrefix")):
            if name not in self.outputs and self.parameters.get(
                name
            ):  # the outputs omit them: the parameters
                self.stack = replace(self.stack, **{attribute: self.parameters[name]})
        # One client per service, made now (making one reads os.environ, which the local harness
        # changes around each function it runs).
        self.s3 = client("s3")
        self.sfn = client("stepfunctions")

    # ------------------------------------------------------------------ what the page offers
    @property
    def has_batches(self) -> bool:
        return all(key in self.outputs for key in BATCH_OUTPUTS)

    def adapter_location(self) -> tuple[str, str] | None:
        """(bucket, prefix) of the stack's adapters (its AdapterBucket/AdapterPrefix), if it says."""
        prefix = self.parameters.get("AdapterPrefix")
        if not prefix:
            return None
        return self.parameters.get("AdapterBucket") or self.stack.output_bucket, prefix

    def adapters(self) -> list[str]:
        """Adapter specs a job may name: the local endpoint's folders, or s3:// folders under the
        stack's adapter prefix (a deployed endpoint's own adapter names are typed by hand)."""
        if self.local:
            return list(self._local_adapters)
        where = self.adapter_location()
        if where is None:
            return []
        bucket, prefix = where
        found: list[str] = []
        try:
            pages = self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                found += [s3_uri(bucket, p["Prefix"]) for p in page.get("CommonPrefixes", [])]
        except Exception:
            return []
        return found

    # ------------------------------------------------------------------ one try-on
    def _upload(
        self, request: JobRequest, overrides: dict[str, Any], on_status: Callable[[str], None]
    ) -> tuple[Any, dict[str, str]]:
        """The job's files, then the photo with ``overrides`` as metadata: ``tryon submit``'s
        :func:`tryon.aws.stack.upload_job`. The photo's upload and each file's URI by override."""
        upload, uris = stacks.upload_job(
            self.s3,
            self.stack,
            request.photo,
            overrides=overrides,
            preset=request.preset,
            files=request.uploads,
            name=request.photo.name,
        )
        for item in request.uploads:
            on_status(f"uploaded the {item.kind} {uris[item.override]}")
        return upload, uris

    def run(
        self,
        request: JobRequest,
        out_dir: Path,
        *,
        on_event: Callable[[StateEvent], None] = lambda _e: None,
        on_status: Callable[[str], None] = lambda _m: None,
        timeout: float = 3600.0,
    ) -> RunOutcome:
        """Upload the files and the photo (overrides as metadata), follow the execution, download."""

        check_job(request)
        upload = self._upload(request, request.overrides, on_status)[0]
        on_status(f"uploaded s3://{upload.bucket}/{upload.key}")
        arn = stacks.find_execution(
            self.sfn, self.stack, upload, timeout_seconds=300.0, poll_seconds=0.2 if self.local else 2.0
        )
        on_status(f"EventBridge started {arn.rsplit(':', 1)[-1]}")
        result = follow_execution(
            self.sfn, arn, timeout=timeout, poll_s=0.1 if self.local else 2.0, on_event=on_event
        )
        files: list[Path] = []
        if result.artifact_uri is not None:
            bucket, keys = stacks.result_keys(self.s3, result.artifact_uri)
            files = stacks.download(self.s3, bucket, keys, out_dir)
        error = None if result.succeeded else failure_summary(result)[1]
        return RunOutcome(result, sorted(files), error)

    # ------------------------------------------------------------------ jobs
    def jobs(self, limit: int = 25) -> list[dict[str, Any]]:
        """Recent executions of the try-on state machine: name, status, start, duration, outcome."""
        listed = self.sfn.list_executions(stateMachineArn=self.stack.state_machine_arn, maxResults=limit)
        rows = []
        for execution in listed["executions"][:limit]:
            started, stopped = execution["startDate"], execution.get("stopDate")
            row: dict[str, Any] = {
                "name": execution["name"],
                "arn": execution["executionArn"],
                "status": execution["status"],
                "started": started.astimezone(UTC).isoformat(timespec="seconds"),
                "duration_s": round((stopped - started).total_seconds(), 1) if stopped else None,
                "manifest": None,
                "preview": None,
                "outcome": None,
            }
            if stopped and execution["status"] == "SUCCEEDED":
                output = json.loads(
                    self.sfn.describe_execution(executionArn=row["arn"]).get("output") or "{}"
                )
                if isinstance(output, dict):
                    row.update(manifest=output.get("manifest"), preview=output.get("preview"),
                               outcome=output.get("status"))  # fmt: skip
            rows.append(row)
        return rows

    # ------------------------------------------------------------------ objects the page shows
    def readable_prefixes(self) -> list[tuple[str, str]]:
        """(bucket, prefix) pairs the page may read: results, failures, batch reports, the inputs."""
        stack = self.stack
        places = [
            (stack.output_bucket, stack.results_prefix),
            (stack.output_bucket, stack.failures_prefix),
            (stack.input_bucket, stack.input_prefix),
        ]
        places += [(stack.input_bucket, p) for p in (stack.garment_prefix, stack.mask_prefix) if p]
        if self.has_batches:
            places.append((stack.output_bucket, self.outputs["BatchReportsPrefix"]))
        return places

    def read_object(self, uri: str) -> tuple[bytes, str]:
        """An object's bytes and content type, if it lies under one of :meth:`readable_prefixes`."""
        bucket, key = parse_s3_uri(uri.split("?", 1)[0], field="uri")
        if ".." in key.split("/") or not any(
            bucket == b and key.startswith(p) for b, p in self.readable_prefixes()
        ):
            raise RequestError("uri", f"{uri} is outside the stack's result and input prefixes")
        got = self.s3.get_object(Bucket=bucket, Key=key)
        return got["Body"].read(), got.get("ContentType") or "application/octet-stream"

    # ------------------------------------------------------------------ batches
    def _require_batches(self) -> None:
        if not self.has_batches:
            raise RequestError(
                "stack", f"stack {self.stack.name!r} has no batch state machine ({', '.join(BATCH_OUTPUTS)})"
            )

    def batches(self) -> list[dict[str, Any]]:
        """Batch reports under the stack's report prefix, newest first: id, status, counts."""
        self._require_batches()
        prefix = self.outputs["BatchReportsPrefix"]
        found = []
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.stack.output_bucket, Prefix=prefix
        )
        for page in pages:
            for obj in page.get("Contents", []):
                if obj["Key"].endswith("/report.json") and obj["Key"].count("/") == prefix.count("/") + 1:
                    found.append(obj)
        found.sort(key=lambda obj: obj["LastModified"], reverse=True)
        out = []
        for obj in found:
            report = self.report(obj["Key"][len(prefix) :].split("/", 1)[0])
            out.append({
                "batch_id": report["batch_id"],
                "status": report.get("status"),
                "counts": report.get("counts", {}),
                "written": obj["LastModified"].astimezone(UTC).isoformat(timespec="seconds"),
            })  # fmt: skip
        return out

    def report_prefix(self, batch_id: str) -> str:
        if not batch_id or "/" in batch_id or batch_id in {".", ".."}:
            raise RequestError("batch", f"not a batch id: {batch_id!r}")
        return f"{self.outputs['BatchReportsPrefix']}{batch_id}/"

    def report(self, batch_id: str) -> dict[str, Any]:
        """A batch's report.json."""
        self._require_batches()
        key = self.report_prefix(batch_id) + "report.json"
        try:
            body = self.s3.get_object(Bucket=self.stack.output_bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            raise RequestError("batch", f"no report for batch {batch_id!r}") from None
        return json.loads(body)

    def start_batch(self, data: bytes, name: str, options: Mapping[str, Any] | None = None) -> str:
        """Upload a manifest under the batch prefix (``tryon batch submit``'s path); the batch's ARN."""
        from tryon.workflow import batch_manifest

        self._require_batches()
        batch_manifest.parse_manifest(data, name)  # format, size and row count, before any upload
        key = f"{self.outputs['BatchPrefix']}{name}"
        started = datetime.now(UTC)
        put = self.s3.put_object(
            Bucket=self.stack.input_bucket,
            Key=key,
            Body=data,
            Metadata=batch_manifest.options_metadata(options or {}),
        )
        upload = stacks.Upload(self.stack.input_bucket, key, put.get("VersionId"), started)
        batch_sm = replace(self.stack, state_machine_arn=self.outputs["BatchStateMachineArn"])
        return stacks.find_execution(
            self.sfn, batch_sm, upload, timeout_seconds=300.0, poll_seconds=0.2 if self.local else 2.0
        )

    def batch_state(self, arn: str) -> dict[str, Any]:
        """A batch execution's status, its map run's counts while it runs, its report once it ended."""
        from tryon.aws.batch_progress import map_run_progress, report_uri

        described = self.sfn.describe_execution(executionArn=arn)
        state: dict[str, Any] = {"status": described["status"], "report": None, "error": None}
        if described["status"] == "RUNNING":
            progress = map_run_progress(self.sfn, arn)
            if progress is not None:
                state["counts"] = {k: getattr(progress, k) for k in ("done", "failed", "running", "total")}
            return state
        from tryon.aws.executions import plain_cause

        uri = report_uri(json.loads(described.get("output") or "null"), described.get("cause"))
        if uri is not None:
            state["report"] = uri.rsplit("/", 2)[-2]
        if described["status"] != "SUCCEEDED":
            state["error"] = plain_cause(described.get("cause")) or described["status"]
        return state

    def upload_name(self, suffix: str) -> str:
        """A fresh object name for a photo the page uploads (``studio-<id>.<suffix>``)."""
        return f"studio-{uuid.uuid4().hex[:12]}{suffix}"

    # ------------------------------------------------------------------ compare
    def compare(
        self,
        request: JobRequest,
        variants: Sequence[Mapping[str, Any]],
        on_status: Callable[[str], None] = lambda _m: None,
    ) -> str:
        """One photo, one mask, 2-4 variants (adapters, scales, seeds) as ONE batch; the batch's ARN.

        The files are uploaded once and every row names them; the photo is uploaded under the input
        prefix with the first variant's parameters (the stack's upload rule starts that job, whose
        job id is the first row's: the batch finds it complete or runs it beside it).
        """

        if not 2 <= len(variants) <= 4:
            raise RequestError("variants", f"compare 2 to 4 variants, got {len(variants)}")
        for variant in variants:
            check_job(replace(request, overrides={**request.overrides, **variant}))
        self._require_batches()
        upload, uris = self._upload(request, {**request.overrides, **variants[0]}, on_status)
        overrides = {**request.overrides, **uris}
        image = s3_uri(upload.bucket, upload.key, upload.version_id)
        on_status(f"uploaded {image}")
        preset = {"preset": request.preset} if request.preset else {}
        rows = [{"image": image, **preset, **overrides, **variant} for variant in variants]
        data = "".join(json.dumps(row) + "\n" for row in rows).encode()
        return self.start_batch(data, f"{request.photo.stem}-compare.jsonl")
