"""Handler overhead: full request path vs the bare model/pipeline call, measured in one run.

For CLIPSeg (the tiny checkpoint and, with ``--full``, a random-initialised model with the
CIDAS/clipseg-rd64-refined shape, loaded through ``model_fn``) it times
``input_fn -> predict_fn -> output_fn`` on a JSON body carrying a base64 JPEG photo against
the bare ``processor(...) + model(...)`` call on the pre-decoded image (same size, same
queries), and one batched forward of 4 queries against 4 one-query forwards. For the x4
upscaler (tiny) it times the handler path against a bare pipeline call. Handler and
baseline runs alternate, so load from other processes hits both alike.

    .venv/bin/python -m bench.handler_overhead --repeats 5 --full
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUERIES = ["a shirt", "trousers", "a dress", "a jacket"]
NEGATIVES: list[str] = []
REPO_ROOT = Path(__file__).resolve().parent.parent


def synthetic_photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo-like test image: smooth gradients, a few blocks and mild noise (JPEG-friendly)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    arr = np.stack([xx / width * 200, yy / height * 200, (xx + yy) / (width + height) * 120 + 60], axis=-1)
    for _ in range(6):
        x0, y0 = rng.integers(0, width // 2), rng.integers(0, height // 2)
        arr[y0 : y0 + height // 3, x0 : x0 + width // 4] = rng.integers(0, 256, 3)
    arr += rng.normal(0, 6, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(repeats: int, **fns: Callable[[], object]) -> dict[str, list[float]]:
    """Seconds per run of each function; one warm-up each, then the functions take turns."""
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            samples[name].append(timed(fn))
    return samples


def ms(samples: list[float]) -> str:
    """ "median ms (min ms)" of a list of seconds."""
    return f"{statistics.median(samples) * 1000:.1f} ms (min {min(samples) * 1000:.1f})"


def ratio(a: list[float], b: list[float]) -> str:
    """Ratio of medians, with the ratio of minima (less sensitive to other load) beside it."""
    return f"{statistics.median(a) / statistics.median(b):.3f} (min/min {min(a) / min(b):.3f})"


def build_full_clipseg(out_dir: Path) -> int:
    """Save a random CLIPSeg with the rd64-refined shape (char-level tokenizer); return its size."""
    import torch
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    from tryon.weights.tiny import build_clip_tokenizer, save_clipseg

    tokenizer = build_clip_tokenizer()
    vocab = len(tokenizer)
    torch.manual_seed(0)
    config = CLIPSegConfig(
        text_config={
            "vocab_size": vocab,
            "hidden_size": 512,
            "intermediate_size": 2048,
            "num_hidden_layers": 12,
            "num_attention_heads": 8,
            "max_position_embeddings": 77,
            "bos_token_id": vocab - 2,
            "eos_token_id": vocab - 1,
            "pad_token_id": vocab - 1,
        },
        vision_config={
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "image_size": 224,
            "patch_size": 16,
        },
        projection_dim=512,
        reduce_dim=64,
        extract_layers=[3, 6, 9],
        decoder_num_attention_heads=4,
        decoder_intermediate_size=2048,
        conditional_layer=0,
        use_complex_transposed_convolution=True,
    )
    model = CLIPSegForImageSegmentation(config).eval()
    save_clipseg(model, tokenizer, out_dir, image_size=352)
    return sum(p.numel() for p in model.parameters())


def bench_clipseg(label: str, model_dir: str, photo: Image.Image, repeats: int) -> list[tuple[str, str]]:
    """Rows of (measure, value) for one CLIPSeg checkpoint."""
    import torch

    from tryon.core import imaging
    from tryon.handlers import clipseg

    model = clipseg.model_fn(model_dir)
    body = json.dumps({"image": imaging.b64encode(imaging.encode_jpeg(photo)), "queries": QUERIES})
    decoded = imaging.decode_image(imaging.encode_jpeg(photo))
    timings: list[dict[str, float]] = []

    def handler() -> None:
        request = clipseg.input_fn(body, "application/json")
        prediction = clipseg.predict_fn(request, model)
        clipseg.output_fn(prediction, "application/json")
        timings.append(prediction["timings_ms"])

    def bare(texts: list[str]) -> Callable[[], object]:
        def call() -> object:
            inputs = model.processor(
                text=texts, images=[decoded] * len(texts), padding=True, return_tensors="pt"
            )
            with torch.inference_mode():
                return model.model(**inputs).logits

        return call

    def one_at_a_time() -> None:
        for text in QUERIES:
            bare([text])()

    runs = alternate(repeats, handler=handler, bare=bare(QUERIES), sequential=one_at_a_time)
    phases = {k: statistics.median(t[k] for t in timings) for k in timings[0]}
    n = len(QUERIES)
    return [
        (f"{label}: handler path (JSON in -> JSON out), {n} queries", ms(runs["handler"])),
        (f"{label}: bare processor + forward, {n} queries", ms(runs["bare"])),
        (f"{label}: overhead ratio handler / bare", ratio(runs["handler"], runs["bare"])),
        (f"{label}: handler phases (median ms)", ", ".join(f"{k} {v:.1f}" for k, v in phases.items())),
        (f"{label}: {n} one-query forwards", ms(runs["sequential"])),
        (
            f"{label}: batched speedup ({n} forwards / 1 batch)",
            ratio(runs["sequential"], runs["bare"]),
        ),
    ]


def bench_upscale(repeats: int) -> list[tuple[str, str]]:
    """Rows for the tiny x4 upscaler: handler path vs a bare pipeline call on the same input."""
    import torch

    from tryon.core import imaging
    from tryon.handlers import sd_upscale
    from tryon.weights.tiny import ensure_tiny_models

    model = sd_upscale.model_fn(
        str(ensure_tiny_models(REPO_ROOT / ".cache" / "tiny-models")["sd-x4-upscaler"])
    )
    photo = synthetic_photo(128, 96, seed=1)
    params = {"prompt": "a dress", "steps": 10, "guidance_scale": 7.5, "noise_level": 20, "seed": 0}
    body = json.dumps({"image": imaging.b64encode(imaging.encode_png(photo)), **params})

    def handler() -> None:
        request = sd_upscale.input_fn(body, "application/json")
        sd_upscale.output_fn(sd_upscale.predict_fn(request, model), "application/json")

    def bare() -> object:
        return model.pipe(
            prompt=params["prompt"],
            image=photo,
            num_inference_steps=params["steps"],
            guidance_scale=params["guidance_scale"],
            noise_level=params["noise_level"],
            generator=torch.Generator("cpu").manual_seed(0),
        ).images[0]

    runs = alternate(repeats, handler=handler, bare=bare)
    return [
        ("upscale tiny: handler path, 32x24 -> 128x96, 4 steps", ms(runs["handler"])),
        ("upscale tiny: bare pipeline call (PIL out)", ms(runs["bare"])),
        ("upscale tiny: overhead ratio handler / bare", ratio(runs["handler"], runs["bare"])),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per full-size measure (median)")
    parser.add_argument("--tiny-repeats", type=int, default=15, help="timed runs per tiny-model measure")
    parser.add_argument(
        "--full",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure a full-size (rd64-refined shape) random CLIPSeg",
    )
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--height", type=int, default=1024)
    args = parser.parse_args(argv)

    import torch

    from tryon.weights.tiny import ensure_tiny_models

    photo = synthetic_photo(args.width, args.height)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"photo {args.width}x{args.height} JPEG; repeats {args.repeats} full, {args.tiny_repeats} tiny"
    )
    tiny = ensure_tiny_models(REPO_ROOT / ".cache" / "tiny-models")
    rows = bench_clipseg("clipseg tiny", str(tiny["clipseg"]), photo, args.tiny_repeats)
    if args.full:
        with tempfile.TemporaryDirectory(prefix="clipseg-full-") as tmp:
            params = build_full_clipseg(Path(tmp))
            rows.append(("clipseg full: parameters (random, rd64-refined shape)", f"{params / 1e6:.1f} M"))
            rows += bench_clipseg("clipseg full", tmp, photo, args.repeats)
    rows += bench_upscale(args.tiny_repeats)
    width = max(len(name) for name, _ in rows)
    print(f"{'measure'.ljust(width)}  value")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")


if __name__ == "__main__":
    main()
