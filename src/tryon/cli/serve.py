"""``tryon serve`` (local endpoint server) and ``tryon package`` (model.tar.gz)."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Annotated

import typer

from tryon.cli import EXIT_BAD_INPUT, app, fail
from tryon.core.kinds import MODES, check_mode
from tryon.core.schema import HANDLER_MODULES, TINY_MODEL_FOLDERS

TINY_ROOT = Path(".cache/tiny-models")

ENDPOINT_HELP = (
    "NAME=KIND:DIR, or NAME=DIR when NAME is a kind (clipseg, sd_inpaint, sd_upscale). Repeatable; "
    "NAME is the EndpointName boto3 uses."
)


def parse_endpoint_spec(spec: str):
    """``NAME=KIND:DIR`` or ``NAME=DIR`` (KIND = NAME) -> EndpointConfig; ValueError with the reason."""
    from tryon.server import EndpointConfig

    name, sep, rest = spec.partition("=")
    name = name.strip()
    if not sep or not name or not rest:
        raise ValueError(f"--endpoint {spec!r}: expected NAME=KIND:DIR or NAME=DIR")
    kind, colon, folder = rest.partition(":")
    if not colon or kind not in HANDLER_MODULES:  # no KIND: prefix (a ':' may belong to the path)
        kind, folder = name, rest
        if kind not in HANDLER_MODULES:
            raise ValueError(
                f"--endpoint {spec!r}: cannot tell the kind of {name!r}; write {name}=KIND:DIR "
                f"with KIND one of {', '.join(HANDLER_MODULES)}"
            )
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ValueError(f"--endpoint {spec!r}: model folder {path} does not exist")
    from tryon.weights.hub import check_model_source

    # A folder without weights would fall back to the kind's hub id (minutes of retries offline).
    check_model_source(str(path), f"--endpoint {spec!r}")
    return EndpointConfig(name=name, kind=kind, model_dir=str(path))


MODE_HELP = (
    f"NAME=MODE, or MODE for every endpoint; MODE is one of {', '.join(MODES)} (default realtime). "
    "Sets the SageMaker limits the server enforces (request and response size, invocation time). Repeatable."
)


def apply_modes(configs: list, specs: list[str]) -> list:
    """``configs`` with ``--mode`` specs (``NAME=MODE`` or ``MODE``) applied; ValueError says why."""
    import dataclasses

    names = {cfg.name for cfg in configs}
    modes: dict[str | None, str] = {}
    for spec in specs:
        name, sep, mode = spec.rpartition("=")
        if sep and name not in names:
            raise ValueError(
                f"--mode {spec!r}: no endpoint is named {name!r}; served: {', '.join(sorted(names))}"
            )
        try:
            modes[name if sep else None] = check_mode(mode)
        except ValueError as exc:
            raise ValueError(f"--mode {spec!r}: {exc}") from None
    return [dataclasses.replace(cfg, mode=modes.get(cfg.name, modes.get(None, cfg.mode))) for cfg in configs]


def apply_async_output(
    configs: list, output: str, failure: str, success_topic: str, error_topic: str
) -> list:
    """``configs`` whose async endpoints write to ``output`` (errors: ``failure``) and notify the topics."""
    import dataclasses

    from tryon.core.errors import RequestError
    from tryon.core.s3uri import parse_versioned_s3_uri
    from tryon.server.async_api import AsyncOutput

    asynchronous = [cfg.name for cfg in configs if cfg.mode == "async"]
    if not asynchronous:
        return configs
    if not output:
        raise ValueError(
            f"--async-output: endpoint(s) {', '.join(asynchronous)} are async; give the S3 prefix "
            "their answers go to (s3://bucket/prefix/)"
        )
    for option, uri in (("--async-output", output), ("--async-failure", failure or output)):
        try:
            parse_versioned_s3_uri(uri.rstrip("/") + "/x", field=option)
        except RequestError as exc:
            raise ValueError(str(exc)) from None
    target = AsyncOutput(output, failure or output, success_topic, error_topic)
    return [dataclasses.replace(cfg, async_output=target) if cfg.mode == "async" else cfg for cfg in configs]


def apply_shared(configs: list, endpoint: str) -> list:
    """``configs`` with every real-time one made an inference component of ``endpoint``
    (component ``<endpoint>-<its name, _ as ->``), as ``EndpointLayout=shared`` deploys them;
    the others keep their own endpoints. ValueError if none is real-time."""
    import dataclasses

    if not endpoint:
        return configs
    shared = [
        dataclasses.replace(cfg, name=endpoint, component=f"{endpoint}-{cfg.name.replace('_', '-')}")
        if cfg.mode == "realtime"
        else cfg
        for cfg in configs
    ]
    if not any(cfg.component for cfg in shared):
        raise ValueError(
            f"--shared {endpoint!r}: no real-time endpoint to host (components are real-time only)"
        )
    return shared


def _snippet(url: str, name: str) -> str:
    """What to paste into Python: a client for this server (any credentials do; boto3 must sign)."""
    return (
        "import boto3, json\n"
        f'rt = boto3.client("sagemaker-runtime", endpoint_url="{url}", region_name="us-east-1",\n'
        '                  aws_access_key_id="local", aws_secret_access_key="local")\n'
        f'resp = rt.invoke_endpoint(EndpointName="{name}", ContentType="application/json",\n'
        '                          Accept="application/json", Body=json.dumps({...}))\n'
        'print(json.loads(resp["Body"].read()))'
    )


@app.command("serve")
def serve(
    endpoint: Annotated[list[str], typer.Option("--endpoint", "-e", help=ENDPOINT_HELP)] = [],  # noqa: B006  (typer reads list defaults)
    tiny: Annotated[
        bool,
        typer.Option("--tiny", help="Serve the tiny random checkpoints as clipseg, sd_inpaint, sd_upscale."),
    ] = False,
    host: Annotated[str, typer.Option(help="Interface to bind (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="Port (8080 is the SageMaker container port; 0 picks one).", min=0, max=65535)
    ] = 8080,
    default: Annotated[
        str, typer.Option("--default", help="Endpoint behind POST /invocations (default: the first).")
    ] = "",
    mode: Annotated[list[str], typer.Option("--mode", help=MODE_HELP)] = [],  # noqa: B006  (typer reads list defaults)
    shared: Annotated[
        str,
        typer.Option(
            help="Serve every real-time model as an inference component of this one endpoint "
            "(<name>-<model> each, called with InferenceComponentName), as EndpointLayout=shared "
            "deploys them."
        ),
    ] = "",
    async_output: Annotated[
        str, typer.Option(help="S3OutputPath of the async endpoints (s3://bucket/prefix/): their answers.")
    ] = "",
    async_failure: Annotated[
        str, typer.Option(help="S3FailurePath of the async endpoints (default: --async-output).")
    ] = "",
    async_success_topic: Annotated[
        str, typer.Option(help="SNS topic ARN the async endpoints notify on success (none: no notification).")
    ] = "",
    async_error_topic: Annotated[
        str, typer.Option(help="SNS topic ARN the async endpoints notify on error (none: no notification).")
    ] = "",
    max_body_bytes: Annotated[
        int | None,
        typer.Option(
            help="The container's own cap on request and response bodies in bytes (default 6553500, "
            "the serving image's model server); each endpoint's mode may cap them lower.",
            min=1,
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="Python log level of the request log.")] = "INFO",
) -> None:
    """Serve model handlers locally over the SageMaker HTTP contracts until Ctrl-C."""
    from tryon.server import CONTAINER_MAX_BODY_BYTES, EndpointLoadError, LocalEndpointServer

    configs = []
    try:
        if tiny:
            from tryon.server import EndpointConfig
            from tryon.weights.tiny import ensure_tiny_models

            ensure_tiny_models(TINY_ROOT)
            configs += [EndpointConfig(k, k, str(TINY_ROOT / f)) for k, f in TINY_MODEL_FOLDERS.items()]
        configs += [parse_endpoint_spec(spec) for spec in endpoint]
        configs = apply_modes(configs, mode)
        configs = apply_shared(configs, shared)
        configs = apply_async_output(
            configs, async_output, async_failure, async_success_topic, async_error_topic
        )
    except ValueError as exc:
        raise fail(str(exc)) from None
    if not configs:
        raise fail("nothing to serve: give --endpoint NAME=KIND:DIR (repeatable) or --tiny")
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s", force=True
    )  # the request log is what serve shows: it replaces the quiet default (tryon.cli.output)
    try:
        server = LocalEndpointServer(
            configs,
            host=host,
            port=port,
            default=default or None,
            max_body_bytes=max_body_bytes or CONTAINER_MAX_BODY_BYTES,
            wait_for_models=False,
        )
        server.start()
    except ValueError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        typer.echo(f"serving on {server.url} (loading {len(configs)} model(s); GET {server.url}/ping)")
        for cfg in configs:
            route = "async-invocations" if cfg.mode == "async" else "invocations"
            component = f" (InferenceComponentName {cfg.component})" if cfg.component else ""
            typer.echo(
                f"  {cfg.key:<12} {cfg.kind:<11} {cfg.mode:<10} {cfg.model_dir}  "
                f"POST /endpoints/{cfg.name}/{route}{component}"
            )
        typer.echo(f"  POST /invocations -> {server.registry.default}")
        try:
            server.wait_until_loaded()
        except EndpointLoadError as exc:
            raise fail(str(exc)) from None
        typer.echo(
            f"ready. From Python:\n\n{_snippet(server.url, configs[0].name)}\n\nCtrl-C stops the server."
        )
        while server.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        typer.echo("stopping")
    finally:
        server.stop()


@app.command("package")
def package(
    kind: Annotated[str, typer.Argument(help="Endpoint kind: clipseg, sd_inpaint or sd_upscale.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Archive to write.")] = Path("model.tar.gz"),
    model_dir: Annotated[
        Path | None, typer.Option(help="Weights (diffusers/transformers folder) for the archive root.")
    ] = None,
    adapter: Annotated[
        Path | None, typer.Option(help="Default LoRA adapter folder (sd_inpaint) -> adapter/.")
    ] = None,
    named_adapter: Annotated[
        list[str], typer.Option(help="NAME=DIR LoRA adapter (sd_inpaint) -> adapters/NAME/. Repeatable.")
    ] = [],  # noqa: B006  (typer reads list defaults)
    ip_adapter: Annotated[
        Path | None,
        typer.Option(help="IP-Adapter folder (weights + image_encoder/; sd_inpaint) -> ip_adapter/."),
    ] = None,
    refiner: Annotated[
        Path | None,
        typer.Option(
            help="SDXL refiner folder (sd_inpaint, SDXL --model-dir) -> refiner/, without its shared parts."
        ),
    ] = None,
    controlnet: Annotated[
        list[str],
        typer.Option(
            help="CONTROL=DIR ControlNet (sd_inpaint, SD 1.5 / SDXL --model-dir; CONTROL: depth or pose) "
            "-> controlnet_CONTROL/. Repeatable."
        ),
    ] = [],  # noqa: B006  (typer reads list defaults)
    depth: Annotated[
        Path | None,
        typer.Option(
            help="Depth estimator (transformers, e.g. Depth Anything) for keep_body depth -> depth_estimator/"
        ),
    ] = None,
    pose: Annotated[
        Path | None,
        typer.Option(help="Pose estimator (transformers ViTPose) for keep_body pose -> pose_estimator/."),
    ] = None,
    person_detector: Annotated[
        Path | None,
        typer.Option(
            help="Person detector (transformers, e.g. RT-DETR) for the pose estimator -> person_detector/."
        ),
    ] = None,
    compress_level: Annotated[int, typer.Option(help="gzip level (1 fast .. 9 small).", min=0, max=9)] = 6,
) -> None:
    """Build model.tar.gz for a SageMaker endpoint: weights at the root, code/ with the handler."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from tryon.aws.packaging import PackagingError, build_model_archive, plan_archive

    named: dict[str, Path] = {}
    for spec in named_adapter:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise fail(f"--named-adapter {spec!r}: expected NAME=DIR")
        if name in named:
            raise fail(f"--named-adapter: {name!r} is given twice")
        named[name] = Path(folder)
    controls = _control_dirs(controlnet, depth=depth, pose=pose, person_detector=person_detector)
    if model_dir is None:
        typer.echo("note: no --model-dir; the endpoint will load HF_MODEL_ID (or its hub id) at start")
    try:
        entries = plan_archive(
            kind,
            model_dir=model_dir,
            adapter_dir=adapter,
            named_adapters=named,
            ip_adapter_dir=ip_adapter,
            refiner_dir=refiner,
            control_dirs=controls,
        )
        total = sum(e.size for e in entries)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            transient=True,
        ) as bar:
            task = bar.add_task(f"packaging {kind}", total=total)
            path = build_model_archive(
                kind,
                out,
                model_dir=model_dir,
                adapter_dir=adapter,
                named_adapters=named,
                ip_adapter_dir=ip_adapter,
                refiner_dir=refiner,
                control_dirs=controls,
                compresslevel=compress_level,
                progress=lambda _name, nbytes: bar.advance(task, nbytes),
            )
    except PackagingError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    files = sum(1 for e in entries if e.source is not None)
    size = path.stat().st_size
    typer.echo(f"wrote {path} ({size / 1e6:.1f} MB from {total / 1e6:.1f} MB in {files} files)")
    typer.echo(f"sha256 {digest.hexdigest()}")


def _control_dirs(
    controlnets: list[str], *, depth: Path | None, pose: Path | None, person_detector: Path | None
) -> dict[str, Path]:
    """Model-folder name -> folder of every body-control option of ``tryon package``."""
    from tryon.handlers.controls import CONTROLNET_FOLDERS, ESTIMATOR_FOLDERS, PERSON_DETECTOR_FOLDER

    folders: dict[str, Path] = {}
    for spec in controlnets:
        control, sep, folder = spec.partition("=")
        if not sep or not folder or control not in CONTROLNET_FOLDERS:
            raise fail(
                f"--controlnet {spec!r}: expected CONTROL=DIR, CONTROL one of {', '.join(CONTROLNET_FOLDERS)}"
            )
        if CONTROLNET_FOLDERS[control] in folders:
            raise fail(f"--controlnet: {control!r} is given twice")
        folders[CONTROLNET_FOLDERS[control]] = Path(folder)
    for folder_name, given in (
        (ESTIMATOR_FOLDERS["depth"], depth),
        (ESTIMATOR_FOLDERS["pose"], pose),
        (PERSON_DETECTOR_FOLDER, person_detector),
    ):
        if given is not None:
            folders[folder_name] = given
    return folders
