"""Workflow commands: ``demo`` and ``run`` on one machine; ``submit``, ``status``, ``results`` on a stack."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from tryon.aws.executions import ExecutionResult, StateEvent, format_event
from tryon.cli import EXIT_OK, EXIT_WORKFLOW_FAILED, app, fail
from tryon.cli.job_options import job_options
from tryon.cli.output import emit_json, function_log_level
from tryon.cli.sessions import Profile, Region
from tryon.core import schema
from tryon.core.kinds import check_kind, check_mode
from tryon.core.schema import TINY_MODEL_FOLDERS

# Per-job overrides shared by `run` and `submit`: one option per job parameter (tryon.cli.job_options,
# from the schema's rows; docs/workflow.md lists every parameter), and these.
Preset = Annotated[
    str | None,
    typer.Option(
        help="Named preset(s), comma-separated: draft, standard, quality; a garment class (upper-body, "
        "lower-body, dress, full-body, footwear); or your own."
    ),
]
Garments = Annotated[
    list[str],
    typer.Option(
        "--garment",
        help="[CLASS=]WHAT: a garment's packshot file (conditions the painting; needs an IP-Adapter), "
        "adapter:NAME, or both (adapter:jeans+jeans.jpg). With CLASS= (upper, lower, dress, full, outer, "
        "shoes, or a class's full name) each names a garment of an outfit (up to 3, painted in the "
        "order they are worn); repeat for more, or the same CLASS= to add to one.",
    ),
]
MaskModes = Annotated[
    list[str],
    typer.Option(
        "--mask-mode",
        help="[CLASS=]MODE[:ARG]: where a garment goes: text:QUERY (CLIPSeg), class (its class's own "
        "query; class:CLASS for a lone garment), image:FILE or image:s3://... (a painted mask, white "
        "paints), box:x0,y0,x1,y1 (fractions or pixels). Other garment parameters: --set CLASS.NAME=VALUE.",
    ),
]
#: What ``tryon run --help`` and ``tryon submit --help`` show after the description.
OUTFIT_EXAMPLE = """\b
An outfit (lower body painted first, then the top; docs/workflow.md, "Outfits"):
  tryon run photo.jpg --garment upper=packshot.jpg \\
    --garment lower=adapter:jeans --mask-mode lower=box:0,0.5,1,1 \\
    --set upper.prompt="a silk blouse"
