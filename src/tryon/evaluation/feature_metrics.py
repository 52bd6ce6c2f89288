"""Garment and prompt fidelity: CLIP-I, DINO and CLIP-T, as DreamBooth reports them.

- **CLIP-I** / **DINO**: cosine similarity between the embedding of the result's garment region
  and the embeddings of the garment's reference images (its packshot, or the adapter's training
  photos), averaged over the references. CLIP uses its projected image embedding, DINOv2 its
  pooled (class-token) output.
- **CLIP-T**: cosine similarity between the garment region's CLIP image embedding and the
  prompt's CLIP text embedding (raw cosine, not DreamBooth's 100x scale).

The garment region is the mask's bounding box (plus a small margin) cut from the result, with
the pixels outside the mask painted white, the way packshots show a garment. Without a mask the
whole image is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

#: Margin around the mask's bounding box, as a fraction of its larger side.
CROP_MARGIN = 0.05
BACKGROUND = (255, 255, 255)


def garment_region(image: Image.Image, mask: Image.Image | None) -> Image.Image:
    """The garment cut out of ``image`` by ``mask`` (see the module doc); the whole image without a mask."""
    rgb = image.convert("RGB")
    if mask is None:
        return rgb
    gray = mask.convert("L")
    if gray.size != rgb.size:
        gray = gray.resize(rgb.size, Image.Resampling.NEAREST)
    inside = np.asarray(gray) >= 128
    if not inside.any():
        return rgb
    ys, xs = np.nonzero(inside)
    margin = round(CROP_MARGIN * max(np.ptp(xs) + 1, np.ptp(ys) + 1))
    box = (
        max(0, xs.min() - margin),
        max(0, ys.min() - margin),
        min(rgb.width, xs.max() + 1 + margin),
        min(rgb.height, ys.max() + 1 + margin),
    )
    cut = Image.composite(
        rgb, Image.new("RGB", rgb.size, BACKGROUND), gray.point(lambda v: 255 if v >= 128 else 0)
    )
    return cut.crop(tuple(int(v) for v in box))


def _normalise(features: Any) -> Any:
    return features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _pooled(output: Any) -> Any:
    """The embedding tensor of a transformers output (a tensor already, or its pooled output)."""
    return output if hasattr(output, "norm") else output.pooler_output


def clip_image_embeddings(clip: tuple[Any, Any], images: Sequence[Image.Image]) -> Any:
    """Unit-length CLIP image embeddings ``(N, D)``."""
    import torch

    model, processor = clip
    with torch.no_grad():
        inputs = processor(images=[img.convert("RGB") for img in images], return_tensors="pt")
        return _normalise(_pooled(model.get_image_features(pixel_values=inputs["pixel_values"])))


def clip_text_embeddings(clip: tuple[Any, Any], texts: Sequence[str]) -> Any:
    """Unit-length CLIP text embeddings ``(N, D)`` (prompts truncated to CLIP's 77 tokens)."""
    import torch

    model, processor = clip
    with torch.no_grad():
        inputs = processor(text=list(texts), return_tensors="pt", padding=True, truncation=True)
        features = model.get_text_features(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
        )
        return _normalise(_pooled(features))


def dino_embeddings(dino: tuple[Any, Any], images: Sequence[Image.Image]) -> Any:
    """Unit-length DINOv2 embeddings ``(N, D)`` (the pooled class token)."""
    import torch

    model, processor = dino
    with torch.no_grad():
        inputs = processor(images=[img.convert("RGB") for img in images], return_tensors="pt")
        return _normalise(model(pixel_values=inputs["pixel_values"]).pooler_output)


def mean_similarity(query: Any, references: Any) -> float:
    """Mean cosine similarity of one unit embedding ``(1, D)`` to each reference ``(M, D)``."""
    return float((references @ query[0]).mean())
