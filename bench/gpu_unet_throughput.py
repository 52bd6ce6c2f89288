"""Training throughput of a full-size SD2-inpainting UNet (random init, built in code): LoRA vs full.

Measures the UNet's share of a DreamBooth-inpainting step (forward with the 9-channel
input, MSE loss, backward, AdamW step) at 512 px -- what dominates a fine-tune -- with
random latents and text embeddings, so nothing is downloaded. The VAE encode and the
frozen text encoder of the real loop are left out. Both variants run in the same process
one after the other; the full fine-tune is the baseline and the ratio is LoRA / full.
Peak memory is ``torch.cuda.max_memory_allocated`` on a GPU, ``ru_maxrss`` on CPU.

    .venv/bin/python -m bench.gpu_unet_throughput                      # GPU, 512 px, bf16
    .venv/bin/python -m bench.gpu_unet_throughput --gradient-checkpointing --batch-size 4
    .venv/bin/python -m bench.gpu_unet_throughput --device cpu --unet small --resolution 64 --steps 3
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import time
from typing import Any

from tryon.training.config import DEFAULT_LORA_TARGETS

#: stabilityai/stable-diffusion-2-inpainting's UNet (865.9 M parameters), 512 px native.
SD2_INPAINT_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 9,
    "out_channels": 4,
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "attention_head_dim": (5, 10, 20, 20),
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
    "norm_num_groups": 32,
}
#: The same architecture scaled down, to check the script on a CPU.
SMALL_UNET: dict[str, Any] = {
    **SD2_INPAINT_UNET,
    "block_out_channels": (32, 64, 64, 64),
    "attention_head_dim": (2, 4, 4, 4),
    "cross_attention_dim": 64,
    "layers_per_block": 1,
}
TEXT_TOKENS = 77
VAE_FACTOR = 8


def build_unet(config: dict[str, Any], device: Any, dtype: Any) -> Any:
    """A randomly initialised UNet2DConditionModel with ``config`` on ``device``."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    with torch.device(device):  # initialised where it runs: seconds on a GPU instead of a CPU minute
        return UNet2DConditionModel(**config).to(dtype=dtype)


def peak_reset(device: Any) -> None:
    """Start a new peak-memory window (CUDA; on CPU the peak is the process's so far)."""
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: Any) -> float:
    """Peak memory in MiB: ``max_memory_allocated`` on CUDA, ``ru_maxrss`` on CPU."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def sync(device: Any) -> None:
    """Wait for the device's queued work (CUDA), so timings cover it."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(mode: str, args: argparse.Namespace, unet_config: dict[str, Any], device: Any) -> dict[str, Any]:
    """Train ``mode`` (lora/full) for warm-up + timed steps; return steps/s and peak memory."""
    import torch
    import torch.nn.functional as F

    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.mixed_precision)
    peak_reset(device)
    lora = mode == "lora"
    # As the training loop does: frozen base weights in the low-precision dtype under LoRA,
    # float32 master weights for a full fine-tune.
    unet = build_unet(unet_config, device, amp_dtype if (lora and amp_dtype) else torch.float32)
    if lora:
        from diffusers.training_utils import cast_training_params
        from peft import LoraConfig

        unet.requires_grad_(False)
        unet.add_adapter(
            LoraConfig(
                r=args.rank,
                lora_alpha=args.rank,
                init_lora_weights="gaussian",
                target_modules=list(DEFAULT_LORA_TARGETS),
            )
        )
        cast_training_params(unet, dtype=torch.float32)
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer: Any = torch.optim.AdamW(params, lr=1e-4 if lora else 5e-6)
    if args.use_8bit_adam:
        try:
            import bitsandbytes as bnb

            optimizer = bnb.optim.AdamW8bit(params, lr=1e-4 if lora else 5e-6)
        except ImportError:
            print("notice: bitsandbytes is not installed; using torch AdamW")
    scaler = torch.amp.GradScaler(device.type, enabled=args.mixed_precision == "fp16")
    batch, size = args.batch_size, args.resolution // VAE_FACTOR
    generator = torch.Generator(device).manual_seed(0)

    def randn(*shape: int) -> Any:
        return torch.randn(shape, generator=generator, device=device)

    times = []
    for step in range(args.warmup + args.steps):
        noisy, mask, masked = (
            randn(batch, 4, size, size),
            randn(batch, 1, size, size) > 0,
            randn(batch, 4, size, size),
        )
        text = randn(batch, TEXT_TOKENS, unet_config["cross_attention_dim"])
        timesteps = torch.randint(0, 1000, (batch,), generator=generator, device=device)
        target = randn(batch, 4, size, size)
        sync(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            model_input = torch.cat([noisy, mask.to(noisy.dtype), masked], dim=1)
            prediction = unet(model_input, timesteps, text, return_dict=False)[0]
            loss = F.mse_loss(prediction.float(), target)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{mode}: loss {loss.item()} at step {step}")
    result = {
        "mode": mode,
        "params_m": sum(p.numel() for p in unet.parameters()) / 1e6,
        "trainable_m": sum(p.numel() for p in params) / 1e6,
        "steps_per_s": 1.0 / statistics.median(times),
        "peak_mib": peak_mib(device),
    }
    del unet, optimizer, params
    gc.collect()
    return result


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--unet", choices=("sd2", "small"), default="sd2")
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default=None)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--use-8bit-adam", action="store_true")
    parser.add_argument("--modes", default="full,lora", help="comma-separated; the first is the baseline")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.mixed_precision is None:
        args.mixed_precision = "bf16" if device.type == "cuda" else "no"
    if args.resolution % VAE_FACTOR:
        parser.error(f"--resolution must be a multiple of {VAE_FACTOR}")
    unet_config = SD2_INPAINT_UNET if args.unet == "sd2" else SMALL_UNET
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"{args.unet} inpainting UNet, {where}, {args.resolution} px, batch {args.batch_size}, "
        f"{args.mixed_precision}, gradient checkpointing {args.gradient_checkpointing}, "
        f"{args.steps} timed steps after {args.warmup} warm-up"
    )
    rows = [measure(mode.strip(), args, unet_config, device) for mode in args.modes.split(",")]
    memory = "peak GPU MiB" if device.type == "cuda" else "peak RSS MiB"
    print(f"{'variant':<8} {'params M':>9} {'trainable M':>12} {'steps/s':>8} {'img/s':>7} {memory:>13}")
    for row in rows:
        images_per_s = row["steps_per_s"] * args.batch_size
        print(
            f"{row['mode']:<8} {row['params_m']:>9.1f} {row['trainable_m']:>12.2f} "
            f"{row['steps_per_s']:>8.3f} {images_per_s:>7.2f} {row['peak_mib']:>13.0f}"
        )
    if device.type != "cuda":
        print("note: on CPU ru_maxrss is the process peak so far, so later variants include earlier ones")
    base = rows[0]
    for row in rows[1:]:
        print(
            f"ratio {row['mode']}/{base['mode']}: steps/s x{row['steps_per_s'] / base['steps_per_s']:.2f}, "
            f"peak memory x{row['peak_mib'] / base['peak_mib']:.2f}"
        )


if __name__ == "__main__":
    main()
