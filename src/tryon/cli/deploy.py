"""``tryon deploy-models``: the three SageMaker endpoints from packaged artefacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tryon.cli import app, fail

ROLE_HELP = "IAM role SageMaker assumes to pull the image and artefacts (arn:aws:iam::...:role/...)."


@app.command("deploy-models")
def deploy_models(
    artifact: Annotated[
        list[str],
        typer.Option(help="KIND=PATH_OR_S3_URI of a model.tar.gz (kinds: clipseg, sd_inpaint, sd_upscale)."),
    ],
    role: Annotated[str, typer.Option(help=ROLE_HELP)] = "",
    prefix: Annotated[str, typer.Option(help="Endpoint name prefix: <prefix>-clipseg, ...")] = "tryon",
    bucket: Annotated[str, typer.Option(help="Bucket to upload local artefacts to.")] = "",
    mode: Annotated[list[str], typer.Option(help="KIND=realtime|serverless|async (default realtime).")] = [],  # noqa: B006  (typer reads list defaults, never mutates them)
    instance_type: Annotated[list[str], typer.Option(help="KIND=ml.instance.type override.")] = [],  # noqa: B006
    async_output: Annotated[str, typer.Option(help="s3:// prefix for asynchronous endpoint outputs.")] = "",
    region: Annotated[str, typer.Option(help="AWS region (default: from your AWS config).")] = "",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be created; call nothing.")
    ] = False,
    wait: Annotated[bool, typer.Option(help="Wait until every endpoint is InService.")] = True,
) -> None:
    """Create or update the SageMaker endpoints (sagemaker SDK v3) from model.tar.gz artefacts."""
    import boto3

    from tryon import deploy

    artifacts = deploy.parse_assignments(artifact, "--artifact")
    modes = deploy.parse_assignments(mode, "--mode")
    instances = deploy.parse_assignments(instance_type, "--instance-type")
    for kind, value in modes.items():
        if value not in ("realtime", "serverless", "async"):
            raise fail(f"--mode: {kind} must be realtime, serverless or async, got {value!r}")
    session = boto3.Session(region_name=region or None)
    region_name = session.region_name or "us-east-1"
    if not dry_run:
        if not role:
            raise fail("--role is required (the SageMaker execution role ARN)")
        deploy.check_role(role, session)  # before any upload
    plans = []
    for kind, source in artifacts.items():
        if source.startswith("s3://"):
            digest = "" if dry_run else deploy.s3_artifact_digest(source, session, field=f"{kind}.model_data")
        else:
            path = Path(source)
            if not path.is_file():
                raise fail(f"--artifact: {kind} artefact {path} does not exist")
            if not bucket and not dry_run:
                raise fail("--bucket is required to upload local artefacts")
            sha256 = deploy.file_sha256(path)
            key = deploy.artifact_key(prefix, kind, sha256)
            source, digest = f"s3://{bucket or '<bucket>'}/{key}", f"sha256:{sha256}"
            if not dry_run:
                uploaded = deploy.upload_artifact(path, bucket, key, sha256, session)
                typer.echo(f"{'uploaded' if uploaded else 'already uploaded'} {path} -> {source}", err=True)
        plans.append(
            deploy.make_plan(
                kind,
                endpoint_name=f"{prefix}-{kind.replace('_', '-')}",
                model_data_url=source,
                region=region_name,
                mode=modes.get(kind, "realtime"),  # type: ignore[arg-type]
                instance_type=instances.get(kind),
                artifact_digest=digest,
                async_output_path=f"{async_output.rstrip('/')}/{kind}/" if async_output else None,
            )
        )
    if dry_run:
        typer.echo(json.dumps([deploy.describe_plan(p) for p in plans], indent=2))
        return
    from rich.console import Console

    console = Console(stderr=True)
    for plan in plans:
        with console.status(f"{plan.endpoint_name}: starting") as status:
            result = deploy.apply_plan(
                plan,
                role_arn=role,
                session=session,
                wait=wait,
                on_status=lambda msg, s=status, p=plan: s.update(f"{p.endpoint_name}: {msg}"),
            )
        typer.echo(json.dumps(result))
