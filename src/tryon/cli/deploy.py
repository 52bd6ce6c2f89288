"""``tryon deploy-models``: the SageMaker endpoints (or one shared endpoint) from packaged artefacts."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from tryon.cli import app, fail
from tryon.cli.output import emit_json
from tryon.cli.sessions import Profile, Region
from tryon.cli.sessions import session as aws_session
from tryon.core.kinds import MODES
from tryon.core.schema import ENDPOINT_KINDS

ROLE_HELP = "IAM role SageMaker assumes to pull the image and artefacts (arn:aws:iam::...:role/...)."
PREFIX_HELP = (
    "Endpoint name prefix: " + ", ".join(row.endpoint_name("<prefix>") for row in ENDPOINT_KINDS) + "."
)
#: SageMaker's rule for an endpoint name (CreateEndpoint's EndpointName pattern, 63 characters).
ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
Prefix = Annotated[str, typer.Option(help=PREFIX_HELP)]


def endpoint_names(prefix: str) -> dict[str, str]:
    """Kind -> endpoint name for ``prefix``; exit 2 unless SageMaker accepts every name."""
    names = {row.kind: row.endpoint_name(prefix) for row in ENDPOINT_KINDS}
    for name in names.values():
        if not ENDPOINT_NAME.match(name):
            raise fail(
                f"--prefix: {prefix!r} gives the endpoint name {name!r}, which SageMaker refuses "
                "(at most 63 letters, digits and hyphens, starting and ending with a letter or digit)"
            )
    return names


def shared_endpoint_name(prefix: str) -> str:
    """The shared layout's one endpoint, ``<prefix>-shared``; exit 2 unless SageMaker accepts it."""
    name = f"{prefix}-shared"
    if not ENDPOINT_NAME.match(name) or len(name) > 52:  # its components add up to 11 characters (63 in all)
        raise fail(
            f"--prefix: {prefix!r} gives the shared endpoint name {name!r}, which is too long or not allowed"
        )
    return name