"""
Modes = Annotated[
    list[str],
    typer.Option(
        "--mode",
        help="KIND=MODE: serve an endpoint kind realtime, serverless or async; the workflow takes the "
        "matching path (async: S3 request, SNS notification, task-token callback). Repeatable.",
    ),
]
Sets = Annotated[list[str], typer.Option("--set", help="Any other parameter: NAME=VALUE (repeatable).")]
Layout = Annotated[
    str,
    typer.Option(
        help="separate: one endpoint per model; shared: the real-time models as inference components of "
        "ONE endpoint, called by component name (as EndpointLayout=shared deploys them)."
    ),
]
ModerationOff = Annotated[
    str | None,
    typer.Option(
        "--moderation-off",
        metavar="REASON",
        help="Run without the image checks (the local stand-in for Rekognition), saying why: the "
        "manifest records it (template parameters ContentModeration=off, ContentModerationOffReason). "
        "The prompt policy stays on.",
    ),
]
Out = Annotated[Path, typer.Option(help="Folder for mask, images, manifest and preview.")]
Json = Annotated[
    bool,
    typer.Option("--json", help="Print one JSON object on stdout for scripts (progress goes to stderr)."),
]


def _overrides(sets: list[str], named: dict[str, Any]) -> dict[str, Any]:
    """The job options given, then each ``--set NAME=VALUE`` (any parameter, by its job name)."""
    values = dict(named)
    for item in sets:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise fail(f"--set expects NAME=VALUE, got {item!r}")
        values[name.replace("-", "_")] = value
    return values


def _printer(as_json: bool) -> Callable[[StateEvent], None]:
    """Prints state events: on stdout, or on stderr when stdout carries the JSON answer."""
    return lambda event: typer.echo(format_event(event), err=as_json)


def refused(result: ExecutionResult) -> bool:
    """Whether the content policy refused the job (the execution succeeds with status ``refused``)."""
    return result.succeeded and (result.output or {}).get("status") == "refused"


def ended_well(result: ExecutionResult) -> bool:
    """Succeeded with a result (or no garment found): not failed, not refused."""
    return result.succeeded and not refused(result)


def result_json(result: ExecutionResult, files: list[Path] | None = None) -> dict[str, Any]:
    """What ``--json`` prints for an execution: scripts read this, not the human lines."""
    from tryon.aws.executions import failure_summary

    failure = result.failure or {}
    answer: dict[str, Any] = {
        "execution": result.execution_arn,
        "status": result.status,
        "outcome": (result.output or {}).get("status") if result.succeeded else None,
        "artifact": result.artifact_uri,
        "output": result.output,
        "error": None if ended_well(result) else (failure.get("error") or result.error),
        "cause": None if ended_well(result) else failure_summary(result)[1],
    }
    if files is not None:
        answer["files"] = [str(path) for path in files]
    return answer


#: What to do about an endpoint failure, by error name: the workflow's message says it for AWS,
#: this says which option does it here.
_LOCAL_HINTS = {
    "EndpointTimeout": "--mode {kind}=async runs it on an asynchronous endpoint",
}


def local_hint(error: str, cause: str) -> str:
    """The ``tryon run``/``demo`` option that fixes a failure, if there is one ("" otherwise)."""
    from tryon.workflow.report import STEP_ENDPOINTS

    template = _LOCAL_HINTS.get(error)
    step = cause.split(":", 1)[0]
    if template is None or step not in STEP_ENDPOINTS:
        return ""
    return template.format(kind=STEP_ENDPOINTS[step])


def _report(result: ExecutionResult, files: list[Path], *, as_json: bool = False,
            hint: Callable[[str, str], str] | None = None) -> int:  # fmt: skip
    """Print the outcome and the files (or the JSON answer); the exit code scripts can rely on.

    A failure prints one ``error:`` line (the step, the cause in words, what to do) and then
    where its failure record is, both on stderr; stdout keeps the state list (or the JSON).
    A job the content policy refused is reported (and exits 1) the same way: it has no result.
    """
    from tryon.aws.executions import failure_summary

    if not ended_well(result):
        error, cause, record = failure_summary(result)
        extra = hint(error, cause) if hint is not None else ""
        message = f"{cause}; here: {extra}" if extra else cause
        typer.secho(f"error: {message}", err=True, fg="red")
        if not as_json:
            copies = [str(path) for path in files if path.name == "failure.json"]
            where = f"{record} (copied to {copies[0]})" if record and copies else record or ", ".join(copies)
            if where:
                typer.echo(f"failure record: {where}", err=True)
    if as_json:
        emit_json(result_json(result, files))
    elif result.succeeded:
        status = (result.output or {}).get("status", result.status)
        typer.echo(f"execution {result.status}: {status}")
        if files:
            typer.echo("  " + "  ".join(str(path) for path in files))
    return EXIT_OK if ended_well(result) else EXIT_WORKFLOW_FAILED


def _tiny_model_dirs() -> dict[str, str]:
    from tryon.weights.tiny import ensure_tiny_models

    tiny = ensure_tiny_models()
    return {kind: str(tiny[folder]) for kind, folder in TINY_MODEL_FOLDERS.items()}


def resolve_models(models: list[str]) -> tuple[dict[str, str], bool]:
    """KIND=DIR|HUB-ID assignments over the tiny defaults; also says whether all three are tiny."""
    from tryon.aws.sagemaker_endpoints import parse_assignments
    from tryon.weights.hub import check_model_source

    chosen = {
        kind: check_model_source(source, f"--models {kind}")
        for kind, source in parse_assignments(models, "--models").items()
    }
    dirs = _tiny_model_dirs() if len(chosen) < 3 else {}
    dirs.update(chosen)
    return dirs, not chosen


def _garment_specs(garments: list[str], masks: list[str]) -> Any:
    """``--garment`` and ``--mask-mode`` as job overrides and files to upload (one-line errors)."""
    from tryon.cli import garment_specs

    return garment_specs.parse(garments, masks)


def _modes(specs: list[str]) -> dict[str, str]:
    """``--mode KIND=MODE`` options as endpoint kind -> serving mode."""
    modes: dict[str, str] = {}
    for spec in specs:
        kind, sep, mode = spec.partition("=")
        try:
            if not sep:
                raise ValueError("expected KIND=MODE, e.g. sd_inpaint=async")
            offered = schema.kind(check_kind(kind)).modes
            if check_mode(mode) not in offered:  # the template's <Kind>Mode refuses it too
                raise ValueError(f"{kind} endpoints serve {' or '.join(offered)}, not {mode}")
            modes[kind] = mode
        except ValueError as exc:
            raise fail(f"--mode {spec!r}: {exc}") from None
    return modes


def moderation_parameters(reason: str | None) -> dict[str, str]:
    """The template parameters ``--moderation-off REASON`` sets (none without it; a reason is required)."""
    if reason is None:
        return {}
    if not reason.strip():
        raise fail("--moderation-off needs a reason (who decided and why): every manifest records it")
    return {"ContentModeration": "off", "ContentModerationOffReason": reason.strip()}


def _run_locally(photo: Path, overrides: dict[str, Any], *, models: list[str], out: Path, preset: str | None,
                 upscale: bool | None, progress: bool, as_json: bool = False,
                 modes: list[str] | None = None, garments: list[str] | None = None,
                 masks: list[str] | None = None, layout: str = "separate",
                 moderation_off: str | None = None) -> int:  # fmt: skip
    from tryon.core.kinds import LAYOUTS
    from tryon.local.runner import TINY_PARAMETERS, check_job, check_photo, run_photo

    if layout not in LAYOUTS:
        raise fail(f"--layout: must be {' or '.join(LAYOUTS)}, got {layout!r}")
    moderation = moderation_parameters(moderation_off)
    header = check_photo(photo)
    specs = _garment_specs(garments or [], masks or [])
    for item in specs.uploads:
        check_photo(item.path, field=item.option)
    overrides = {**overrides, **specs.overrides}
    endpoint_modes = _modes(modes or [])
    # no --models: the tiny checkpoints; --moderation-off: the stack's moderation parameters
    parameters = {**(TINY_PARAMETERS if not models else {}), **moderation} or None
    # bad values, presets, outfits, the content policy and an upscale the upscaler's mode cannot
    # finish fail here, with Prepare's own message, before any model loads
    check_job(
        header,
        overrides,
        preset,
        parameters=parameters,
        upscale=upscale is not False,
        modes=endpoint_modes,
        uploads=specs.uploads,
    )
    if progress:
        os.environ["TRYON_PROGRESS_BARS"] = "1"
    model_dirs, all_tiny = resolve_models(models)
    if all_tiny:
        typer.echo(
            "models: tiny random checkpoints (the images are noise; pass --models for real ones)", err=as_json
        )
    run = run_photo(
        photo,
        model_dirs=model_dirs,
        out_dir=out,
        overrides=overrides,
        preset=preset,
        upscale=upscale is not False,
        parameters=parameters,
        on_event=_printer(as_json),
        on_status=lambda msg: typer.echo(msg, err=as_json),
        modes=endpoint_modes,
        uploads=specs.uploads,
        log_level=function_log_level(),
        layout=layout,
    )
    return _report(run.result, run.files, as_json=as_json, hint=local_hint)


@app.command()
def demo(
    out: Out = Path("out"),
    upscale: Annotated[bool, typer.Option("--upscale/--no-upscale", help="Run the x4 upscaler too.")] = True,
    models: Annotated[
        list[str], typer.Option(help="KIND=DIR|HUB-ID: real checkpoints instead of the tiny ones.")
    ] = [],  # noqa: B006  (typer reads list defaults, never mutates them)
    mode: Modes = [],  # noqa: B006
    layout: Layout = "separate",
) -> None:
    """The whole workflow on one machine: the sample photo, the real state machine, handlers and models."""
    import tempfile

    from tryon.local.runner import DEMO_OVERRIDES, DEMO_PHOTO, DEMO_TINY_SIDE, REPO_ROOT, demo_photo

    shown = DEMO_PHOTO.relative_to(REPO_ROOT)  # the sample ships with the repository
    size = "" if models else f", at {DEMO_TINY_SIDE} px for the tiny checkpoints"
    typer.echo(
        f"photo: {shown}{size} (query {DEMO_OVERRIDES['query']!r}, prompt {DEMO_OVERRIDES['prompt']!r})"
    )
    overrides = {**DEMO_OVERRIDES, "upscale": upscale}
    with tempfile.TemporaryDirectory(prefix="tryon-demo-") as folder:
        code = _run_locally(
            demo_photo(not models, Path(folder)),
            overrides,
            models=models,
            out=out,
            preset=None,
            upscale=upscale,
            progress=False,
            modes=mode,
            layout=layout,
        )
    raise typer.Exit(code)


@app.command("run", epilog=OUTFIT_EXAMPLE)
@job_options
def run_(
    image: Annotated[Path, typer.Argument(help="Your photo (JPEG, PNG or WebP).")],
    overrides: dict[str, Any],
    preset: Preset = None,
    garment: Garments = [],  # noqa: B006
    mask_mode: MaskModes = [],  # noqa: B006
    set_: Sets = [],  # noqa: B006
    models: Annotated[
        list[str],
        typer.Option(help="KIND=DIR|HUB-ID for clipseg, sd_inpaint, sd_upscale (default: tiny ones)."),
    ] = [],  # noqa: B006
    out: Out = Path("out"),
    mode: Modes = [],  # noqa: B006
    layout: Layout = "separate",
    progress: Annotated[bool, typer.Option(help="Progress bars for model loading and diffusion.")] = True,
    as_json: Json = False,
    moderation_off: ModerationOff = None,
) -> None:
    """The local workflow on your own photo, with your own (or the tiny) checkpoints."""
    overrides = _overrides(set_, overrides)
    raise typer.Exit(
        _run_locally(
            image,
            overrides,
            models=models,
            out=out,
            preset=preset,
            upscale=overrides.get("upscale"),
            progress=progress,
            as_json=as_json,
            modes=mode,
            garments=garment,
            masks=mask_mode,
            layout=layout,
            moderation_off=moderation_off,
        )
    )


def _clients(region: str, profile: str) -> tuple[Any, Any, Any]:
    from tryon.cli.sessions import session as aws_session

    session = aws_session(region, profile)
    return session.client("cloudformation"), session.client("s3"), session.client("stepfunctions")


StackName = Annotated[str, typer.Option("--stack", help="Name of the deployed CloudFormation stack.")]
Timeout = Annotated[float, typer.Option(help="Seconds to wait for the execution.")]


@app.command(epilog=OUTFIT_EXAMPLE)
@job_options
def submit(
    image: Annotated[Path, typer.Argument(help="Your photo (JPEG, PNG or WebP).")],
    stack: StackName,
    overrides: dict[str, Any],
    preset: Preset = None,
    garment: Garments = [],  # noqa: B006
    mask_mode: MaskModes = [],  # noqa: B006
    set_: Sets = [],  # noqa: B006
    name: Annotated[
        str | None, typer.Option(help="Object name under the input prefix (default: file name).")
    ] = None,
    out: Out = Path("out"),
    follow: Annotated[bool, typer.Option(help="Follow the execution and download the results.")] = True,
    region: Region = "",
    profile: Profile = "",
    timeout: Timeout = 3600.0,
    as_json: Json = False,
) -> None:
    """Upload a photo to a deployed stack (overrides as metadata), follow its execution, download results.

    Packshot files (--garment) and painted masks (--mask-mode image:FILE) are uploaded first under
    the stack's garment and mask prefixes, and the photo's metadata names those very versions, as
    tryon run does locally.
    """
    from tryon.aws import stack as stacks
    from tryon.aws.executions import follow_execution
    from tryon.local.runner import check_parameters, check_photo

    check_photo(image, name=name)  # before any AWS call
    specs = _garment_specs(garment, mask_mode)
    for item in specs.uploads:
        check_photo(item.path, field=item.option)
    overrides = {**_overrides(set_, overrides), **specs.overrides}
    # bad values, presets, outfits and what the stack's Prepare would refuse by the content
    # policy fail here, before any AWS call
    check_parameters(overrides, preset, uploads=specs.uploads)
    cfn, s3, sfn = _clients(region, profile)
    found = stacks.find_stack(cfn, stack)
    upload, uris = stacks.upload_job(
        s3, found, image, overrides=overrides, preset=preset, files=specs.uploads, name=name
    )
    for item in specs.uploads:
        typer.echo(f"uploaded the {item.kind} {uris[item.override]}", err=as_json)
    uri = f"s3://{upload.bucket}/{upload.key}"
    typer.echo(f"uploaded {uri}", err=as_json)
    if not follow:
        if as_json:
            emit_json({"uploaded": uri, "version_id": upload.version_id})
        return
    arn = stacks.find_execution(sfn, found, upload, timeout_seconds=min(timeout, 300.0))
    typer.echo(f"execution {arn}", err=as_json)
    result = follow_execution(sfn, arn, timeout=timeout, poll_s=2.0, on_event=_printer(as_json))
    raise typer.Exit(_report(result, stacks.download_results(s3, result.artifact_uri, out), as_json=as_json))


@app.command()
def status(
    execution: Annotated[str, typer.Argument(help="Execution ARN or name, or a job id.")],
    stack: StackName,
    region: Region = "",
    profile: Profile = "",
    as_json: Json = False,
) -> None:
    """Where an execution stands: its status, its states with durations, and its outcome."""
    from tryon.aws import stack as stacks
    from tryon.aws.executions import snapshot

    cfn, _s3, sfn = _clients(region, profile)
    found = stacks.find_stack(cfn, stack)
    result = snapshot(sfn, stacks.resolve_execution(sfn, found, execution))
    show = _printer(as_json)
    for event in result.events:
        show(event)
    if as_json:
        emit_json(result_json(result))
    else:
        typer.echo(
            json.dumps({"status": result.status, "output": result.output, "artifact": result.artifact_uri})
        )
    ended = result.status in {"FAILED", "TIMED_OUT", "ABORTED"} or refused(result)
    raise typer.Exit(EXIT_WORKFLOW_FAILED if ended else EXIT_OK)


@app.command()
def results(
    execution: Annotated[str, typer.Argument(help="Execution ARN or name, or a job id.")],
    stack: StackName,
    out: Out = Path("out"),
    region: Region = "",
    profile: Profile = "",
    as_json: Json = False,
) -> None:
    """Download what an execution wrote (its result folder, or its failure record)."""
    from tryon.aws import stack as stacks
    from tryon.aws.executions import snapshot

    cfn, s3, sfn = _clients(region, profile)
    found = stacks.find_stack(cfn, stack)
    result = snapshot(sfn, stacks.resolve_execution(sfn, found, execution))
    if result.status == "RUNNING":
        raise fail(f"execution is still RUNNING; follow it with `tryon status {execution} --stack {stack}`")
    raise typer.Exit(_report(result, stacks.download_results(s3, result.artifact_uri, out), as_json=as_json))
