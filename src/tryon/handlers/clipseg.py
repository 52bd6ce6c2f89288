"""CLIPSeg text-prompted segmentation endpoint: image + queries -> garment mask.

All positive and negative queries go through the model in one batched forward. The
logits are upsampled to the image's own (EXIF-oriented) size and thresholded in logit
space (``sigmoid(x) >= t`` is ``x >= logit(t)``), so the extremes are exact: threshold 0
selects every pixel, threshold 1 none, even where float32 sigmoids saturate.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from tryon.core import imaging
from tryon.core.contract import CLIPSEG, COMPUTE_SECONDS
from tryon.core.errors import RequestError
from tryon.handlers import mask_ops, threads
from tryon.handlers.common import (
    PhaseTimer,
    encode_image,
    json_response,
    load_image,
    loading_progress_bars,
    parse_json_request,
    resolve_model_source,
    torch_device_and_dtype,
)
from tryon.handlers.compat import dtype_kwargs
from tryon.handlers.s3io import OutputTarget, output_target, write_pngs

DEFAULT_MODEL_ID = "CIDAS/clipseg-rd64-refined"
MAX_QUERIES = CLIPSEG["queries"].limits["max_items"]
#: Upsampled logits are produced this many pixels at a time (float32), which bounds the
#: post-processing memory for large photos and many queries.
_UPSAMPLE_CHUNK_PIXELS = 16_000_000


@dataclass
class ClipSegModel:
    """A loaded CLIPSeg model, its processor, where it runs, and a lock for inference."""

    model: Any
    processor: Any
    device: Any
    dtype: Any
    model_id: str
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class ClipSegRequest:
    """A validated request with its decoded RGB image; ``timer`` already holds the decode time."""

    image: Image.Image
    queries: list[str]
    negative_queries: list[str]
    threshold: float
    dilate: int
    feather: int
    output: OutputTarget | None
    timer: PhaseTimer


def model_fn(model_dir: str | None, context: Any = None) -> ClipSegModel:
    """Load CLIPSeg and its processor from ``model_dir`` (or ``HF_MODEL_ID`` / the default hub id)."""
    loading_progress_bars("transformers")
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    source = resolve_model_source(model_dir, DEFAULT_MODEL_ID)
    device, dtype = torch_device_and_dtype()
    processor = CLIPSegProcessor.from_pretrained(source)
    model = CLIPSegForImageSegmentation.from_pretrained(source, **dtype_kwargs("transformers", dtype))
    model = model.to(device).eval()
    return ClipSegModel(model=model, processor=processor, device=device, dtype=dtype, model_id=source)


def input_fn(data: Any, content_type: str | None) -> ClipSegRequest:
    """Parse and validate a JSON request; decode its image (RequestError naming the field)."""
    timer = PhaseTimer()
    with timer.phase("decode"):
        payload = parse_json_request(data, content_type)
        CLIPSEG.check_known(payload)
        queries = CLIPSEG.read(payload, "queries")
        if payload.get("query") is not None:
            if queries:
                raise RequestError("query", "give either query or queries, not both")
            queries = [CLIPSEG.read(payload, "query")]
        if not queries:
            raise RequestError("queries", f"at least one query is required (a list of 1..{MAX_QUERIES})")
        negatives = CLIPSEG.read(payload, "negative_queries")
        threshold = CLIPSEG.read(payload, "threshold")
        dilate = CLIPSEG.read(payload, "dilate")
        feather = CLIPSEG.read(payload, "feather")
        output = output_target(CLIPSEG, payload)
        image = imaging.to_rgb(load_image(payload, "image"))
    return ClipSegRequest(image, queries, negatives, threshold, dilate, feather, output, timer)


def _logit(p: float) -> float:
    """log(p / (1 - p)) with the ends mapped to -inf / +inf."""
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p))


def _upsampled_max(logits, size: tuple[int, int]):
    """Per-query peak logit and the max over queries, upsampled bilinearly to ``size`` (h, w).

    Works through the queries in chunks so memory stays bounded for big images.
    """
    import torch
    import torch.nn.functional as F

    h, w = size
    chunk = max(1, _UPSAMPLE_CHUNK_PIXELS // max(1, h * w))
    union = None
    peaks = []
    for start in range(0, logits.shape[0], chunk):
        part = F.interpolate(
            logits[start : start + chunk, None].float(), size=size, mode="bilinear", align_corners=False
        )[:, 0]
        peaks.append(part.amax(dim=(1, 2)))
        part_max = part.amax(dim=0)
        union = part_max if union is None else torch.maximum(union, part_max)
    return torch.cat(peaks), union


def predict_fn(data: ClipSegRequest, model: ClipSegModel) -> dict[str, Any]:
    """Segment: one batched forward for all queries, union/subtract, threshold, dilate, feather."""
    import torch

    timer = data.timer
    texts = data.queries + data.negative_queries
    n_pos = len(data.queries)
    width, height = data.image.size
    # The lock covers the processor too: a fast tokenizer must not be used by two threads at once.
    with timer.holding(model.lock):
        with timer.phase("preprocess"):
            # The image is preprocessed once and broadcast over the batch (no copies).
            inputs = model.processor(
                text=texts, images=[data.image], padding=True, truncation=True, return_tensors="pt"
            )
            pixel_values = inputs["pixel_values"].to(model.device, model.dtype).expand(len(texts), -1, -1, -1)
            input_ids = inputs["input_ids"].to(model.device)
            attention_mask = inputs["attention_mask"].to(model.device)
        with timer.phase("inference"), threads.fitted(model.model, model.device), torch.inference_mode():
            logits = model.model(
                input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask
            ).logits
    with timer.phase("postprocess"), torch.inference_mode():
        cut = _logit(data.threshold)
        peaks, positive = _upsampled_max(logits[:n_pos], (height, width))
        binary = positive >= cut
        negative_peaks = peaks.new_empty(0)
        if data.negative_queries:
            negative_peaks, negative = _upsampled_max(logits[n_pos:], (height, width))
            binary &= ~(negative >= cut)
        binary_np = binary.cpu().numpy()
        mask = mask_ops.feather(mask_ops.dilate(binary_np, data.dilate), data.feather)
        scores = torch.sigmoid(peaks).tolist()
        negative_scores = torch.sigmoid(negative_peaks).tolist()
    with timer.phase("encode"):
        mask_image = mask_ops.to_image(mask)
        if data.output is None:
            written = {"mask": encode_image(mask_image)}
        else:
            written = {"outputs": write_pngs(data.output, [mask_image], indexed=False)}
    return {
        **written,
        "coverage": mask_ops.coverage(mask),
        "scores": dict(zip(data.queries, scores, strict=True)),
        "negative_scores": dict(zip(data.negative_queries, negative_scores, strict=True)),
        "threshold": data.threshold,
        "size": [width, height],
        "timings_ms": timer.timings_ms,
        COMPUTE_SECONDS: timer.compute_seconds(),
        "model": model.model_id,
    }


def output_fn(prediction: dict[str, Any], accept: str | None) -> str:
    """Serialise the prediction as JSON."""
    return json_response(prediction, accept)
