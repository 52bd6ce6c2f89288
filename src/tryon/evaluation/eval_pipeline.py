"""One evaluation from start to finish: read the rows, check everything, run the workflow if asked,
score, write the reports. ``tryon eval`` is a thin command over :func:`evaluate`.

Every refusal happens before any model loads or any execution starts: unknown families, a row
missing an input its family needs, files that do not exist, images of different sizes, metric
weights that are neither in the folder nor in the caches (and no ``--download``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tryon.core.errors import RequestError
from tryon.evaluation import eval_report, scoring
from tryon.evaluation.eval_rows import IMAGE_SUFFIXES, EvalRow, read_source
from tryon.evaluation.metric_models import MetricModels


@dataclass
class EvalOptions:
    """What ``tryon eval`` was asked to do."""

    source: Path
    out: Path
    families: list[str] | None = None
    seeds: int = 1
    results: Path | None = None
    real: Path | None = None
    paired: bool = True
    metric_models: Path | None = None
    download: bool = False
    tolerance: int = 0
    #: run the workflow locally with these model folders (kind -> folder), or on ``stack``
    model_dirs: Mapping[str, str] | None = None
    parameters: Mapping[str, Any] | None = None
    modes: Mapping[str, str] | None = None
    stack: str | None = None
    session: Any = None
    extra_context: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalOutcome:
    """The evaluation and the files written."""

    evaluation: scoring.Evaluation
    files: dict[str, Path]
    rows: list[EvalRow]


def _real_images(folder: Path | None) -> list[Path] | None:
    if folder is None:
        return None
    if not folder.is_dir():
        raise RequestError("--real", f"{folder} is not a folder of real photos")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(images) < 2:
        raise RequestError("--real", f"{folder} holds {len(images)} image(s); FID and KID need at least 2")
    return images


def needs_run(rows: Sequence[EvalRow]) -> bool:
    """Whether some row has no result yet (the workflow must run first)."""
    return any(row.result is None for row in rows)


def prepare(options: EvalOptions) -> tuple[list[EvalRow], list[str], MetricModels, list[Path] | None]:
    """Rows, families, metric networks and the real set, all checked (RequestError otherwise)."""
    if options.seeds < 1:
        raise RequestError("--seeds", f"must be >= 1, got {options.seeds}")
    if options.metric_models is not None and not options.metric_models.is_dir():
        raise RequestError("--metric-models", f"{options.metric_models} is not a folder")
    rows = read_source(options.source, paired=options.paired, results=options.results, work=options.out)
    will_run = needs_run(rows)
    if will_run and any(row.result is not None for row in rows):
        first = next(row for row in rows if row.result is None)
        raise RequestError("result", f"{first.where()} has none while other rows have one: give all or none")
    if not will_run and options.seeds > 1:
        raise RequestError(
            "--seeds", "applies when the workflow runs; existing results carry their seed column"
        )
    families = scoring.choose_families(rows, options.families, will_run=will_run)
    if will_run:
        from tryon.evaluation.workflow_rows import check_jobs

        check_jobs(rows, options.seeds)
    else:
        scoring.check_sizes(rows, families)
    models = MetricModels(folder=options.metric_models, download=options.download)
    models.check(set(families))
    return rows, families, models, _real_images(options.real)


def evaluate(options: EvalOptions, *, on_status: Callable[[str], None] = lambda _m: None) -> EvalOutcome:
    """Read, check, (run,) score; write ``eval.json``, ``eval.csv``, ``eval.html`` under ``options.out``."""
    rows, families, models, real = prepare(options)
    options.out.mkdir(parents=True, exist_ok=True)
    source = "existing results"
    if needs_run(rows):
        from tryon.evaluation import workflow_rows

        if options.stack:
            source = f"stack {options.stack}"
            rows = workflow_rows.run_rows_on_stack(
                rows, seeds=options.seeds, stack_name=options.stack, session=options.session,
                work=options.out, on_status=on_status,
            )  # fmt: skip
        else:
            if not options.model_dirs:
                raise RequestError(
                    "--models", "the rows have no results: give model folders to run the workflow"
                )
            source = "local workflow"
            rows = workflow_rows.run_rows_locally(
                rows, seeds=options.seeds, model_dirs=options.model_dirs, work=options.out,
                parameters=options.parameters, modes=options.modes, on_status=on_status,
            )  # fmt: skip
    on_status(f"scoring {len(rows)} rows: {', '.join(families)}")
    evaluation = scoring.score(rows, families, models, real=real, tolerance=options.tolerance)
    context = {
        "source": f"{options.source} ({source})",
        "seeds": options.seeds,
        "metric_models": models.describe(),
        "tolerance": options.tolerance,
        **options.extra_context,
    }
    files = eval_report.write_reports(evaluation, options.out, context)
    return EvalOutcome(evaluation=evaluation, files=files, rows=list(rows))
