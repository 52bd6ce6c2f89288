"""``tryon train``: fine-tune locally, as a SageMaker training job, and ship the adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tryon.cli import app, fail
from tryon.cli.sessions import Profile, Region

train_app = typer.Typer(
    help="DreamBooth + LoRA fine-tuning of the inpainting model on ~12 photos of one garment.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")

#: Stand-ins for the paths the job's channels fill in, so hyperparameters can be checked
#: before a job is submitted.
_CHANNEL_PLACEHOLDERS = {"pretrained_model": "base_model", "instance_data_dir": "instance"}


@train_app.command(
    "local",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def local(ctx: typer.Context) -> None:
    """Train on this machine; every option: tryon train local --help."""
    from tryon.training.config import config_from_args
    from tryon.training.loop import train
    from tryon.weights.hub import check_model_source

    config = config_from_args(list(ctx.args), prog="tryon train local")
    # Before the 6 s of imports and any download: a wrong folder or no Hub fails in seconds.
    check_model_source(config.pretrained_model, "pretrained_model", pipeline=True)
    if config.mask_query and config.clipseg_model:
        check_model_source(config.clipseg_model, "clipseg_model")
    result = train(config)
    for name, reason in result.skipped:
        typer.echo(f"skipped {name}: {reason}", err=True)
    typer.echo(f"trained {result.global_step} steps in {result.seconds:.1f} s")
    if result.adapter_dir:
        typer.echo(f"adapter:    {result.adapter_dir}")
        ship = f"tryon train package-adapter {result.adapter_dir} --model-dir BASE --out model.tar.gz"
        typer.echo(f"ship it:    {ship}")
    if result.model_dir and not result.adapter_dir:
        typer.echo(f"unet:       {result.model_dir / 'unet'}")
    typer.echo(f"config:     {result.config_path}")
    if result.validation_path:
        typer.echo(f"validation: {result.validation_path}")
    if result.validation_history:
        typer.echo(f"metrics:    {result.validation_history}")
    if result.best_dir:
        typer.echo(f"best:       {result.best_dir} (by {config.best_metric})")


def _parse_hyperparameters(
    items: list[str], config_file: Path | None, *, with_clipseg: bool, **fixed: str
) -> dict[str, str]:
    """KEY=VALUE items (and a JSON file) -> hyperparameters, checked against TrainingConfig."""
    import json
    from dataclasses import fields

    from tryon.core.errors import RequestError
    from tryon.training.config import TrainingConfig, config_from_args

    values: dict[str, str] = {}
    if config_file is not None:
        loaded = json.loads(config_file.read_text())
        values.update(
            {k: v if isinstance(v, str) else json.dumps(v) for k, v in loaded.items() if v is not None}
        )
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise fail(f"--hp expects KEY=VALUE, got {item!r}")
        values[key.strip().replace("-", "_")] = value
    values.update({k: v for k, v in fixed.items() if v})
    known = {f.name for f in fields(TrainingConfig)}
    for key in values:
        if key not in known:
            raise RequestError(key, "is not a training option (see: tryon train local --help)")
    placeholders = dict(_CHANNEL_PLACEHOLDERS, **({"clipseg_model": "clipseg"} if with_clipseg else {}))
    argv = []
    for key, value in {**placeholders, **values}.items():
        argv += [f"--{key}", value]
    config_from_args(argv, prog="tryon train sagemaker --hp")  # raises RequestError on bad values
    return values


@train_app.command("sagemaker")
def sagemaker(
    role: Annotated[str, typer.Option(help="IAM role ARN the training job runs as.")],
    output_path: Annotated[str, typer.Option(help="s3:// prefix for model.tar.gz and checkpoints.")],
    instance_data: Annotated[
        str, typer.Option(help="s3:// prefix of the garment photos (and captions/masks).")
    ],
    instance_prompt: Annotated[str, typer.Option(help='e.g. "a photo of sks skirt".')],
    base_model: Annotated[str, typer.Option(help="s3:// prefix of a diffusers inpainting folder.")] = "",
    pretrained_model: Annotated[
        str, typer.Option(help="Hub id of the base model (if no --base-model).")
    ] = "",
    class_data: Annotated[str, typer.Option(help="s3:// prefix of class images (prior preservation).")] = "",
    mask_data: Annotated[str, typer.Option(help="s3:// prefix of garment masks <stem>.png.")] = "",
    clipseg_model: Annotated[
        str, typer.Option(help="s3:// prefix of CLIPSeg weights (for mask_query).")
    ] = "",
    metric_models: Annotated[
        str, typer.Option(help="s3:// prefix of metric networks that score validation (docs/evaluation.md).")
    ] = "",
    hp: Annotated[
        list[str], typer.Option(help="Hyperparameter KEY=VALUE (repeatable), e.g. max_train_steps=800.")
    ] = [],  # noqa: B006  (typer reads list defaults, never mutates them)
    config: Annotated[Path | None, typer.Option(help="JSON file of hyperparameters.")] = None,
    instance_type: Annotated[str, typer.Option(help="Training instance type.")] = "ml.g5.2xlarge",
    volume_size_gb: Annotated[int, typer.Option(help="EBS volume per instance, GB.")] = 100,
    max_runtime_s: Annotated[int, typer.Option(help="Stop the job after this many seconds.")] = 6 * 3600,
    spot: Annotated[
        bool, typer.Option("--spot", help="Managed spot training (resumes from checkpoints).")
    ] = False,
    max_wait_s: Annotated[
        int | None, typer.Option(help="Spot: total time to wait incl. interruptions.")
    ] = None,
    image_uri: Annotated[str, typer.Option(help="Training image (default: AWS PyTorch 2.8 GPU).")] = "",
    base_job_name: Annotated[str, typer.Option(help="Job name prefix.")] = "tryon-dreambooth-lora",
    region: Region = "",
    profile: Profile = "",
    wait: Annotated[bool, typer.Option(help="Wait for the job and stream its logs.")] = False,
) -> None:
    """Submit the fine-tune as a SageMaker training job (sagemaker SDK v3 ModelTrainer)."""
    from tryon.cli.sessions import session
    from tryon.training.sagemaker_launcher import LaunchSpec, launch

    hyperparameters = _parse_hyperparameters(
        hp,
        config,
        with_clipseg=bool(clipseg_model),
        instance_prompt=instance_prompt,
        pretrained_model=pretrained_model,
    )
    if not base_model and not hyperparameters.get("pretrained_model"):
        raise fail("give --base-model (s3:// diffusers folder) or --pretrained-model (hub id)")
    boto_session = session(region, profile)
    spec = LaunchSpec(
        role=role,
        output_path=output_path,
        instance_data=instance_data,
        class_data=class_data or None,
        mask_data=mask_data or None,
        base_model=base_model or None,
        clipseg_model=clipseg_model or None,
        metric_models=metric_models or None,
        hyperparameters=hyperparameters,
        instance_type=instance_type,
        volume_size_gb=volume_size_gb,
        max_runtime_s=max_runtime_s,
        spot=spot,
        max_wait_s=max_wait_s,
        image_uri=image_uri or None,
        base_job_name=base_job_name,
        region=boto_session.region_name,
    )
    result = launch(spec, boto_session=boto_session, wait=wait)
    typer.echo(f"training job: {result.job_name}")
    typer.echo(f"model.tar.gz: {result.model_artifacts}")
    typer.echo(f"adapter:      {result.adapter_path}")
    typer.echo(f"checkpoints:  {result.checkpoints}")


@train_app.command("package-adapter")
def package_adapter(
    adapter_dir: Annotated[Path, typer.Argument(help="Folder with pytorch_lora_weights.safetensors.")],
    out: Annotated[Path, typer.Option(help="model.tar.gz to write.")] = Path("model.tar.gz"),
    model_dir: Annotated[
        Path | None, typer.Option(help="Base inpainting weights (diffusers folder).")
    ] = None,
    name: Annotated[
        str, typer.Option(help="Ship as named adapter adapters/<name>/ (default: adapter/).")
    ] = "",
) -> None:
    """Build the inpainting endpoint's model.tar.gz with this adapter (default or named)."""
    from tryon.aws.packaging import build_model_archive

    if name:
        path = build_model_archive("sd_inpaint", out, model_dir=model_dir, named_adapters={name: adapter_dir})
    else:
        path = build_model_archive("sd_inpaint", out, model_dir=model_dir, adapter_dir=adapter_dir)
    where = f"adapters/{name}/" if name else "adapter/ (the default adapter)"
    typer.echo(f"wrote {path} with the adapter as {where}")


@train_app.command("upload-adapter")
def upload_adapter(
    adapter_dir: Annotated[Path, typer.Argument(help="Folder with pytorch_lora_weights.safetensors.")],
    s3_uri: Annotated[str, typer.Argument(help="s3://bucket/prefix/ the endpoint loads it from.")],
) -> None:
    """Upload an adapter so requests can name it by URI: {"adapter": "s3://bucket/prefix/"}."""
    from tryon.training.outputs import upload_adapter as upload

    uri = upload(adapter_dir, s3_uri)
    typer.echo(f'uploaded; use {{"adapter": "{uri}"}} in inpainting requests')
