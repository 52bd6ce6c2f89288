"""Write an evaluation as ``eval.json`` (everything), ``eval.csv`` (one line per row) and ``eval.html``.

The HTML page is self-contained (plots and thumbnails inline as base64): the metric table, the
set metrics, per-class breakdowns, per-seed means and seed noise, a histogram per metric
(matplotlib), the worst rows with thumbnails (photo, mask, result, ground truth), and the
published anchor table with its sources.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image

from tryon.evaluation import anchors
from tryon.evaluation.scoring import HIGHER_IS_BETTER, Evaluation, row_metric_names
from tryon.workflow.batch_manifest import spreadsheet_safe

JSON_NAME, CSV_NAME, HTML_NAME = "eval.json", "eval.csv", "eval.html"
SCHEMA_VERSION = 1
WORST_ROWS = 5
THUMBNAIL = 160


def to_json(evaluation: Evaluation, context: dict[str, Any]) -> dict[str, Any]:
    """The document ``eval.json`` holds (``tryon eval compare`` reads it back)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **context,
        **asdict(evaluation),
        "higher_is_better": HIGHER_IS_BETTER,
        "anchors": {"rows": anchors.ANCHORS, "caveat": anchors.CAVEAT},
    }


def write_reports(evaluation: Evaluation, out_dir: Path, context: dict[str, Any]) -> dict[str, Path]:
    """Write the three files into ``out_dir``; returns their paths by kind."""
    out_dir.mkdir(parents=True, exist_ok=True)
    document = to_json(evaluation, context)
    paths = {"json": out_dir / JSON_NAME, "csv": out_dir / CSV_NAME, "html": out_dir / HTML_NAME}
    paths["json"].write_text(json.dumps(document, indent=2, default=str) + "\n")
    _write_csv(evaluation, paths["csv"])
    paths["html"].write_text(render_html(document, evaluation))
    return paths


def _write_csv(evaluation: Evaluation, path: Path) -> None:
    names = row_metric_names(evaluation)
    extra = sorted({k for row in evaluation.rows for k in row["metrics"]} - set(names))
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "seed", "class", "status", "photo", "result", *names, *extra])
        for row in evaluation.rows:
            metrics = row["metrics"]
            texts = [row[k] for k in ("id", "seed", "class", "status", "photo", "result")]
            writer.writerow(
                [spreadsheet_safe(v) if isinstance(v, str) else v for v in texts]  # ids are the manifest's
                + [_cell(metrics.get(name)) for name in [*names, *extra]]
            )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------- HTML
def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
    return html.escape(str(value))


