"""Local workflow overhead: execution wall time against the model time the endpoints report.

One ``make demo``-style execution (the sample photo uploaded, the EventBridge rule
starting the real ASL on moto, the real Lambda handlers, the endpoints behind the local
server over HTTP) on full-size random-initialised models: a CLIPSeg with the rd64-refined
shape and an SD2-inpainting pipeline (the 865.9 M-parameter UNet and the full VAE, a
1-layer 1024-wide text encoder) for ONE inpainting step at 512 px. Per state it prints the
state's wall time, the endpoint's own ``inference`` time and everything else (Lambda
handler, S3, HTTP, image decode/encode, orchestration); the goal is overhead < 10% of
model time. Both are measured in the same run, so the ratio holds on any machine.

    .venv/bin/python -m bench.workflow_overhead            # full size (several minutes, ~8 GB RAM)
    .venv/bin/python -m bench.workflow_overhead --tiny     # the tiny checkpoints, for a quick look
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_full_sd2_inpaint(out_dir: Path) -> int:
    """Save a random SD2-inpainting pipeline (full UNet and VAE, a small text encoder); return UNet params."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from bench.gpu_unet_throughput import SD2_INPAINT_UNET
    from tryon.weights.tiny import build_clip_tokenizer

    tokenizer = build_clip_tokenizer()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD2_INPAINT_UNET)
    vae = AutoencoderKL(
        block_out_channels=[128, 256, 512, 512],
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=1024,
            intermediate_size=1024,
            num_hidden_layers=1,
            num_attention_heads=16,
            max_position_embeddings=77,
            bos_token_id=len(tokenizer) - 2,
            eos_token_id=len(tokenizer) - 1,
            pad_token_id=len(tokenizer) - 1,
        )
    )
    pipe = StableDiffusionInpaintPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out_dir, safe_serialization=True)
    return sum(p.numel() for p in unet.parameters())


def model_dirs(tiny: bool, tmp: Path) -> tuple[dict[str, Path], dict[str, int], str]:
    """(model folders, template parameters, label): the tiny checkpoints, or full-size ones in ``tmp``."""
    from bench.handler_overhead import build_full_clipseg
    from tryon.local.runner import TINY_PARAMETERS
    from tryon.weights.tiny import ensure_tiny_models

    if tiny:
        models = ensure_tiny_models()
        dirs = {"clipseg": models["clipseg"], "sd_inpaint": models["sd-inpaint"]}
        return dirs, dict(TINY_PARAMETERS), "tiny checkpoints"
    started = time.perf_counter()
    clipseg_params = build_full_clipseg(Path(tmp, "clipseg"))
    unet_params = build_full_sd2_inpaint(Path(tmp, "sd2-inpaint"))
    took = time.perf_counter() - started
    sizes = f"CLIPSeg {clipseg_params / 1e6:.1f} M, SD2-inpaint UNet {unet_params / 1e6:.1f} M params"
    print(f"built {sizes} in {took:.0f} s")
    dirs = {"clipseg": Path(tmp, "clipseg"), "sd_inpaint": Path(tmp, "sd2-inpaint")}
    return dirs, {"DefaultSteps": 1}, "full-size CLIPSeg + SD2-inpaint, 1 step at 512 px"


def main(argv: list[str] | None = None) -> None:
    from tryon.aws.executions import StateEvent, format_event
    from tryon.local.runner import DEMO_OVERRIDES, DEMO_PHOTO, run_photo

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tiny", action="store_true", help="Use the tiny checkpoints instead of full-size ones."
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        dirs, parameters, label = model_dirs(args.tiny, Path(tmp))
        events: list[StateEvent] = []

        def on_event(event: StateEvent) -> None:
            events.append(event)
            print(format_event(event))

        run = run_photo(
            DEMO_PHOTO,
            model_dirs=dirs,
            out_dir=Path(tmp, "out"),
            overrides={**DEMO_OVERRIDES, "upscale": False},
            upscale=False,
            parameters=parameters,
            on_event=on_event,
            timeout=1800,
        )
        assert run.result.succeeded, run.result.cause
        manifest = __import__("json").loads(Path(tmp, "out", "manifest.json").read_text())

    durations = {
        e.state: e.duration_s * 1000 for e in events if e.phase == "exited" and e.duration_s is not None
    }
    first = min(e.timestamp for e in events)
    last = max(e.timestamp for e in events)
    wall_ms = (last - first).total_seconds() * 1000
    print(f"\n{label}; photo {DEMO_PHOTO.name}\n")
    print(
        "| state | wall ms | endpoint inference ms | endpoint other ms | overhead ms | overhead / inference |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    total_inference = 0.0
    for state, key in (("Segment", "segment"), ("Inpaint", "inpaint")):
        timings = manifest["timings_ms"][key]["endpoint_timings_ms"]
        inference = timings["inference"]
        other = sum(v for k, v in timings.items() if k not in ("inference", "queue"))
        overhead = durations[state] - inference
        total_inference += inference
        print(f"| {state} | {durations[state]:.0f} | {inference:.0f} | {other:.0f} | {overhead:.0f} "
              f"| {overhead / inference:.1%} |")  # fmt: skip
    overhead = wall_ms - total_inference
    print(f"| whole execution | {wall_ms:.0f} | {total_inference:.0f} | | {overhead:.0f} "
          f"| **{overhead / total_inference:.1%}** |")  # fmt: skip
    print("\n'endpoint other' = decode + preprocess + postprocess + encode inside the endpoint;")
    print(
        "'overhead' = wall - inference: Lambda handlers, S3, HTTP, image coding, orchestration (goal < 10%)."
    )


if __name__ == "__main__":
    main()
