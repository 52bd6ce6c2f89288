"""``tryon eval compare A B``: two evaluations of the same rows side by side, with seed noise.

A difference is marked significant only when it exceeds the noise of the seeds. The noise is
estimated from the runs themselves: each evaluation run with ``--seeds K`` (K >= 2) has one mean
per seed for every metric (over the rows both evaluations share); the standard deviation of
those K means, ``s``, is how much the metric moves when only the seed changes. The standard
error of the difference of the two means is ``sqrt(sA²/KA + sB²/KB)`` (a side with one seed
borrows the other side's ``s``), and the difference is significant when it is larger than
``z`` (default 2, about 95%) times that. With one seed on both sides there is no estimate and
nothing is marked significant.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from tryon.core.errors import RequestError

DEFAULT_Z = 2.0


def load(path: Path) -> dict[str, Any]:
    """An ``eval.json`` (or the folder holding one); RequestError naming the file otherwise."""
    file = path / "eval.json" if path.is_dir() else path
    if not file.is_file():
        raise RequestError(str(path), "is not an eval.json nor a folder holding one (run tryon eval first)")
    try:
        document = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise RequestError(str(file), f"is not JSON ({exc.msg})") from None
    if not isinstance(document, dict) or "rows" not in document or "schema_version" not in document:
        raise RequestError(str(file), "is not an evaluation written by tryon eval")
    return document


def _per_seed(document: dict[str, Any], ids: set[str]) -> dict[str, dict[str, float]]:
    """metric -> seed -> mean over the rows in ``ids``."""
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in document["rows"]:
        if row["id"] not in ids:
            continue
        for name, value in row["metrics"].items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                values[name][str(row["seed"])].append(float(value))
    means = {name: {seed: statistics.fmean(v) for seed, v in seeds.items()} for name, seeds in values.items()}
    for seed, metrics in document.get("set_metrics", {}).get("per_seed", {}).items():
        for name, value in metrics.items():
            means.setdefault(name, {})[seed] = value
    return means


def _noise(seed_means: dict[str, float]) -> tuple[float | None, int]:
    k = len(seed_means)
    return (statistics.stdev(seed_means.values()) if k >= 2 else None), k


def compare(a: dict[str, Any], b: dict[str, Any], *, z: float = DEFAULT_Z) -> dict[str, Any]:
    """Metric by metric: A, B, B - A, the seed noise of the difference, and whether it is significant."""
    ids_a = {r["id"] for r in a["rows"]}
    ids_b = {r["id"] for r in b["rows"]}
    common = ids_a & ids_b
    if not common:
        raise RequestError("B", "the two evaluations share no row id: compare runs over the same rows")
    higher = {**a.get("higher_is_better", {}), **b.get("higher_is_better", {})}
    seeds_a, seeds_b = _per_seed(a, common), _per_seed(b, common)
    results = []
    for name in [n for n in higher if n in seeds_a and n in seeds_b]:
        mean_a = _overall(a, name, common)
        mean_b = _overall(b, name, common)
        if mean_a is None or mean_b is None:
            continue
        s_a, k_a = _noise(seeds_a[name])
        s_b, k_b = _noise(seeds_b[name])
        if s_a is None and s_b is None:
            stderr = None
        else:
            s_a = s_b if s_a is None else s_a
            s_b = s_a if s_b is None else s_b
            stderr = math.sqrt(s_a**2 / k_a + s_b**2 / k_b)
        diff = mean_b - mean_a
        significant = stderr is not None and abs(diff) > z * stderr
        better = None
        if significant:
            better = "B" if (diff > 0) == higher[name] else "A"
        results.append(
            {"metric": name, "a": mean_a, "b": mean_b, "diff": diff, "noise": stderr, "seeds_a": k_a,
             "seeds_b": k_b, "significant": significant, "better": better}
        )  # fmt: skip
    notes = []
    if ids_a != ids_b:
        notes.append(f"compared on the {len(common)} rows both have ({len(ids_a)} in A, {len(ids_b)} in B)")
    if all(r["noise"] is None for r in results):
        notes.append("no seed noise estimate: run tryon eval with --seeds 2 or more to mark significance")
    return {"z": z, "rows": len(common), "metrics": results, "notes": notes}


def _overall(document: dict[str, Any], name: str, ids: set[str]) -> float | None:
    if name in {"fid", "kid"}:
        return document.get("set_metrics", {}).get(name)
    values = [
        float(r["metrics"][name])
        for r in document["rows"]
        if r["id"] in ids and r["metrics"].get(name) is not None
    ]
    return statistics.fmean(values) if values else None


def format_table(comparison: dict[str, Any], label_a: str, label_b: str) -> str:
    """The comparison as aligned text lines."""
    lines = [
        f"A: {label_a}",
        f"B: {label_b}",
        f"rows: {comparison['rows']}, significance: |B-A| > {comparison['z']:g} x noise",
        "",
    ]
    header = f"{'metric':<16}{'A':>12}{'B':>12}{'B-A':>12}{'noise':>12}  verdict"
    lines += [header, "-" * len(header)]
    for m in comparison["metrics"]:
        noise = "n/a" if m["noise"] is None else f"{m['noise']:.4g}"
        verdict = (
            f"{m['better']} better (significant)"
            if m["significant"]
            else "within seed noise"
            if m["noise"] is not None
            else "no noise estimate"
        )
        lines.append(
            f"{m['metric']:<16}{m['a']:>12.4g}{m['b']:>12.4g}{m['diff']:>+12.4g}{noise:>12}  {verdict}"
        )
    lines += [f"note: {n}" for n in comparison["notes"]]
    return "\n".join(lines)
