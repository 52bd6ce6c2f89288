"""Run the try-on workflow on evaluation rows first: locally (as ``tryon run``) or on a deployed stack
(as ``tryon submit``), once per seed, keeping each run's painted image and mask for scoring.

Each row and seed is uploaded under its own object name (``eval-<id>-s<seed>.<ext>``), so every
run is its own job and execution. The scored image is ``inpainted-0.png`` (the photo's own size;
the upscaled copy is not compared with the photo), the mask is the workflow's ``mask.png``.
A run that fails or finds no garment keeps its row, with the reason as its status.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tryon.core.errors import RequestError
from tryon.evaluation.eval_rows import EvalRow

SCORED_IMAGE = "inpainted-0.png"
MASK_IMAGE = "mask.png"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "row"


def expand_seeds(rows: Sequence[EvalRow], seeds: int) -> list[tuple[EvalRow, int]]:
    """(row, seed) for each of ``seeds`` seeds per row: the row's seed (default 0), then the next ones."""
    return [(row, (row.seed or 0) + i) for row in rows for i in range(seeds)]


def _job(row: EvalRow, seed: int) -> tuple[dict[str, Any], str | None]:
    overrides = {k: v for k, v in row.job.items() if k != "preset"}
    if row.prompt:
        overrides["prompt"] = row.prompt
    overrides["seed"] = seed
    overrides.setdefault("upscale", False)  # the scored image is the photo-sized inpainting
    preset = row.job.get("preset") or None
    return overrides, (str(preset) if preset else None)


def _scored(row: EvalRow, seed: int, out_dir: Path, files: Sequence[Path], status: str) -> EvalRow:
    result = out_dir / SCORED_IMAGE
    mask = out_dir / MASK_IMAGE
    return dataclasses.replace(
        row,
        seed=seed,
        result=result if result in files else None,
        mask=mask if mask in files else row.mask,
        status=status if result in files else (status if status != "ok" else "no result"),
    )


def run_rows_locally(
    rows: Sequence[EvalRow],
    *,
    seeds: int,
    model_dirs: Mapping[str, str],
    work: Path,
    parameters: Mapping[str, Any] | None = None,
    modes: Mapping[str, str] | None = None,
    on_status: Callable[[str], None] = lambda _m: None,
    timeout: float = 3600.0,
) -> list[EvalRow]:
    """Every row x seed through one local stack (the models load once); the rows with their results."""
    from tryon.local.runner import open_workflow, run_in

    done: list[EvalRow] = []
    todo = expand_seeds(rows, seeds)
    with open_workflow(model_dirs, parameters=parameters, upscale=False, modes=modes) as wf:
        for index, (row, seed) in enumerate(todo, start=1):
            overrides, preset = _job(row, seed)
            out_dir = work / "rows" / _safe(row.id) / f"s{seed}"
            run = run_in(
                wf,
                row.photo,
                out_dir=out_dir,
                overrides=overrides,
                preset=preset,
                garment=row.garment,
                name=_object_name(row, seed),
                timeout=timeout,
            )
            status = _status(run.result)
            on_status(f"[{index}/{len(todo)}] {row.id} seed {seed}: {status}")
            done.append(_scored(row, seed, out_dir, run.files, status))
    return done


def run_rows_on_stack(
    rows: Sequence[EvalRow],
    *,
    seeds: int,
    stack_name: str,
    session: Any,
    work: Path,
    on_status: Callable[[str], None] = lambda _m: None,
    timeout: float = 3600.0,
) -> list[EvalRow]:
    """Every row x seed on a deployed stack, each exactly as ``tryon submit`` runs one photo
    (:func:`tryon.aws.stack.upload_job`, then the execution EventBridge started, followed to its end)."""
    from tryon.aws import stack as stacks
    from tryon.aws.executions import follow_execution
    from tryon.cli.garment_specs import Upload

    cfn, s3, sfn = (session.client(name) for name in ("cloudformation", "s3", "stepfunctions"))
    found = stacks.find_stack(cfn, stack_name)
    done: list[EvalRow] = []
    todo = expand_seeds(rows, seeds)
    for index, (row, seed) in enumerate(todo, start=1):
        overrides, preset = _job(row, seed)
        files = [Upload("garment_image", row.garment, "garment", "garment")] if row.garment else []
        upload, _ = stacks.upload_job(
            s3, found, row.photo, overrides=overrides, preset=preset, files=files,
            name=_object_name(row, seed),
        )  # fmt: skip
        arn = stacks.find_execution(sfn, found, upload, timeout_seconds=min(timeout, 300.0))
        result = follow_execution(sfn, arn, timeout=timeout, poll_s=2.0)
        out_dir = work / "rows" / _safe(row.id) / f"s{seed}"
        files = stacks.download_results(s3, result.artifact_uri, out_dir)
        status = _status(result)
        on_status(f"[{index}/{len(todo)}] {row.id} seed {seed}: {status}")
        done.append(_scored(row, seed, out_dir, files, status))
    return done


def check_jobs(rows: Sequence[EvalRow], seeds: int) -> None:
    """Refuse, before any model loads or any upload, a row the workflow would refuse: its photo (or
    packshot) not an image the input rule forwards, or a job parameter Prepare rejects."""
    from tryon.local.runner import check_photo
    from tryon.workflow import params

    for row, seed in expand_seeds(rows, min(seeds, 1)):
        try:
            check_photo(row.photo, field="photo")
            if row.garment is not None:
                check_photo(row.garment, field="garment")
            params.to_metadata(*_job(row, seed))
        except RequestError as exc:
            raise RequestError(exc.field, f"{row.where()}: {exc.detail}") from None


def _object_name(row: EvalRow, seed: int) -> str:
    """The object name a row's run is uploaded under: its own per row and seed (one job each)."""
    return f"eval-{_safe(row.id)}-s{seed}{row.photo.suffix.lower()}"


def _status(result: Any) -> str:
    if not result.succeeded:
        failure = result.failure or {}
        return f"failed: {failure.get('error') or result.error or result.status}"
    outcome = (result.output or {}).get("status", "ok")
    return "ok" if outcome in {"succeeded", "ok", "completed"} else str(outcome)
