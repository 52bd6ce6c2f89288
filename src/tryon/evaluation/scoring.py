"""Score rows that have results: per-row metrics, set metrics, and their summaries by class and seed.

Metric families (``--metrics``; docs/evaluation.md#metrics):

======================  ===================================  ==============================
family                  metrics (per row unless noted)       needs
======================  ===================================  ==============================
``paired``              ``ssim``, ``psnr``, ``lpips``        ``ground_truth``
``unpaired``            ``fid``, ``kid`` (per set)           >= 2 results, a real set
``garment``             ``clip_i``, ``dino``                 ``packshot`` / ``references``
``prompt``              ``clip_t``                           ``prompt``
``mask``                ``mask_iou``, ``boundary_f``         ``reference_mask`` and the mask
``preservation``        ``changed_outside`` (+ pixel count)  the mask
======================  ===================================  ==============================

Without ``--metrics`` every family whose inputs the rows have is scored (a row without a
family's inputs gets no value for it). Naming a family makes its inputs required: a row that
lacks them is refused before any work, naming the row and the column.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from tryon.core.errors import RequestError
from tryon.evaluation import feature_metrics, pixel_metrics
from tryon.evaluation.eval_rows import EvalRow
from tryon.evaluation.metric_models import MetricModels, torchvision_available

FAMILIES = ("paired", "unpaired", "garment", "prompt", "mask", "preservation")
#: Row metrics of each family, and which direction is better.
ROW_METRICS = {
    "paired": ("ssim", "psnr", "lpips"),
    "garment": ("clip_i", "dino"),
    "prompt": ("clip_t",),
    "mask": ("mask_iou", "boundary_f"),
    "preservation": ("changed_outside",),
}
SET_METRICS = ("fid", "kid")
HIGHER_IS_BETTER = {
    "ssim": True, "psnr": True, "lpips": False, "clip_i": True, "dino": True, "clip_t": True,
    "mask_iou": True, "boundary_f": True, "changed_outside": False, "fid": False, "kid": False,
}  # fmt: skip


def _needs(row: EvalRow, family: str) -> str | None:
    """The column a row lacks for ``family`` (None: it has everything)."""
    if family == "paired" and row.ground_truth is None:
        return "ground_truth"
    if family == "garment" and not row.garment_references:
        return "packshot (or references)"
    if family == "prompt" and not (row.prompt or row.job.get("prompt")):
        return "prompt"
    if family == "mask" and row.reference_mask is None:
        return "reference_mask"
    if family in {"mask", "preservation"} and row.mask is None and row.result is not None:
        return "mask"  # an existing result without the mask it was painted in (the workflow writes one)
    return None


def choose_families(rows: Sequence[EvalRow], requested: Sequence[str] | None, *, will_run: bool) -> list[str]:
    """The families to score; with ``requested``, every row must have their inputs (else RequestError).

    ``will_run``: the workflow runs first, so it provides each row's result and mask.
    """
    if requested:
        unknown = [f for f in requested if f not in FAMILIES]
        if unknown:
            raise RequestError(
                "--metrics", f"unknown family {unknown[0]!r} (choose from {', '.join(FAMILIES)})"
            )
        for family in requested:
            for row in rows:
                lacking = _needs(row, family)
                if lacking == "mask" and will_run:
                    continue
                if lacking:
                    raise RequestError(
                        lacking.split()[0], f"{row.where()} has none, and --metrics {family} needs it"
                    )
        if "unpaired" in requested and len(rows) < 2:
            raise RequestError("--metrics", "unpaired (FID, KID) needs at least 2 rows")
        return [f for f in FAMILIES if f in requested]
    chosen = []
    for family in FAMILIES:
        if family == "unpaired":
            if len(rows) >= 2:
                chosen.append(family)
        elif family in {"mask", "preservation"} and will_run:
            if family == "preservation" or any(r.reference_mask for r in rows):
                chosen.append(family)
        elif any(_needs(row, family) is None for row in rows):
            chosen.append(family)
    return chosen


def _open(path: Path) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        return img


def check_sizes(rows: Sequence[EvalRow], families: Sequence[str]) -> None:
    """Refuse a result whose size differs from the image it is compared with, naming both files."""
    for row in rows:
        if row.result is None:
            continue
        size = _open(row.result).size
        pairs = []
        if "paired" in families and row.ground_truth is not None:
            pairs.append(("ground_truth", row.ground_truth))
        if "preservation" in families and row.mask is not None:
            pairs.append(("photo", row.photo))
        for column, other in pairs:
            other_size = _open(other).size
            if other_size != size:
                raise RequestError(
                    "result",
                    f"{row.result} is {size[0]}x{size[1]} but its {column} {other} is "
                    f"{other_size[0]}x{other_size[1]} ({row.where()}): images of different sizes",
                )


@dataclass
class Evaluation:
    """What an evaluation measured: rows, summaries, set metrics and the families scored."""

    families: list[str]
    rows: list[dict[str, Any]]
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    set_metrics: dict[str, Any] = field(default_factory=dict)
    per_class: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    per_seed: dict[str, dict[str, float]] = field(default_factory=dict)
    seed_noise: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _row_record(row: EvalRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "seed": row.seed,
        "class": row.garment_class,
        "status": row.status
        if row.result is not None
        else (row.status if row.status != "ok" else "no result"),
        "photo": str(row.photo),
        "result": str(row.result) if row.result else None,
        "mask": str(row.mask) if row.mask else None,
        "ground_truth": str(row.ground_truth) if row.ground_truth else None,
        "reference_mask": str(row.reference_mask) if row.reference_mask else None,
        "packshot": str(row.packshot or row.garment) if (row.packshot or row.garment) else None,
        "prompt": row.prompt or row.job.get("prompt"),
        "metrics": {},
    }


def score(
    rows: Sequence[EvalRow],
    families: Sequence[str],
    models: MetricModels,
    *,
    real: Sequence[Path] | None = None,
    on_progress: Callable[[int, int], None] = lambda _i, _n: None,
    tolerance: int = 0,
) -> Evaluation:
    """Score every row with a result; set metrics over all results and per seed."""
    evaluation = Evaluation(families=list(families), rows=[])
    lpips_metric = None
    if "paired" in families:
        if torchvision_available():
            lpips_metric = models.lpips()
        else:
            evaluation.notes.append(
                "lpips not computed: torchvision is not installed (docs/evaluation.md#lpips)"
            )
    clip = models.clip() if {"garment", "prompt"} & set(families) else None
    dino = models.dino() if "garment" in families else None
    reference_cache: dict[tuple[str, Path], Any] = {}

    def reference_embeddings(kind: str, paths: list[Path]) -> Any:
        import torch

        todo = [p for p in paths if (kind, p) not in reference_cache]
        if todo:
            images = [_open(p) for p in todo]
            embed = (
                feature_metrics.clip_image_embeddings(clip, images)
                if kind == "clip"
                else (feature_metrics.dino_embeddings(dino, images))
            )
            for path, vector in zip(todo, embed, strict=True):
                reference_cache[(kind, path)] = vector
        return torch.stack([reference_cache[(kind, p)] for p in paths])

    scored = [row for row in rows if row.result is not None]
    for index, row in enumerate(rows, start=1):
        record = _row_record(row)
        evaluation.rows.append(record)
        on_progress(index, len(rows))
        if row.result is None:
            continue
        metrics: dict[str, Any] = record["metrics"]
        result = _open(row.result)
        mask = _open(row.mask) if row.mask else None
        if "paired" in families and row.ground_truth is not None:
            truth = _open(row.ground_truth)
            metrics["ssim"] = pixel_metrics.ssim(result, truth)
            metrics["psnr"] = pixel_metrics.psnr(result, truth)
            if lpips_metric is not None:
                metrics["lpips"] = pixel_metrics.lpips(lpips_metric, result, truth)
        region = feature_metrics.garment_region(result, mask) if clip is not None else None
        if "garment" in families and row.garment_references:
            refs = row.garment_references
            query = feature_metrics.clip_image_embeddings(clip, [region])
            metrics["clip_i"] = feature_metrics.mean_similarity(query, reference_embeddings("clip", refs))
            query = feature_metrics.dino_embeddings(dino, [region])
            metrics["dino"] = feature_metrics.mean_similarity(query, reference_embeddings("dino", refs))
        prompt = row.prompt or row.job.get("prompt")
        if "prompt" in families and prompt:
            image = feature_metrics.clip_image_embeddings(clip, [region])
            text = feature_metrics.clip_text_embeddings(clip, [str(prompt)])
            metrics["clip_t"] = feature_metrics.mean_similarity(image, text)
        if "mask" in families and row.reference_mask is not None and mask is not None:
            reference = _open(row.reference_mask)
            metrics["mask_iou"] = pixel_metrics.mask_iou(mask, reference)
            metrics["boundary_f"] = pixel_metrics.boundary_f(mask, reference)
        if "preservation" in families and mask is not None:
            share, changed, outside = pixel_metrics.changed_outside(
                _open(row.photo), result, mask, tolerance=tolerance
            )
            metrics["changed_outside"] = share
            metrics["changed_outside_pixels"] = changed
            metrics["outside_pixels"] = outside
    if "unpaired" in families:
        _set_metrics(evaluation, scored, models, real)
    summarise(evaluation)
    return evaluation


def _real_set(rows: Sequence[EvalRow], real: Sequence[Path] | None) -> tuple[list[Path], str]:
    if real:
        return list(real), "--real"
    truths = list(dict.fromkeys(r.ground_truth for r in rows if r.ground_truth is not None))
    if len(truths) >= 2:
        return truths, "ground truths"
    return list(dict.fromkeys(r.photo for r in rows)), "photos"


def _set_metrics(evaluation: Evaluation, rows: Sequence[EvalRow], models: MetricModels, real: Any) -> None:
    from tryon.evaluation.set_metrics import fid_kid

    real_paths, which = _real_set(rows, real)
    if len(rows) < 2 or len(real_paths) < 2:
        evaluation.notes.append(
            f"fid/kid not computed: {len(rows)} results and {len(real_paths)} real images (need 2 each)"
        )
        return
    network = models.inception()
    real_images = [_open(p) for p in real_paths]
    overall = fid_kid(network, real_images, [_open(r.result) for r in rows if r.result])
    evaluation.set_metrics = {
        "fid": overall.fid, "kid": overall.kid, "kid_std": overall.kid_std,
        "real": overall.real, "results": overall.fake, "real_set": which, "per_seed": {},
    }  # fmt: skip
    seeds = sorted({r.seed for r in rows if r.seed is not None})
    if len(seeds) >= 2:
        for seed in seeds:
            chosen = [_open(r.result) for r in rows if r.seed == seed and r.result]
            if len(chosen) >= 2:
                scores = fid_kid(network, real_images, chosen)
                evaluation.set_metrics["per_seed"][str(seed)] = {"fid": scores.fid, "kid": scores.kid}
    if len(rows) < 100:
        evaluation.notes.append(
            f"fid/kid over {len(rows)} results: FID is biased upwards on small sets; "
            "compare runs of the same size"
        )


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def row_metric_names(evaluation: Evaluation) -> list[str]:
    """The row metrics present, in the families' order."""
    present = {name for row in evaluation.rows for name in row["metrics"]}
    return [m for f in FAMILIES for m in ROW_METRICS.get(f, ()) if m in present]


