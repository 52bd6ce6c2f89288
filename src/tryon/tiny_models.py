"""Deterministic tiny random checkpoints, built offline.

They have the exact layout and classes of the real checkpoints (CLIPSeg, SD inpainting,
SD x4 upscaler, diffusers-format LoRA adapters), so every loading and inference path runs
for real; their weights are random, so images are noise. They are saved in a layout both
the serving image's transformers 4.51 and transformers 5 load (:mod:`tryon.checkpoint_compat`).
``make tiny-models`` (or ``tryon tiny-models``) writes them to ``.cache/tiny-models/``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tryon.checkpoint_compat import make_pipeline_compatible, save_processor

DEFAULT_DIR = Path(".cache/tiny-models")
#: Bumped whenever the builders change, so stale caches are rebuilt.
TINY_MODELS_VERSION = "4"
NAMES = ("clipseg", "sd-inpaint", "sd-x4-upscaler", "lora-a", "lora-b")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode map (as in CLIPTokenizer)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def build_clip_tokenizer():
    """A char-level CLIP tokenizer (byte alphabet, ``</w>`` variants, no merges)."""
    from transformers import CLIPTokenizer

    chars = list(_bytes_to_unicode().values())
    vocab_list = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77, pad_token="<|endoftext|>")
    return tokenizer


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def _text_encoder(vocab_size: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    _seed(1)
    return CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1,
            hidden_size=32,
            intermediate_size=37,
            layer_norm_eps=1e-5,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=vocab_size,
            max_position_embeddings=77,
            projection_dim=32,
        )
    )


def build_clipseg(out_dir: Path) -> None:
    """CLIPSegForImageSegmentation + CLIPSegProcessor, 64 px input, about 100k params."""
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    tokenizer = build_clip_tokenizer()
    vocab_size = len(tokenizer)
    _seed(0)
    config = CLIPSegConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
            "bos_token_id": vocab_size - 2,
            "eos_token_id": vocab_size - 1,
            "pad_token_id": vocab_size - 1,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 64,
            "patch_size": 16,
        },
        projection_dim=32,
        reduce_dim=16,
        extract_layers=[0, 1],
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
        conditional_layer=0,
    )
    save_clipseg(CLIPSegForImageSegmentation(config).eval(), tokenizer, out_dir, image_size=64)


def save_clipseg(model, tokenizer, out_dir: Path, *, image_size: int) -> None:
    """Save a CLIPSeg model with the preprocessing of CIDAS/clipseg-rd64-refined at ``image_size`` px."""
    from transformers import ViTImageProcessor

    image_processor = ViTImageProcessor(
        do_resize=True,
        size={"height": image_size, "width": image_size},
        resample=2,
        do_normalize=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    model.save_pretrained(out_dir)
    save_processor(image_processor, tokenizer, out_dir)


def _tiny_vae(blocks: tuple[int, ...], scaling_factor: float = 0.18215, mid_attention: bool = True):
    from diffusers import AutoencoderKL

    _seed(2)
    return AutoencoderKL(
        block_out_channels=list(blocks),
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * len(blocks),
        up_block_types=["UpDecoderBlock2D"] * len(blocks),
        latent_channels=4,
        norm_num_groups=8,
        scaling_factor=scaling_factor,
        mid_block_add_attention=mid_attention,
    )


def build_sd_inpaint(out_dir: Path) -> None:
    """StableDiffusionInpaintPipeline: 9-channel UNet, working resolution 64 px."""
    from diffusers import PNDMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel

    tokenizer = build_clip_tokenizer()
    _seed(3)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=32,
        in_channels=9,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        steps_offset=1,
        set_alpha_to_one=False,
    )
    pipe = StableDiffusionInpaintPipeline(
        vae=_tiny_vae((16, 32)),
        text_encoder=_text_encoder(len(tokenizer)),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out_dir, safe_serialization=True)
    make_pipeline_compatible(out_dir)


def build_sd_upscaler(out_dir: Path) -> None:
    """StableDiffusionUpscalePipeline (x4): 7-channel UNet with noise-level class embeddings.

    Self-attention sits only at 1/8 resolution and the VAE has no mid-block attention, so a
    512 px photo upscales to 2048 px in seconds on a CPU (attention at full latent
    resolution would need a 262k-token attention matrix).
    """
    from diffusers import (
        DDIMScheduler,
        DDPMScheduler,
        StableDiffusionUpscalePipeline,
        UNet2DConditionModel,
    )

    tokenizer = build_clip_tokenizer()
    _seed(4)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16, 16, 32),
        layers_per_block=1,
        sample_size=32,
        in_channels=7,
        out_channels=4,
        down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
        num_class_embeds=1000,
    )
    pipe = StableDiffusionUpscalePipeline(
        vae=_tiny_vae((8, 8, 16), scaling_factor=0.08333, mid_attention=False),
        text_encoder=_text_encoder(len(tokenizer)),
        tokenizer=tokenizer,
        unet=unet,
        low_res_scheduler=DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear"),
        scheduler=DDIMScheduler(
            num_train_timesteps=1000,
            beta_schedule="scaled_linear",
            beta_start=0.0001,
            beta_end=0.02,
            prediction_type="v_prediction",
        ),
        max_noise_level=350,
    )
    pipe.save_pretrained(out_dir, safe_serialization=True)
    make_pipeline_compatible(out_dir)


def build_lora(base_dir: Path, out_dir: Path, *, seed: int, rank: int = 4) -> None:
    """A diffusers-format LoRA for the inpainting UNet with non-zero random weights."""
    from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(base_dir / "unet")
    _seed(seed)
    unet.add_adapter(
        LoraConfig(
            r=rank,
            lora_alpha=rank,
            target_modules=["to_q", "to_k", "to_v", "to_out.0"],
            init_lora_weights=False,
        )
    )
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionInpaintPipeline.save_lora_weights(
        out_dir, unet_lora_layers=layers, safe_serialization=True
    )


@contextmanager
def _building(target: Path) -> Iterator[Path]:
    """Build into a temporary sibling and rename, so a crash never leaves a half model."""
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def ensure_tiny_models(root: Path = DEFAULT_DIR, *, force: bool = False) -> dict[str, Path]:
    """Build whatever is missing (or everything, with ``force``); return name -> folder."""
    root = Path(root)
    stamp = root / "VERSION"
    if force or not stamp.exists() or stamp.read_text().strip() != TINY_MODELS_VERSION:
        shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    paths = {name: root / name for name in NAMES}
    builders = {
        "clipseg": build_clipseg,
        "sd-inpaint": build_sd_inpaint,
        "sd-x4-upscaler": build_sd_upscaler,
        "lora-a": lambda d: build_lora(paths["sd-inpaint"], d, seed=11),
        "lora-b": lambda d: build_lora(paths["sd-inpaint"], d, seed=22),
    }
    for name in NAMES:
        if not paths[name].exists():
            with _building(paths[name]) as tmp:
                builders[name](tmp)
    stamp.write_text(TINY_MODELS_VERSION + "\n")
    return paths


if __name__ == "__main__":
    import sys

    for name, path in ensure_tiny_models(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR).items():
        print(f"{name}: {path}")
