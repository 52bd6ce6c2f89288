"""Metrics that need no network weights: SSIM, PSNR, pixels changed outside the mask, mask IoU and
boundary F-score. LPIPS (paired, with weights) lives here too because it compares the same pairs.

Images are PIL images; pairs must have the same size (the caller refuses otherwise, naming the files).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

#: PSNR of identical images is infinite; reports cap it here (dB) so JSON stays finite.
PSNR_CAP_DB = 100.0
#: Boundary F-score tolerance, as a fraction of the image diagonal (DAVIS's 0.008).
BOUNDARY_TOLERANCE = 0.008


def to_tensor(image: Image.Image, dtype: Any = np.float32) -> Any:
    """(1, 3, H, W) tensor in [0, 1] (float32, or ``dtype``)."""
    import torch

    array = np.asarray(image.convert("RGB"), dtype=dtype) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def ssim(result: Image.Image, reference: Image.Image) -> float:
    """Structural similarity (torchmetrics, Gaussian window 11, sigma 1.5, data range 1): 1 = identical."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    # Identical images have SSIM 1 by definition; in float32 the variance of flat regions
    # (E[x^2] - E[x]^2) is noisy enough to give 0.9998, and float64 is 12x slower (bench.eval_throughput).
    if (
        result.size == reference.size
        and result.convert("RGB").tobytes() == reference.convert("RGB").tobytes()
    ):
        return 1.0
    return float(structural_similarity_index_measure(to_tensor(result), to_tensor(reference), data_range=1.0))


def psnr(result: Image.Image, reference: Image.Image) -> float:
    """Peak signal-to-noise ratio in dB (torchmetrics, data range 1), capped at :data:`PSNR_CAP_DB`."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    value = float(peak_signal_noise_ratio(to_tensor(result), to_tensor(reference), data_range=1.0))
    return PSNR_CAP_DB if math.isinf(value) or value > PSNR_CAP_DB else value


def lpips(metric: Any, result: Image.Image, reference: Image.Image) -> float:
    """LPIPS distance (torchmetrics ``LearnedPerceptualImagePatchSimilarity``, normalize=True): 0 = same."""
    import torch

    with torch.no_grad():
        value = metric(to_tensor(result), to_tensor(reference))
    metric.reset()
    return float(value)


def binary(mask: Image.Image, size: tuple[int, int] | None = None) -> np.ndarray:
    """A mask image as a boolean array (pixels >= 128), resized (nearest) to ``size`` if given."""
    gray = mask.convert("L")
    if size is not None and gray.size != size:
        gray = gray.resize(size, Image.Resampling.NEAREST)
    return np.asarray(gray) >= 128


def changed_outside(
    photo: Image.Image, result: Image.Image, mask: Image.Image, *, tolerance: int = 0
) -> tuple[float, int, int]:
    """(share, changed, outside): pixels outside the mask whose value changed by more than ``tolerance``.

    "Outside" is where the mask is exactly 0 (a feathered edge counts as inside). A pixel changed
    when any channel differs by more than ``tolerance`` (0: any difference at all).
    """
    before = np.asarray(photo.convert("RGB"), dtype=np.int16)
    after = np.asarray(result.convert("RGB"), dtype=np.int16)
    gray = mask.convert("L")
    if gray.size != photo.size:
        gray = gray.resize(photo.size, Image.Resampling.NEAREST)
    outside = np.asarray(gray) == 0
    changed = (np.abs(after - before) > tolerance).any(axis=2) & outside
    total = int(outside.sum())
    count = int(changed.sum())
    return (count / total if total else 0.0), count, total


def mask_iou(predicted: Image.Image, reference: Image.Image) -> float:
    """Intersection over union of two masks (the prediction resized to the reference); both empty: 1."""
    ref = binary(reference)
    pred = binary(predicted, (ref.shape[1], ref.shape[0]))
    union = int((pred | ref).sum())
    return 1.0 if union == 0 else int((pred & ref).sum()) / union


def _boundary(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask, structure=np.ones((3, 3), bool), border_value=0)


def _disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius


def boundary_f(
    predicted: Image.Image, reference: Image.Image, *, tolerance: float = BOUNDARY_TOLERANCE
) -> float:
    """Boundary F-score (DAVIS): contour precision and recall within ``tolerance`` x diagonal pixels.

    Both contours empty: 1; one empty: 0.
    """
    from scipy import ndimage

    ref = binary(reference)
    pred = binary(predicted, (ref.shape[1], ref.shape[0]))
    pb, rb = _boundary(pred), _boundary(ref)
    if not pb.any() and not rb.any():
        return 1.0
    if not pb.any() or not rb.any():
        return 0.0
    radius = max(1, round(tolerance * math.hypot(*ref.shape)))
    disk = _disk(radius)
    precision = float((pb & ndimage.binary_dilation(rb, structure=disk)).sum() / pb.sum())
    recall = float((rb & ndimage.binary_dilation(pb, structure=disk)).sum() / rb.sum())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
