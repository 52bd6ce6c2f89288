"""Validation while fine-tuning: score held-out renders, log them, keep the best adapter.

Every ``validation_steps`` steps (and once at the end) the loop renders each held-out photo
(garment photos kept out of training, with their masks) with the current weights; this module
scores the renders with the garment- and prompt-fidelity metrics of ``tryon eval``
(:mod:`tryon.evaluation.feature_metrics`: CLIP-I and DINO against the training photos' garment
regions, CLIP-T against the validation prompt), logs images and metrics to TensorBoard, prints
one metric line that SageMaker's metric definitions read into CloudWatch, saves the adapter
whenever the chosen metric improves (``best/``), and writes ``validation.json`` and
``validation_curve.png`` beside the adapter.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from tryon.training.config import VALIDATION_METRICS

HISTORY_NAME = "validation.json"
CURVE_NAME = "validation_curve.png"
BEST_DIR = "best"
#: Every metric line starts with this, so metric definitions match nothing else in the logs.
LINE_PREFIX = "tryon-metrics"
_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def metric_line(step: int, values: dict[str, float]) -> str:
    """``tryon-metrics step=200 train_loss=0.1 validation_clip_i=0.8``: one line for the job's logs."""
    parts = [f"{name}={value:.6g}" for name, value in values.items() if value is not None]
    return f"{LINE_PREFIX} step={step} " + " ".join(parts)


def metric_definitions() -> list[dict[str, str]]:
    """SageMaker metric definitions (Name, Regex) matching :func:`metric_line` in the job's logs."""
    names = ["train_loss", "learning_rate", *(f"validation_{m}" for m in VALIDATION_METRICS)]
    return [{"Name": name, "Regex": rf"{LINE_PREFIX} .*\b{re.escape(name)}={_NUMBER}"} for name in names]


@dataclass
class HeldOut:
    """The photos validation renders (at the training resolution) and the garment references."""

    images: list[Image.Image]
    masks: list[Image.Image]
    names: list[str]
    #: training photos' garment regions (CLIP-I/DINO references)
    references: list[Image.Image]
    held_out: bool


@dataclass
class Validator:
    """Scores, logs and keeps the best of the validation rounds of one run."""

    out_dir: Path
    prompt: str
    best_metric: str
    held: HeldOut
    models: Any = None  # tryon.evaluation.metric_models.MetricModels, or None: grids only
    log: Callable[[dict[str, float], int], None] = lambda _values, _step: None
    log_images: Callable[[str, list[Image.Image], int], None] = lambda _tag, _images, _step: None
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    _references: dict[str, Any] = field(default_factory=dict)

    def score(self, renders: Sequence[Sequence[Image.Image]]) -> dict[str, float]:
        """Mean CLIP-I, DINO and CLIP-T of the renders (one list per held-out photo); {} without models."""
        if self.models is None:
            return {}
        from tryon.evaluation import feature_metrics as fm

        clip, dino = self.models.clip(), self.models.dino()
        if not self._references:
            self._references["clip"] = fm.clip_image_embeddings(clip, self.held.references)
            self._references["dino"] = fm.dino_embeddings(dino, self.held.references)
            self._references["text"] = fm.clip_text_embeddings(clip, [self.prompt])
        regions = [
            fm.garment_region(image, mask)
            for images, mask in zip(renders, self.held.masks, strict=True)
            for image in images
        ]
        clip_q, dino_q = fm.clip_image_embeddings(clip, regions), fm.dino_embeddings(dino, regions)
        return {
            "clip_i": float((clip_q @ self._references["clip"].T).mean()),
            "dino": float((dino_q @ self._references["dino"].T).mean()),
            "clip_t": float((clip_q @ self._references["text"].T).mean()),
        }

    def round(
        self,
        step: int,
        renders: Sequence[Sequence[Image.Image]],
        grid: Path,
        save_best: Callable[[Path], None],
        *,
        seconds: float = 0.0,
    ) -> dict[str, float]:
        """Score, log, print the metric line, save the best weights; returns the metrics.

        ``seconds``: what rendering took; the round's record keeps the round's whole time (rendering
        and scoring: ``seconds``) and the scoring's (``score_seconds``; the first round's includes
        loading the metric networks and embedding the references).
        """
        started = time.perf_counter()
        metrics = self.score(renders)
        scoring = time.perf_counter() - started
        self.history.append(
            {
                "step": step,
                "grid": str(grid),
                **metrics,
                "seconds": round(seconds + scoring, 3),
                "score_seconds": round(scoring, 3),
            }
        )
        self.log({f"validation/{k}": v for k, v in metrics.items()}, step)
        self.log_images("validation", [img for images in renders for img in images], step)
        value = metrics.get(self.best_metric)
        improved = (
            value is not None and not math.isnan(value) and (self.best is None or value > self.best["value"])
        )
        marker = ""
        if improved:
            target = self.out_dir / BEST_DIR
            save_best(target)
            self.best = {"step": step, "metric": self.best_metric, "value": value, "path": str(target)}
            (target / "best.json").write_text(json.dumps(self.best, indent=2) + "\n")
            marker = f" (best {self.best_metric} so far: saved to {target})"
        if metrics:
            print(metric_line(step, {f"validation_{k}": v for k, v in metrics.items()}) + marker, flush=True)
        self.write(curve=False)  # the curve is drawn once, at the end: matplotlib costs a second a plot
        return metrics

    def write(self, *, curve: bool = True) -> Path:
        """``validation.json`` (every round, the best) and, with ``curve``, ``validation_curve.png``."""
        path = self.out_dir / HISTORY_NAME
        document = {
            "prompt": self.prompt,
            "held_out": self.held.names if self.held.held_out else [],
            "validated_on": self.held.names,
            "best_metric": self.best_metric,
            "best": self.best,
            "rounds": self.history,
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
        if curve and any(k in r for r in self.history for k in VALIDATION_METRICS):
            self._curve()
        return path

    def _curve(self) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        figure, axis = plt.subplots(figsize=(5, 3))
        for name in VALIDATION_METRICS:
            points = [(r["step"], r[name]) for r in self.history if name in r]
            if points:
                axis.plot(*zip(*points, strict=True), marker="o", label=name)
        if self.best is not None:
            axis.axvline(self.best["step"], color="grey", linestyle=":", label=f"best {self.best_metric}")
        axis.set_xlabel("step")
        axis.set_ylabel("cosine similarity")
        axis.legend(fontsize=7)
        path = self.out_dir / CURVE_NAME
        figure.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(figure)
        return path
