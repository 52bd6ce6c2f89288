"""``tryon batch``: catalogue batches from one manifest (docs/batches.md).

``run`` runs a manifest on one machine (the local stack ``tryon demo`` uses), ``submit`` and
``status`` work on a deployed stack, ``cross`` writes the cross product of photos and variants.
Every command exits 1 when any row failed (or the batch was refused), with the report's place.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from tryon.aws.executions import plain_cause
from tryon.cli import EXIT_OK, EXIT_WORKFLOW_FAILED, app, fail
from tryon.cli.output import emit_json, function_log_level
from tryon.cli.sessions import Profile, Region

batch_app = typer.Typer(
    help="Catalogue batches: one manifest (CSV or JSON Lines), one try-on per row.", no_args_is_help=True
)
app.add_typer(batch_app, name="batch")

Manifest = Annotated[Path, typer.Argument(help="The manifest: .csv, .jsonl or .ndjson, one try-on per row.")]
AllowInvalid = Annotated[
    bool, typer.Option("--allow-invalid-rows", help="Run the good rows and report the bad ones.")
]
MaxConcurrency = Annotated[int | None, typer.Option(help="Rows running at once (default: the stack's).")]
Tolerated = Annotated[
    float | None, typer.Option(help="Percentage of rows that may fail before the batch stops (0-100).")
]
Out = Annotated[Path, typer.Option(help="Folder for the report, contact sheets (and, locally, results).")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout (progress on stderr).")]
StackName = Annotated[str, typer.Option("--stack", help="Name of the deployed CloudFormation stack.")]
#: Row statuses that make the command exit 1 (refused rows too: they have no result either).
FAILED_ROWS = ("failed", "invalid", "not-run", "refused")


def _options(
    allow_invalid_rows: bool, max_concurrency: int | None, tolerated: float | None
) -> dict[str, Any]:
    """The batch options given, checked against ValidateBatch's limits before anything starts."""
    from tryon.core.errors import RequestError
    from tryon.workflow.batch_validate import BatchSettings, check_options

    options: dict[str, Any] = {"allow_invalid_rows": allow_invalid_rows} if allow_invalid_rows else {}
    if max_concurrency is not None:
        options["max_concurrency"] = max_concurrency
    if tolerated is not None:
        options["tolerated_failure_percentage"] = tolerated
    try:
        check_options(options, BatchSettings())
    except RequestError as exc:
        raise fail(f"--{exc.field.replace('_', '-')}: {exc.detail}") from None
    return options


