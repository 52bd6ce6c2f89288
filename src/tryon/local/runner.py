"""One photo through the local workflow, as a user would: what ``tryon demo`` and ``tryon run`` do.

The photo is uploaded to the (moto) input bucket with the overrides as object metadata;
the template's EventBridge rule starts the execution, which is found the way ``tryon
submit`` finds it in AWS; the states are reported as they start and end, and everything
the deployed stack would write is copied to ``out_dir``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from tryon.aws.executions import ExecutionResult, StateEvent
from tryon.aws.stack import CONTENT_TYPES
from tryon.core import imaging, schema
from tryon.core.errors import RequestError
from tryon.workflow import params

REPO_ROOT = Path(__file__).resolve().parents[3]
DEMO_PHOTO = REPO_ROOT / "assets" / "astronaut.jpg"
DEMO_OVERRIDES = {"query": "an orange space suit", "prompt": "a red plaid flannel shirt", "seed": 1234}
#: With the tiny checkpoints the demo works on a copy of its photo this many px per side: the tiny
#: upscaler's cost grows with the photo's pixels (its VAE decodes a 4x image), and at 512 px it
#: took 21 s for one step on this shared 2-core machine at load 10, 1 s on an idle one; at 256 px
#: about 5 s for two steps at load 10 (docs/benchmarks.md#upscaler-time-budget): far inside the
#: real-time 60 s limit, which the local stack enforces as AWS does.
DEMO_TINY_SIDE = 256
#: Template parameters that keep the tiny random checkpoints quick (their images are noise anyway).
TINY_PARAMETERS = {
    schema.param("steps").template_parameter: 4,
    schema.param("upscale_steps").template_parameter: 2,
}
#: Files of an earlier run in ``out_dir`` that a new run replaces.
_OUTPUT_PATTERNS = (
    "mask.png",
    "mask-*.png",
    "clipseg*.png",
    "keep*.png",
    "painted*.png",
    "inpainted-*.png",
    "upscaled-*.png",
    "manifest.json",
    "preview.jpg",
    "failure.json",
)


#: Where each kind of file a job names is uploaded: the template parameter holding its prefix.
UPLOAD_PREFIXES = {"garment": "GarmentPrefix", "mask": "MaskPrefix"}


class FileUpload(Protocol):
    """A local file a job names (:class:`tryon.cli.garment_specs.Upload`)."""

    override: str  # the job parameter its URI fills: garment_image, upper-body.mask_image, ...
    path: Path
    kind: str  # garment | mask (UPLOAD_PREFIXES)
    option: str  # the command-line option that named it, for errors


@dataclass(frozen=True)
class _Packshot:
    """``garment=``: a lone job's packshot, as ``--garment FILE`` names it."""

    path: Path
    override: str = "garment_image"
    kind: str = "garment"
    option: str = "--garment"


def _uploads(uploads: Sequence[FileUpload], garment: Path | None) -> list[FileUpload]:
    return [*uploads, *([_Packshot(garment)] if garment is not None else [])]


@dataclass
class LocalRun:
    """The execution's outcome and the files written to ``out_dir``."""

    result: ExecutionResult
    key: str
    files: list[Path]


def check_photo(photo: Path, *, name: str | None = None, field: str = "IMAGE") -> imaging.ImageHeader:
    """Refuse a photo Prepare would refuse, before any model loads or any AWS call.

    The file must exist and decode fully within the default input limits, and the object
    name it is uploaded under (``name``, else the file name) must end with a suffix the
    EventBridge rule forwards, or no execution would ever start. ``field`` names it in
    errors (``--garment`` for a garment's packshot, checked the same way).
    """
    from tryon.workflow.settings import IMAGE_SUFFIXES

    if not photo.is_file():
        raise RequestError(field, f"{photo} is not a file")
    key = name or photo.name
    if not key.lower().endswith(IMAGE_SUFFIXES):
        raise RequestError(
            "--name" if name else field, f"{key} must end with one of {', '.join(IMAGE_SUFFIXES)}"
        )
    data = photo.read_bytes()
    header = imaging.read_header(data, field=field)
    imaging.decode_image(data, field=field).close()
    return header


def demo_photo(tiny: bool, folder: Path) -> Path:
    """The demo's photo: the sample itself, or with the tiny checkpoints a 256 px copy in ``folder``.

    The copy keeps the sample's file name, so the object key and the results' prefix are the same.
    """
    if not tiny:
        return DEMO_PHOTO
    from PIL import Image

    copy = folder / DEMO_PHOTO.name
    with Image.open(DEMO_PHOTO) as photo:
        photo.convert("RGB").resize((DEMO_TINY_SIDE, DEMO_TINY_SIDE), Image.Resampling.LANCZOS).save(
            copy, quality=95
        )
    return copy


