"""``tryon eval``: measure try-on quality on a set of rows, and compare two evaluations (docs/evaluation.md).

``tryon eval SOURCE`` (the same as ``tryon eval run SOURCE``) scores a manifest or a dataset
folder, running the workflow first where rows have no result; ``tryon eval compare A B`` puts
two evaluations side by side; ``tryon eval fetch-models DIR`` downloads the metric networks for
machines without network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from tryon.cli import app
from tryon.cli.sessions import Profile, Region


class _RunByDefault(TyperGroup):
    """``tryon eval SOURCE ...`` runs ``tryon eval run SOURCE ...``; subcommand names still win."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in {"--help", "-h"}:
            args = ["run", *args]
        return super().parse_args(ctx, args)


eval_app = typer.Typer(
    cls=_RunByDefault,
    help="Measure try-on quality (SSIM/PSNR/LPIPS, FID/KID, CLIP-I/DINO, CLIP-T, mask IoU, preservation).",
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")


def _families(values: list[str]) -> list[str] | None:
    names = [part.strip() for value in values for part in value.split(",") if part.strip()]
    return names or None


@eval_app.command("run")
def run(
    source: Annotated[
        Path, typer.Argument(help="A manifest (.csv/.jsonl) or a VITON-HD / DressCode test folder.")
    ],
    out: Annotated[
        Path, typer.Option(help="Folder for eval.json, eval.csv, eval.html (and run results).")
    ] = Path("out/eval"),
    metrics: Annotated[
        list[str],
        typer.Option(
            "--metrics",
            help="Families, comma-separated or repeated: paired, unpaired, garment, prompt, mask, "
            "preservation "
            "[default: every family the rows have inputs for].",
        ),
    ] = [],  # noqa: B006  (typer reads list defaults, never mutates them)
    metric_models: Annotated[
        Path | None,
        typer.Option(
            "--metric-models", help="Folder with clip/, dinov2/, inception/, lpips/ (offline weights)."
        ),
    ] = None,
    download: Annotated[
        bool,
        typer.Option(
            "--download", help="Fetch metric weights missing from the local caches (needs network)."
        ),
    ] = False,
    seeds: Annotated[
        int, typer.Option(help="Run each row with this many seeds (seed noise for compare).")
    ] = 1,
    results: Annotated[
        Path | None, typer.Option(help="Dataset folders: existing results named like the person photos.")
    ] = None,
    real: Annotated[
        Path | None,
        typer.Option(help="Folder of real photos for FID/KID [default: ground truths, else photos]."),
    ] = None,
    unpaired: Annotated[
        bool,
        typer.Option("--unpaired", help="Dataset folders: use the unpaired test pairs (no ground truth)."),
    ] = False,
    tolerance: Annotated[
        int,
        typer.Option(help="Preservation: a pixel changed when a channel moved by more than this (0-255)."),
    ] = 0,
    models: Annotated[
        list[str],
        typer.Option(help="KIND=DIR|HUB-ID for the local workflow (default: the tiny checkpoints)."),
    ] = [],  # noqa: B006
    mode: Annotated[
        list[str], typer.Option("--mode", help="KIND=MODE for the local workflow (as tryon run).")
    ] = [],  # noqa: B006
    stack: Annotated[
        str | None, typer.Option("--stack", help="Run the rows on this deployed stack instead of locally.")
    ] = None,
    region: Region = "",
    profile: Profile = "",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object on stdout.")
    ] = False,
) -> None:
    """Score a set of try-ons; rows without a result run through the workflow first."""
    from tryon.core.errors import RequestError
    from tryon.evaluation.eval_pipeline import EvalOptions, evaluate, needs_run, prepare

    if not 0 <= tolerance <= 255:
        raise RequestError("--tolerance", f"must be in [0, 255], got {tolerance}")
    options = EvalOptions(
        source=source,
        out=out,
        families=_families(metrics),
        seeds=seeds,
        results=results,
        real=real,
        paired=not unpaired,
        metric_models=metric_models,
        download=download,
        tolerance=tolerance,
    )
    rows = prepare(options)[0]  # every refusal before models load
    if needs_run(rows):
        if stack:
            from tryon.cli.sessions import session

            options.stack, options.session = stack, session(region, profile)
        else:
            from tryon.cli.jobs import _modes, resolve_models
            from tryon.local.runner import TINY_PARAMETERS

            options.modes = _modes(mode)
            options.model_dirs, all_tiny = resolve_models(models)
            if all_tiny:
                typer.echo(
                    "models: tiny random checkpoints (the images are noise; pass --models for real ones)",
                    err=True,
                )
                options.parameters = TINY_PARAMETERS
    outcome = evaluate(options, on_status=lambda message: typer.echo(message, err=True))
    evaluation = outcome.evaluation
    if as_json:
        answer: dict[str, Any] = {
            "files": {kind: str(path) for kind, path in outcome.files.items()},
            "families": evaluation.families,
            "summary": {name: stats["mean"] for name, stats in evaluation.summary.items()},
            "set_metrics": {
                k: v for k, v in evaluation.set_metrics.items() if k in {"fid", "kid", "kid_std"}
            },
            "seed_noise": evaluation.seed_noise,
            "unscored": [r["id"] for r in evaluation.rows if r["status"] != "ok"],
        }
        typer.echo(json.dumps(answer))
        return
    for note in evaluation.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"{'metric':<18}{'mean':>10}{'std':>10}{'rows':>6}")
    for name, stats in evaluation.summary.items():
        typer.echo(f"{name:<18}{stats['mean']:>10.4f}{stats['std']:>10.4f}{stats['n']:>6}")
    for name in ("fid", "kid"):
        if name in evaluation.set_metrics:
            typer.echo(f"{name:<18}{evaluation.set_metrics[name]:>10.4f}")
    unscored = [r for r in evaluation.rows if r["status"] != "ok"]
    if unscored:
        typer.echo(
            f"{len(unscored)} row(s) without a score: "
            + ", ".join(f"{r['id']} ({r['status']})" for r in unscored)
        )
    for kind, path in outcome.files.items():
        typer.echo(f"{kind}: {path}")


@eval_app.command("compare")
def compare(
    a: Annotated[Path, typer.Argument(help="First evaluation: eval.json or its folder.")],
    b: Annotated[Path, typer.Argument(help="Second evaluation: eval.json or its folder.")],
    z: Annotated[
        float, typer.Option(help="Significant when |B-A| > z x the seed noise of the difference.")
    ] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as one JSON object.")] = False,
) -> None:
    """Two evaluations side by side; a difference is significant only beyond the seeds' noise."""
    from tryon.core.errors import RequestError
    from tryon.evaluation import eval_compare

    if z <= 0:
        raise RequestError("--z", f"must be > 0, got {z}")
    comparison = eval_compare.compare(eval_compare.load(a), eval_compare.load(b), z=z)
    if as_json:
        typer.echo(json.dumps(comparison))
    else:
        typer.echo(eval_compare.format_table(comparison, str(a), str(b)))


@eval_app.command("fetch-models")
def fetch_models(
    folder: Annotated[Path, typer.Argument(help="Where to write clip/, dinov2/, inception/, lpips/.")],
) -> None:
    """Download the metric networks into FOLDER (needs network), for --metric-models FOLDER elsewhere."""
    from tryon.evaluation.metric_models import fetch_models as fetch

    for name, path in fetch(folder).items():
        typer.echo(f"{name}: {path}")