class _Bar:
    """A tqdm bar over the rows to run: done/failed/running counts and tqdm's ETA."""

    def __init__(self, as_json: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=0, unit="row", desc="batch", disable=None, file=None)
        self.as_json = as_json

    def __call__(self, progress: Any) -> None:
        self.bar.total = max(self.bar.total or 0, progress.total)
        self.bar.set_postfix(done=progress.done, failed=progress.failed, running=progress.running)
        self.bar.update(progress.finished - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _finish(status: str, report: Mapping[str, Any] | None, where: Path | str | None, *, cause: str | None,
            as_json: bool) -> int:  # fmt: skip
    """Print the outcome and the report's place; 0 only when every row ended well."""
    counts = (report or {}).get("counts", {})
    failed_rows = sum(counts.get(s, 0) for s in FAILED_ROWS)
    ok = status in {"succeeded", "completed"} and not failed_rows
    if as_json:
        answer = {"status": status, "counts": counts, "report": str(where) if where else None, "cause": cause}
        emit_json(answer | {"batch_id": (report or {}).get("batch_id")})
    else:
        shown = ", ".join(f"{n} {s}" for s, n in counts.items() if s != "rows")
        typer.echo(f"batch {status}: {shown or 'no rows ran'}")
        if where:
            typer.echo(f"report: {where}")
    if cause and not ok:
        cause = cause.replace("set allow_invalid_rows", "pass --allow-invalid-rows")
        typer.secho(f"error: {cause}", err=True, fg="red")
    return EXIT_OK if ok else EXIT_WORKFLOW_FAILED


@batch_app.command("run")
def run_(
    manifest: Manifest,
    allow_invalid_rows: AllowInvalid = False,
    max_concurrency: MaxConcurrency = None,
    tolerated_failure_percentage: Tolerated = None,
    models: Annotated[
        list[str], typer.Option(help="KIND=DIR|HUB-ID: real checkpoints instead of the tiny ones.")
    ] = [],  # noqa: B006  (typer reads list defaults, never mutates them)
    upscale: Annotated[bool, typer.Option("--upscale/--no-upscale", help="Allow rows to upscale.")] = True,
    out: Out = Path("out/batches"),
    as_json: Json = False,
) -> None:
    """A manifest on one machine: photos are files beside it; report, contact sheets and results in OUT."""
    from tryon.cli.jobs import resolve_models
    from tryon.local.batch_runner import local_rows, run_batch
    from tryon.local.runner import TINY_PARAMETERS

    options = _options(allow_invalid_rows, max_concurrency, tolerated_failure_percentage)
    # every bad row (missing photos, bad values, not an object) at once, before any model loads
    local_rows(manifest, allow_invalid_rows=allow_invalid_rows)
    model_dirs, all_tiny = resolve_models(models)
    if all_tiny:
        typer.echo(
            "models: tiny random checkpoints (the images are noise; pass --models for real ones)", err=True
        )
    bar = _Bar(as_json)
    try:
        outcome = run_batch(
            manifest,
            model_dirs=model_dirs,
            out_dir=out,
            options=options,
            parameters=TINY_PARAMETERS if all_tiny else None,
            upscale=upscale,
            on_progress=bar,
            on_status=lambda msg: typer.echo(msg, err=True),
            log_level=function_log_level(),
        )
    finally:
        bar.close()
    report = outcome.report
    status = report["status"] if report else "refused"
    where = out / report["batch_id"] / "report.csv" if report else None
    cause = plain_cause(outcome.result.cause)
    if report and outcome.report_uri:  # the local bucket is gone: name the downloaded copy
        cause = cause.replace(outcome.report_uri, str(out / report["batch_id"] / "report.json"))
    raise typer.Exit(_finish(status, report, where, cause=cause, as_json=as_json))


def _batch_stack(region: str, profile: str, name: str) -> tuple[Any, dict[str, str], Any, Any]:
    """(stack, its batch outputs, s3 client, stepfunctions client) of a deployed stack."""
    from tryon.aws import stack as stacks
    from tryon.cli.sessions import session as aws_session

    session = aws_session(region, profile)
    cfn = session.client("cloudformation")
    found = stacks.find_stack(cfn, name)
    outputs = {
        o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName=name)["Stacks"][0]["Outputs"]
    }
    wanted = ("BatchStateMachineArn", "BatchPrefix", "BatchReportsPrefix")
    if any(key not in outputs for key in wanted):
        raise fail(f"stack {name!r} has no batch state machine (outputs {', '.join(wanted)}): redeploy it")
    return found, outputs, session.client("s3"), session.client("stepfunctions")


def _follow(sfn: Any, arn: str, on_progress: Callable[[Any], None], poll_s: float, timeout: float) -> dict:
    import time

    from tryon.aws.batch_progress import map_run_progress

    deadline = time.monotonic() + timeout
    while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        if time.monotonic() > deadline:
            raise fail(f"the batch is still running after {timeout:.0f} s: `tryon batch status {arn}`", 1)
        if (progress := map_run_progress(sfn, arn)) is not None:
            on_progress(progress)
        time.sleep(poll_s)
    return described


def _outcome(s3: Any, described: Mapping[str, Any], out: Path, as_json: bool) -> int:
    """Download the report (and contact sheets) of an ended batch execution; the exit code."""
    from tryon.aws.batch_progress import report_uri
    from tryon.core.s3uri import parse_s3_uri

    cause = described.get("cause")
    uri = report_uri(json.loads(described.get("output") or "null"), cause)
    if uri is None:
        return _finish(described["status"].lower(), None, None, cause=cause, as_json=as_json)
    bucket, key = parse_s3_uri(uri, field="report")
    prefix = key.rsplit("/", 1)[0] + "/"
    report = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "report.json")["Body"].read())
    target = out / report["batch_id"]
    target.mkdir(parents=True, exist_ok=True)
    names = ["report.json", "report.csv"] + [uri.rsplit("/", 1)[1] for uri in report["contact_sheets"]]
    for name in names:
        s3.download_file(bucket, prefix + name, str(target / name))
    return _finish(report["status"], report, target / "report.csv", cause=cause, as_json=as_json)


