"""Shared by the training tests: a few-step, 64 px training configuration on a tiny checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tryon.training.config import TrainingConfig

#: Few steps at a small size: the loop, its checkpoints and its validation, fast.
QUICK = {
    "resolution": 64,
    "max_train_steps": 4,
    "learning_rate": 5e-3,
    "validation_inference_steps": 2,
    "num_validation_images": 1,
}


def quick_config(model: Path | str, photos: Path | str, out: Path | str, **changes: Any) -> TrainingConfig:
    """A :data:`QUICK` configuration training ``model`` on ``photos`` into ``out`` (``changes`` win)."""
    values: dict[str, Any] = {
        "pretrained_model": str(model),
        "instance_data_dir": str(photos),
        "instance_prompt": "a photo of sks skirt",
        "output_dir": str(out),
        **QUICK,
    }
    values.update(changes)
    return TrainingConfig(**values)