def prepare_environment(
    parameters: Mapping[str, Any] | None = None,
    *,
    upscale: bool = True,
    modes: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Prepare's environment in the local stack these arguments start: job defaults, presets, modes."""
    from tryon.local.harness import stack_template
    from tryon.workflow.params import PRESETS_PARAMETER_VARIABLE, PRESETS_VARIABLE

    template = stack_template(None, parameters, upscale=upscale, modes=modes)
    env = template.function_environment("PrepareFunction")
    # no stack runs yet, so no SSM parameter holds the presets: the template parameter's value does
    return {**env, PRESETS_PARAMETER_VARIABLE: "", PRESETS_VARIABLE: template.parameters["Presets"]}


def check_parameters(
    overrides: Mapping[str, Any],
    preset: str | None = None,
    *,
    uploads: Sequence[FileUpload] = (),
    env: Mapping[str, str] | None = None,
) -> Any:
    """A job's parameters checked as Prepare checks them, before any file uploads or model loads.

    Values, the preset's name, each garment of an outfit (its class, mask mode and what the mode
    needs) and every garment's text against the content policy, resolved against the job defaults
    and presets of ``env`` (Prepare's environment; default: the template's defaults). Files the
    job names (``uploads``) count as given. Returns the :class:`tryon.workflow.outfit.Resolved` job.
    """
    from tryon.core import content_policy
    from tryon.workflow import outfit

    named = {**overrides, **{item.override: f"s3://check/{item.kind}s/{item.path.name}" for item in uploads}}
    metadata = params.to_metadata(named, preset)
    values, named_preset, _ignored = params.metadata_overrides(metadata)
    resolved = outfit.resolve_outfit(
        defaults=params.template_defaults(env),
        preset_table=params.presets(env),
        preset=named_preset,
        metadata=values,
        console={},
        metadata_garments=outfit.metadata_garments(metadata),
    )
    for item in resolved.garments:
        content_policy.check_job_text(
            {**resolved.params, **item.params}, label=item.label, mask_mode=item.mode
        )
    return resolved


def check_job(
    header: imaging.ImageHeader,
    overrides: Mapping[str, Any],
    preset: str | None = None,
    *,
    parameters: Mapping[str, Any] | None = None,
    upscale: bool = True,
    modes: Mapping[str, str] | None = None,
    uploads: Sequence[FileUpload] = (),
) -> dict[str, Any] | None:
    """Check a job as the local stack's Prepare will, before any model loads; its upscale plan (or None).

    :func:`check_parameters` against the stack's own job defaults and presets, then an upscale is
    held against the upscaler's mode and time limit (:func:`tryon.workflow.job.check_upscalable`):
    what Prepare would refuse is refused here, in about a second, with Prepare's message.
    """
    from tryon.workflow.job import check_upscalable
    from tryon.workflow.settings import Settings

    env = prepare_environment(parameters, upscale=upscale, modes=modes)
    effective = check_parameters(overrides, preset, uploads=uploads, env=env).params
    settings = Settings.from_env(env)
    if not (effective["upscale"] and settings.upscaler_configured):
        return None
    return check_upscalable(settings, header, effective)


def _clear_previous(out_dir: Path) -> None:
    for pattern in _OUTPUT_PATTERNS:
        for stale in out_dir.glob(pattern):
            stale.unlink()


def run_photo(
    photo: Path,
    *,
    model_dirs: Mapping[str, str | os.PathLike[str]],
    out_dir: Path,
    overrides: Mapping[str, Any],
    preset: str | None = None,
    upscale: bool = True,
    parameters: Mapping[str, Any] | None = None,
    on_event: Callable[[StateEvent], None] | None = None,
    on_status: Callable[[str], None] = lambda _msg: None,
    timeout: float = 3600.0,
    modes: Mapping[str, str] | None = None,
    garment: Path | None = None,
    uploads: Sequence[FileUpload] = (),
    log_level: str | None = "WARNING",
    layout: str = "separate",
) -> LocalRun:
    """Upload ``photo`` with ``overrides`` as metadata, run the workflow, copy its outputs to ``out_dir``.

    ``uploads``: files the job names (a garment's packshot, a painted mask), each uploaded
    first under the stack's garment or mask prefix; the override it fills (``garment_image``,
    ``upper-body.mask_image``, ...) names that very version in the photo's metadata.
    ``garment``: a lone job's packshot (``garment_image``). ``log_level``: the functions'
    structured logs (on stderr; ``CRITICAL`` keeps them quiet). ``layout``: ``separate``
    endpoints, or ``shared`` (the real-time kinds as inference components of one endpoint).
    """
    check_photo(photo)
    for item in _uploads(uploads, garment):
        check_photo(item.path, field=item.option)
    params.to_metadata(overrides, preset)  # bad values fail before the stack starts
    on_status("starting the local stack and loading the models")
    with open_workflow(
        model_dirs, parameters=parameters, upscale=upscale, modes=modes, log_level=log_level, layout=layout
    ) as wf:
        return run_in(
            wf,
            photo,
            out_dir=out_dir,
            overrides=overrides,
            preset=preset,
            on_event=on_event,
            on_status=on_status,
            timeout=timeout,
            garment=garment,
            uploads=uploads,
        )


def open_workflow(
    model_dirs: Mapping[str, str | os.PathLike[str]],
    *,
    parameters: Mapping[str, Any] | None = None,
    upscale: bool = True,
    modes: Mapping[str, str] | None = None,
    log_level: str | None = "WARNING",
    layout: str = "separate",
) -> Any:
    """The local stack as ``tryon run`` uses it (uploads start executions): a context manager.

    ``layout``: ``separate`` endpoints, or ``shared`` (the real-time kinds as inference
    components of one endpoint)."""
    from tryon.local.harness import LocalWorkflow

    return LocalWorkflow(
        model_dirs,
        parameters=parameters,
        upscale=upscale,
        modes=modes,
        deliver_events=True,
        log_level=log_level,
        layout=layout,
    )


def run_in(
    wf: Any,
    photo: Path,
    *,
    out_dir: Path,
    overrides: Mapping[str, Any],
    preset: str | None = None,
    on_event: Callable[[StateEvent], None] | None = None,
    on_status: Callable[[str], None] = lambda _msg: None,
    timeout: float = 3600.0,
    garment: Path | None = None,
    uploads: Sequence[FileUpload] = (),
    name: str | None = None,
) -> LocalRun:
    """One photo through an open local stack (:func:`open_workflow`), outputs copied to ``out_dir``.

    ``name``: the object name under the input prefix (default: the file name); several runs in
    one stack give each its own, or the upload of one would be mistaken for another's.
    """
    from tryon.aws.stack import Stack, Upload, find_execution
    from tryon.core.s3uri import s3_uri

    header = check_photo(photo, name=name)
    files = _uploads(uploads, garment)
    headers = [check_photo(item.path, field=item.option) for item in files]
    named = dict(overrides)
    for item, file_header in zip(files, headers, strict=True):
        key = wf.template.parameters[UPLOAD_PREFIXES[item.kind]] + item.path.name
        put = wf.upload(item.path, key, content_type=CONTENT_TYPES[file_header.format])
        named[item.override] = s3_uri(put["bucket"], put["key"], put["version_id"])
        on_status(f"uploaded the {item.kind} {named[item.override]}")
    metadata = params.to_metadata(named, preset)
    content_type = CONTENT_TYPES[header.format]
    started = datetime.now(UTC)
    key = f"{wf.input_prefix}{name}" if name else None
    uploaded = wf.upload(photo, key, metadata=metadata, content_type=content_type)
    on_status(f"uploaded s3://{uploaded['bucket']}/{uploaded['key']}")
    stack = Stack(wf.stack_name, wf.input_bucket, wf.output_bucket, wf.input_prefix, wf.state_machine_arn)
    upload = Upload(uploaded["bucket"], uploaded["key"], uploaded["version_id"], started)
    arn = find_execution(wf.client("stepfunctions"), stack, upload, timeout_seconds=30, poll_seconds=0.1)
    on_status(f"EventBridge started {arn.rsplit(':', 1)[-1]}")
    result = wf.wait(arn, timeout=timeout, on_event=on_event)
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear_previous(out_dir)
    artifact = result.artifact_uri
    if artifact is None:
        files: list[Path] = []
    elif artifact.endswith("/manifest.json"):
        files = wf.download_results(artifact, out_dir)
    else:
        target = out_dir / "failure.json"
        target.write_bytes(wf.read_bytes(artifact))
        files = [target]
    return LocalRun(result=result, key=uploaded["key"], files=sorted(files))