def summarise(evaluation: Evaluation) -> None:
    """Fill the summary, per-class and per-seed means, and the seed noise (std of per-seed means)."""
    names = row_metric_names(evaluation)
    by_metric: dict[str, list[float]] = defaultdict(list)
    by_class: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    by_seed: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in evaluation.rows:
        for name in names:
            value = row["metrics"].get(name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            by_metric[name].append(value)
            by_class[row["class"] or "all"][name].append(value)
            if row["seed"] is not None:
                by_seed[str(row["seed"])][name].append(value)
    evaluation.summary = {name: _stats(values) for name, values in by_metric.items()}
    evaluation.per_class = {
        cls: {name: _stats(values) for name, values in metrics.items()}
        for cls, metrics in sorted(by_class.items())
    }
    evaluation.per_seed = {
        seed: {name: statistics.fmean(values) for name, values in metrics.items()}
        for seed, metrics in sorted(by_seed.items(), key=lambda item: int(item[0]))
    }
    for seed, values in evaluation.set_metrics.get("per_seed", {}).items():
        evaluation.per_seed.setdefault(seed, {}).update(values)
    evaluation.seed_noise = seed_noise(evaluation.per_seed)


def seed_noise(per_seed: dict[str, dict[str, float]]) -> dict[str, float]:
    """Standard deviation, across seeds, of each metric's per-seed mean (needs >= 2 seeds)."""
    noise: dict[str, list[float]] = defaultdict(list)
    for metrics in per_seed.values():
        for name, value in metrics.items():
            noise[name].append(value)
    return {name: statistics.stdev(values) for name, values in noise.items() if len(values) >= 2}