@batch_app.command()
def submit(
    manifest: Manifest,
    stack: StackName,
    allow_invalid_rows: AllowInvalid = False,
    max_concurrency: MaxConcurrency = None,
    tolerated_failure_percentage: Tolerated = None,
    follow: Annotated[bool, typer.Option(help="Follow the batch and download its report.")] = True,
    out: Out = Path("out/batches"),
    region: Region = "",
    profile: Profile = "",
    timeout: Annotated[float, typer.Option(help="Seconds to follow the batch.")] = 24 * 3600.0,
    as_json: Json = False,
) -> None:
    """Upload a manifest to a deployed stack (rows name s3:// photos or keys under the input prefix)."""
    from dataclasses import replace
    from datetime import UTC, datetime

    from tryon.aws import stack as stacks
    from tryon.workflow import batch_manifest

    data = manifest.read_bytes()
    batch_manifest.parse_manifest(data, manifest.name)  # format, size and row count, before any AWS call
    options = _options(allow_invalid_rows, max_concurrency, tolerated_failure_percentage)
    found, outputs, s3, sfn = _batch_stack(region, profile, stack)
    key = outputs["BatchPrefix"] + manifest.name
    started = datetime.now(UTC)
    put = s3.put_object(
        Bucket=found.input_bucket, Key=key, Body=data, Metadata=batch_manifest.options_metadata(options)
    )
    typer.echo(f"uploaded s3://{found.input_bucket}/{key}", err=as_json)
    upload = stacks.Upload(found.input_bucket, key, put.get("VersionId"), started)
    batch_sm = replace(found, state_machine_arn=outputs["BatchStateMachineArn"])
    arn = stacks.find_execution(sfn, batch_sm, upload, timeout_seconds=min(timeout, 300.0))
    typer.echo(f"execution {arn}", err=as_json)
    if not follow:
        return
    bar = _Bar(as_json)
    try:
        described = _follow(sfn, arn, bar, 5.0, timeout)
    finally:
        bar.close()
    raise typer.Exit(_outcome(s3, described, out, as_json))


@batch_app.command()
def status(
    execution: Annotated[str, typer.Argument(help="The batch execution's ARN or name.")],
    stack: StackName,
    out: Out = Path("out/batches"),
    region: Region = "",
    profile: Profile = "",
    as_json: Json = False,
) -> None:
    """Where a batch stands: rows done, failed, running; once it ended, its report (downloaded to OUT)."""
    from dataclasses import replace

    from tryon.aws import stack as stacks
    from tryon.aws.batch_progress import map_run_progress

    found, outputs, s3, sfn = _batch_stack(region, profile, stack)
    arn = stacks.resolve_execution(
        sfn, replace(found, state_machine_arn=outputs["BatchStateMachineArn"]), execution
    )
    described = sfn.describe_execution(executionArn=arn)
    if described["status"] == "RUNNING":
        progress = map_run_progress(sfn, arn)
        counts = {"done": 0, "failed": 0, "running": 0, "total": 0}
        if progress is not None:
            counts = {k: getattr(progress, k) for k in counts}
        emit_json({"status": "RUNNING", **counts})
        raise typer.Exit(EXIT_OK)
    raise typer.Exit(_outcome(s3, described, out, as_json))


@batch_app.command()
def cross(
    photos: Annotated[
        list[str], typer.Argument(help="Photos: files, folders (their images), or keys/s3:// URIs.")
    ],
    out: Annotated[Path, typer.Option(help="The manifest to write (.csv or .jsonl).")],
    adapter: Annotated[
        list[str], typer.Option(help="A LoRA adapter (repeatable): one row per photo each.")
    ] = [],  # noqa: B006
    prompt: Annotated[
        list[str], typer.Option(help="A prompt (repeatable): one row per photo and adapter each.")
    ] = [],  # noqa: B006
    set_: Annotated[list[str], typer.Option("--set", help="NAME=VALUE for every row (repeatable).")] = [],  # noqa: B006
) -> None:
    """Write a manifest: every photo x every adapter x every prompt (file paths relative to OUT's folder)."""
    from tryon.workflow import batch_manifest
    from tryon.workflow.settings import IMAGE_SUFFIXES

    fmt = batch_manifest.manifest_format(out.name)
    common = {}
    for item in set_:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise fail(f"--set expects NAME=VALUE, got {item!r}")
        common[name.replace("-", "_")] = value
    images: list[str] = []
    for photo in photos:
        path = Path(photo)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            images += [_relative(p, out.parent) for p in found]
        elif path.is_file():
            images.append(_relative(path, out.parent))
        else:
            images.append(photo)  # a key under the input prefix or an s3:// URI (for `submit`)
    variants = [
        {**common, **({"adapter": a} if a else {}), **({"prompt": p} if p else {})}
        for a in (adapter or [""])
        for p in (prompt or [""])
    ]
    rows = batch_manifest.cross_product(images, variants)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(batch_manifest.write_manifest(rows, fmt), encoding="utf-8")
    typer.echo(f"{out}: {len(rows)} rows ({len(images)} photos x {len(variants)} variants)")


def _relative(path: Path, base: Path) -> str:
    import os

    return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
