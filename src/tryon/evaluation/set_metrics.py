"""Unpaired metrics over sets of images: FID and KID (torchmetrics) on FID's Inception-v3 features.

Each image is resized to 299x299 with PIL's bicubic filter (clean-fid's advice: a proper
anti-aliased resize, not the bilinear tensor resize older scripts used), fed as ``uint8``, and
its pool3 features computed once for both metrics. KID is the mean (and standard deviation) of
the polynomial-kernel MMD over random subsets of ``min(1000, smallest set)`` images, seeded so
a report is reproducible. Published KID figures are often multiplied by 100 or 1000: this one is not.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from tryon.evaluation.inception import INPUT_SIZE

BATCH = 16
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


@dataclass
class SetScores:
    """FID and KID of a set of results against a set of real images."""

    fid: float
    kid: float
    kid_std: float
    real: int
    fake: int


def _batches(images: Iterable[Image.Image]) -> Iterable[Any]:
    import torch

    batch: list[np.ndarray] = []
    for image in images:
        resized = image.convert("RGB").resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC)
        batch.append(np.asarray(resized, dtype=np.uint8))
        if len(batch) == BATCH:
            yield torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).contiguous()
            batch = []
    if batch:
        yield torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).contiguous()


class _Once:
    """Runs the network once per batch for both metrics (they call it with the same tensor)."""

    def __init__(self, network: Any) -> None:
        import torch

        class Shared(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.network = network
                self.num_features = network.num_features
                self.last: tuple[Any, Any] | None = None

            def forward(self, images: Any) -> Any:
                if self.last is None or self.last[0] is not images:
                    self.last = (images, self.network(images))
                return self.last[1]

        self.module = Shared()


def inception_features(network: Any, images: Iterable[Image.Image]) -> Any:
    """Pool3 features ``(N, D)`` of ``images`` (for callers that keep them, e.g. benchmarks)."""
    import torch

    with torch.no_grad():
        return torch.cat([network(batch) for batch in _batches(images)])


def fid_kid(
    network: Any, real: Sequence[Image.Image], fake: Sequence[Image.Image], *, seed: int = 0
) -> SetScores:
    """FID and KID of ``fake`` against ``real``; ValueError with fewer than two images on a side."""
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    if len(real) < 2 or len(fake) < 2:
        raise ValueError(
            f"FID and KID need at least 2 images per set (real {len(real)}, results {len(fake)})"
        )
    shared = _Once(network).module
    subset = min(KID_SUBSET_SIZE, len(real), len(fake))
    fid = FrechetInceptionDistance(feature=shared, normalize=False)
    with warnings.catch_warnings():  # "will save all extracted features in buffer": by design, and said
        warnings.filterwarnings("ignore", message=".*will save all extracted features", category=UserWarning)
        kid = KernelInceptionDistance(
            feature=shared, subsets=KID_SUBSETS, subset_size=subset, normalize=False
        )
    with torch.no_grad():
        for is_real, images in ((True, real), (False, fake)):
            for batch in _batches(images):
                fid.update(batch, real=is_real)
                kid.update(batch, real=is_real)
        fid_value = float(fid.compute())
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
        torch.random.set_rng_state(state)
    return SetScores(
        fid=max(0.0, fid_value), kid=float(kid_mean), kid_std=float(kid_std), real=len(real), fake=len(fake)
    )