def _upload(deploy: Any, path: Path, bucket: str, key: str, sha256: str, session: Any) -> bool:
    """Upload one archive with a progress bar on stderr; True if it was uploaded (not already there)."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"uploading {path.name}", total=path.stat().st_size)
        return deploy.upload_artifact(
            path, bucket, key, sha256, session, progress=lambda sent: bar.advance(task, sent)
        )


def _apply_in_parallel(
    plans: list[Any], *, role: str, new_session: Callable[[], Any], wait: bool
) -> list[dict[str, str]]:
    """Apply every plan at once (one thread and boto3 session each) with a status line per endpoint.

    Results come back in plan order; if any endpoint failed, the others still finish and the
    first failure is raised afterwards.
    """
    from concurrent.futures import ThreadPoolExecutor

    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from tryon.aws import sagemaker_endpoints as deploy

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as board:
        tasks = [board.add_task(f"{plan.endpoint_name}: starting", total=None) for plan in plans]

        def apply(plan: Any, task: Any) -> dict[str, str]:

            def show(message: str) -> None:
                board.update(task, description=f"{plan.endpoint_name}: {message}")

            try:
                result = deploy.apply_plan(
                    plan, role_arn=role, session=new_session(), wait=wait, on_status=show
                )
            except Exception:
                show("failed")
                raise
            finally:
                board.update(task, total=1, completed=1)
            show(f"{result['action']}, {result['status']}")
            return result

        with ThreadPoolExecutor(max_workers=max(1, len(plans))) as pool:
            futures = [pool.submit(apply, plan, task) for plan, task in zip(plans, tasks, strict=True)]
    results, errors = [], []
    for future in futures:
        error = future.exception()
        if error is None:
            results.append(future.result())
        else:
            errors.append(error)
    for result in results:
        emit_json(result)
    if errors:
        raise errors[0]
    return results


#: The region a dry run with no region configured plans for.
DRY_RUN_REGION = "us-east-1"


@app.command("deploy-models")
def deploy_models(
    artifact: Annotated[
        list[str],
        typer.Option(help="KIND=PATH_OR_S3_URI of a model.tar.gz (kinds: clipseg, sd_inpaint, sd_upscale)."),
    ],
    role: Annotated[str, typer.Option(help=ROLE_HELP)] = "",
    prefix: Prefix = "tryon",
    bucket: Annotated[str, typer.Option(help="Bucket to upload local artefacts to.")] = "",
    mode: Annotated[list[str], typer.Option(help="KIND=realtime|serverless|async (default realtime).")] = [],  # noqa: B006  (typer reads list defaults, never mutates them)
    instance_type: Annotated[list[str], typer.Option(help="KIND=ml.instance.type override.")] = [],  # noqa: B006
    async_output: Annotated[str, typer.Option(help="s3:// prefix for asynchronous endpoint outputs.")] = "",
    async_success_topic: Annotated[
        str,
        typer.Option(help="SNS topic async endpoints notify on success (the stack's AsyncSuccessTopicArn)."),
    ] = "",
    async_error_topic: Annotated[
        str, typer.Option(help="SNS topic async endpoints notify on error (the stack's AsyncErrorTopicArn).")
    ] = "",
    layout: Annotated[
        str,
        typer.Option(
            help="separate: one endpoint per kind; shared: the real-time kinds as inference components "
            "of ONE GPU endpoint, <prefix>-shared (docs/deploy.md#one-gpu-endpoint-for-several-models)."
        ),
    ] = "separate",
    shared_instance_type: Annotated[
        str, typer.Option(help="Instance type of the shared endpoint (default ml.g5.12xlarge: 4 GPUs).")
    ] = "",
    max_instances: Annotated[
        int, typer.Option(help="Most instances the shared endpoint scales out to (it scales in to zero).")
    ] = 1,
    region: Region = "",
    profile: Profile = "",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be created; call nothing.")
    ] = False,
    wait: Annotated[bool, typer.Option(help="Wait until every endpoint is InService.")] = True,
) -> None:
    """Create or update the SageMaker endpoints (sagemaker SDK v3) from model.tar.gz artefacts."""
    from tryon.aws import sagemaker_endpoints as deploy
    from tryon.core.kinds import LAYOUTS, component_kinds

    if layout not in LAYOUTS:
        raise fail(f"--layout: must be {' or '.join(LAYOUTS)}, got {layout!r}")

    artifacts = deploy.parse_assignments(artifact, "--artifact")
    modes = deploy.parse_assignments(mode, "--mode")
    instances = deploy.parse_assignments(instance_type, "--instance-type")
    for kind, value in modes.items():
        if value not in MODES:
            raise fail(f"--mode: {kind} must be {', '.join(MODES[:-1])} or {MODES[-1]}, got {value!r}")
    for kind, value in instances.items():
        if not value.startswith("ml."):
            raise fail(
                f"--instance-type: {kind} must be a SageMaker instance type like ml.m5.large, got {value!r}"
            )
    names = endpoint_names(prefix)
    # A dry run validates like a real run (the same required options and shapes) but calls
    # nothing, so it needs no credentials and no region (it then plans us-east-1's images).
    if not role:
        raise fail("--role is required (the SageMaker execution role ARN)")
    deploy.check_role_arn(role)
    session = aws_session(region, profile, need_region=not dry_run)
    region_name = session.region_name
    if region_name is None:
        region_name = DRY_RUN_REGION
        typer.echo(
            f"no region configured: the plan shows {DRY_RUN_REGION}'s serving images "
            "(pass --region for yours)",
            err=True,
        )
    if not dry_run:
        deploy.check_role(role, session)  # before any upload
    shared_kinds = component_kinds(layout, {kind: modes.get(kind, "realtime") for kind in artifacts})
    shared_name = shared_endpoint_name(prefix)
    for kind in shared_kinds:
        if kind in instances:
            raise fail(
                f"--instance-type: {kind} is a component of {shared_name} in the shared layout; "
                "set --shared-instance-type instead"
            )
    plans, shared_sources, shared_digests = [], {}, {}
    for kind, source in artifacts.items():
        if source.startswith("s3://"):
            digest = "" if dry_run else deploy.s3_artifact_digest(source, session, field=f"{kind}.model_data")
        else:
            path = Path(source)
            if not path.is_file():
                raise fail(f"--artifact: {kind} artefact {path} does not exist")
            if not bucket:
                raise fail("--bucket is required to upload local artefacts")
            sha256 = deploy.file_sha256(path)
            key = deploy.artifact_key(prefix, kind, sha256)
            source, digest = f"s3://{bucket or '<bucket>'}/{key}", f"sha256:{sha256}"
            if not dry_run:
                uploaded = _upload(deploy, path, bucket, key, sha256, session)
                typer.echo(f"{'uploaded' if uploaded else 'already uploaded'} {path} -> {source}", err=True)
        if kind in shared_kinds:
            shared_sources[kind], shared_digests[kind] = source, digest
            continue
        plans.append(
            deploy.make_plan(
                kind,
                endpoint_name=names[kind],
                model_data_url=source,
                region=region_name,
                mode=modes.get(kind, "realtime"),  # type: ignore[arg-type]
                instance_type=instances.get(kind),
                artifact_digest=digest,
                async_output_path=f"{async_output.rstrip('/')}/{kind}/" if async_output else None,
                async_success_topic=async_success_topic or None,
                async_error_topic=async_error_topic or None,
            )
        )
    shared = None
    if shared_kinds:
        shared = deploy.make_shared_plan(
            shared_sources,
            endpoint_name=shared_name,
            region=region_name,
            instance_type=shared_instance_type,
            max_instances=max_instances,
            digests=shared_digests,
        )
    if dry_run:
        described = [deploy.describe_plan(p) for p in plans]
        if shared is not None:
            described.insert(0, deploy.describe_shared_plan(shared))
        emit_json(described, indent=2)
        return
    if shared is not None:
        for result in deploy.apply_shared_plan(
            shared,
            role_arn=role,
            session=session,
            wait=wait,
            on_status=lambda message: typer.echo(f"{shared_name}: {message}", err=True),
        ):
            emit_json(result)
    if plans:
        _apply_in_parallel(plans, role=role, new_session=lambda: aws_session(region, profile), wait=wait)


@app.command("prune-models")
def prune_models(
    prefix: Prefix = "tryon",
    region: Region = "",
    profile: Profile = "",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be deleted; delete nothing.")
    ] = False,
) -> None:
    """Delete the models and endpoint configs deploy-models left behind that no endpoint uses."""
    from tryon.aws import sagemaker_endpoints as deploy

    names = list(endpoint_names(prefix).values())
    sm = aws_session(region, profile).client("sagemaker")
    leftovers = deploy.find_leftovers(sm, names)
    if not dry_run:
        deploy.delete_leftovers(sm, leftovers, on_delete=lambda message: typer.echo(message, err=True))
    answer = {
        "endpoint_configs": leftovers.endpoint_configs,
        "models": leftovers.models,
        "deleted": not dry_run,
    }
    emit_json(answer)
