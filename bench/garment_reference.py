"""What a garment reference image (IP-Adapter) adds to an inpainting request, against the same without.

Two figures, each with its baseline measured in the same run, calls interleaved (ABBA):

1. tiny: ``predict_fn`` on the tiny checkpoint with its tiny IP-Adapter (300x200 photo,
   2 steps), with ``garment_image`` versus without;
2. ``--full``: a full-size random SD 1.5 inpainting pipeline (``bench.full_models``, the
   runwayml/stable-diffusion-inpainting shapes) with a full-size IP-Adapter (a ViT-H/14 image
   encoder, 632 M parameters, as h94/IP-Adapter's ``models/image_encoder``), one step at 512 px:
   the garment's encoding plus the pipeline call at ``garment_scale`` 0.6, versus the call a
   request without a garment makes on the same model (scale 0, zero embeddings). The image
   encoder alone is reported too.

Run: ``.venv/bin/python -m bench.garment_reference [--full] [--repeats N] [--threads T]``
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.inpaint_adapters import paired_median_ms
from tryon.local.samples import box_mask, noise_image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: h94/IP-Adapter models/image_encoder: OpenCLIP ViT-H/14 vision tower with a 1024-d projection.
VIT_H_IMAGE_ENCODER = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 16,
    "patch_size": 14,
    "image_size": 224,
    "projection_dim": 1024,
    "hidden_act": "gelu",
}


def _b64png(img) -> str:
    import base64

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def tiny(repeats: int) -> None:
    """Figure 1: the handler on the tiny checkpoint, with and without a garment image."""

    from tryon.handlers import sd_inpaint
    from tryon.weights.tiny import ensure_tiny_models

    model = sd_inpaint.model_fn(str(ensure_tiny_models()["sd-inpaint-ip"]))
    mask = box_mask((300, 200), (100, 50, 180, 120))
    plain = {
        "image": _b64png(noise_image((300, 200), 0)),
        "mask": _b64png(mask),
        "prompt": "a shirt",
        "steps": 2,
    }
    plain["seed"] = 7
    dressed = {**plain, "garment_image": _b64png(noise_image((600, 800), 1))}
    with_ms, without_ms = paired_median_ms(
        lambda: sd_inpaint.predict_fn(dressed, model), lambda: sd_inpaint.predict_fn(plain, model), repeats
    )
    print("tiny (predict_fn, 300x200 photo, 600x800 packshot, 2 steps, 64 px working size):")
    print(f"  with garment_image {with_ms:.1f} ms, without {without_ms:.1f} ms")
    print(f"  with/without = {with_ms / without_ms:.2f}x (added {with_ms - without_ms:.1f} ms)")


def full(repeats: int) -> None:
    """Figure 2: full-size random SD 1.5 inpainting + ViT-H IP-Adapter, one step at 512 px."""
    import torch
    from PIL import Image
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from bench.full_models import build_pipeline
    from tryon.handlers import ip_adapter
    from tryon.handlers.ip_adapter import GarmentRequest
    from tryon.weights.tiny import ip_adapter_weights

    pipe = build_pipeline("sd15-inpaint")
    torch.manual_seed(1)
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**VIT_H_IMAGE_ENCODER)).eval()
    pipe.register_modules(image_encoder=encoder)
    flat = ip_adapter_weights(pipe.unet, VIT_H_IMAGE_ENCODER["projection_dim"])
    nested: dict[str, dict] = {"image_proj": {}, "ip_adapter": {}}
    for key, value in flat.items():
        part, _, name = key.partition(".")
        nested[part][name] = value
    pipe.load_ip_adapter(nested, subfolder="", weight_name="", image_encoder_folder=None)
    conditioner = ip_adapter.conditioner(pipe, "ip-adapter_sd15 (random)")
    encoder_params = sum(p.numel() for p in encoder.parameters()) / 1e6
    unet_params = sum(p.numel() for p in pipe.unet.parameters()) / 1e6
    photo, mask = noise_image((512, 512), 0), Image.new("L", (512, 512), 255)
    garment = GarmentRequest(noise_image((768, 1024), 1), 0.6)

    def call(request: GarmentRequest | None) -> None:
        with torch.no_grad():
            embeds = conditioner.embeds(request, 7.5)
            pipe(
                prompt="a shirt",
                image=photo,
                mask_image=mask,
                num_inference_steps=1,
                guidance_scale=7.5,
                generator=torch.Generator().manual_seed(0),
                ip_adapter_image_embeds=embeds,
                output_type="pil",
            )

    def encode() -> None:
        with torch.no_grad():
            conditioner.embeds(garment, 7.5)

    with_ms, without_ms = paired_median_ms(lambda: call(garment), lambda: call(None), repeats)
    encode_ms = statistics.median(_timed(encode) for _ in range(max(3, repeats)))
    print(
        f"full-size SD 1.5 inpainting (UNet {unet_params:.0f} M params) + IP-Adapter "
        f"(ViT-H/14 image encoder {encoder_params:.0f} M), 512 px, 1 step, CFG:"
    )
    print(f"  with garment_image {with_ms:.0f} ms, without {without_ms:.0f} ms")
    print(f"  with/without = {with_ms / without_ms:.3f}x (added {with_ms - without_ms:.0f} ms)")
    print(f"  of which the image encoder (one 224 px packshot): {encode_ms:.0f} ms")


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--full", action="store_true", help="also the full-size SD 1.5 figure (minutes on CPU)"
    )
    parser.add_argument("--full-repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()

    import torch
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(
        f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} repeats={args.repeats}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("TRYON_ADAPTER_CACHE_DIR", str(Path(tmp) / "adapters"))
        tiny(args.repeats)
    if args.full:
        full(args.full_repeats)


if __name__ == "__main__":
    main()