def _table(headers: list[str], rows: list[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _plots(evaluation: Evaluation) -> list[tuple[str, str]]:
    """(metric, base64 PNG) histograms of each row metric."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    plots = []
    for name in row_metric_names(evaluation):
        values = [r["metrics"][name] for r in evaluation.rows if r["metrics"].get(name) is not None]
        if not values:
            continue
        figure, axis = plt.subplots(figsize=(3.2, 2.2))
        axis.hist(values, bins=min(20, max(3, len(values))), color="#3b6ea5")
        axis.set_title(name)
        axis.set_ylabel("rows")
        plots.append((name, _png(figure)))
        plt.close(figure)
    return plots


def _thumb(path: str | None) -> str:
    if not path or not Path(path).is_file():
        return '<span class="none">—</span>'
    with Image.open(path) as img:
        image = img.convert("RGB")
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="{html.escape(Path(path).name)}" src="data:image/jpeg;base64,{data}">'


def _worst(evaluation: Evaluation) -> list[tuple[str, list[dict[str, Any]]]]:
    """For each row metric, the :data:`WORST_ROWS` worst rows (direction from HIGHER_IS_BETTER)."""
    out = []
    for name in row_metric_names(evaluation):
        rows = [r for r in evaluation.rows if r["metrics"].get(name) is not None]
        rows.sort(key=lambda r: r["metrics"][name], reverse=not HIGHER_IS_BETTER[name])
        out.append((name, rows[:WORST_ROWS]))
    return out


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
.plots img{margin:.3em}.worst img{height:120px;margin:2px}
.note{color:#8a5a00}.caveat{font-size:.9em;color:#555}
"""


def render_html(document: dict[str, Any], evaluation: Evaluation) -> str:
    """The report page (self-contained)."""
    names = row_metric_names(evaluation)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>tryon eval report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>tryon eval report</h1>",
        f"<p>{len(evaluation.rows)} rows; families: {html.escape(', '.join(evaluation.families))}; "
        f"created {html.escape(document['created'])}; source {html.escape(str(document.get('source')))}</p>",
    ]
    for note in evaluation.notes:
        parts.append(f'<p class="note">{html.escape(note)}</p>')
    arrow = {True: "↑", False: "↓"}
    parts.append("<h2>Metrics</h2>")
    stats = ("mean", "std", "min", "max", "n")
    table = [[n, arrow[HIGHER_IS_BETTER[n]], *(evaluation.summary[n][k] for k in stats)] for n in names]
    parts.append(_table(["metric", "better", "mean", "std", "min", "max", "rows"], table, "metrics"))
    if evaluation.set_metrics:
        sm = evaluation.set_metrics
        parts.append("<h2>Set metrics</h2>")
        parts.append(
            _table(
                ["metric", "better", "value", "real images", "results", "real set"],
                [["fid", "↓", sm["fid"], sm["real"], sm["results"], sm["real_set"]],
                 ["kid", "↓", sm["kid"], sm["real"], sm["results"], sm["real_set"]],
                 ["kid_std", "", sm["kid_std"], "", "", ""]],
                "set-metrics",
            )
        )  # fmt: skip
    if len(evaluation.per_class) > 1 or (evaluation.per_class and "all" not in evaluation.per_class):
        parts.append("<h2>By garment class</h2>")
        parts.append(
            _table(
                ["class", *names],
                [
                    [cls, *(m.get(n, {}).get("mean") for n in names)]
                    for cls, m in evaluation.per_class.items()
                ],
                "per-class",
            )
        )
    if len(evaluation.per_seed) > 1:
        seed_names = sorted({n for m in evaluation.per_seed.values() for n in m})
        parts.append("<h2>By seed</h2>")
        rows = [[seed, *(m.get(n) for n in seed_names)] for seed, m in evaluation.per_seed.items()]
        rows.append(["seed noise (std)", *(evaluation.seed_noise.get(n) for n in seed_names)])
        parts.append(_table(["seed", *seed_names], rows, "per-seed"))
    plots = _plots(evaluation)
    if plots:
        parts.append('<h2>Distributions</h2><div class="plots">')
        parts += [f'<img alt="histogram of {n}" src="data:image/png;base64,{data}">' for n, data in plots]
        parts.append("</div>")
    parts.append("<h2>Worst rows</h2>")
    images = {"photo": "photo", "mask": "mask", "reference_mask": "reference mask", "result": "result",
              "ground_truth": "ground truth"}  # fmt: skip
    if not any(row["reference_mask"] for row in evaluation.rows):
        del images["reference_mask"]
    for name, rows in _worst(evaluation):
        parts.append(f"<h3>{html.escape(name)} ({'lowest' if HIGHER_IS_BETTER[name] else 'highest'})</h3>")
        parts.append('<table class="worst"><thead><tr><th>row</th><th>value</th>'
                     + "".join(f"<th>{title}</th>" for title in images.values())
                     + "</tr></thead><tbody>")  # fmt: skip
        for row in rows:
            parts.append(
                f"<tr><td>{html.escape(str(row['id']))}"
                + (f" (seed {row['seed']})" if row["seed"] is not None else "")
                + "</td>"
                + f"<td>{_fmt(row['metrics'][name])}</td>"
                + "".join(f"<td>{_thumb(row[k])}</td>" for k in images)
                + "</tr>"
            )
        parts.append("</tbody></table>")
    failed = [r for r in evaluation.rows if r["status"] != "ok"]
    if failed:
        parts.append("<h2>Rows without a score</h2>")
        parts.append(
            _table(["row", "seed", "status"], [[r["id"], r["seed"], r["status"]] for r in failed], "failed")
        )
    parts.append("<h2>Published figures (VITON-HD)</h2>")
    parts.append(
        _table(
            ["method", "SSIM ↑", "LPIPS ↓", "FID ↓", "KID ↓", "unpaired FID ↓", "unpaired KID ↓", "source"],
            [[a["method"], *(a[c] for c in anchors.COLUMNS), a["source"]] for a in anchors.ANCHORS],
            "anchors",
        )
    )
    parts.append(f'<p class="caveat">{html.escape(anchors.CAVEAT)}</p>')
    parts.append("</body></html>\n")
    return "\n".join(parts)
