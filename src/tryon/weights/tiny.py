"""Deterministic tiny random checkpoints, built offline.

They have the exact layout and classes of the real checkpoints (CLIPSeg, SD inpainting,
SD x4 upscaler, diffusers-format LoRA adapters, SDXL inpainting and the SDXL refiner), so
every loading and inference path runs for real; their weights are random, so images are
noise. They are saved in a layout both the serving image's transformers 4.51 and
transformers 5 load (:mod:`tryon.weights.portable`).
``make tiny-models`` (or ``tryon tiny-models``) writes them to ``.cache/tiny-models/``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tryon.weights.portable import make_pipeline_compatible, save_processor

DEFAULT_DIR = Path(".cache/tiny-models")
#: Bumped whenever the builders change, so stale caches are rebuilt.
TINY_MODELS_VERSION = "4"
NAMES = (
    "clipseg",
    "sd-inpaint",
    "sd-x4-upscaler",
    "lora-a",
    "lora-b",
    "ip-adapter",
    "sd-inpaint-ip",
    "sdxl-inpaint",
    "sdxl-refiner",
)


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


def ip_adapter_weights(unet, image_embed_dim: int) -> dict:
    """Random IP-Adapter weights for ``unet`` in h94/IP-Adapter's flat layout (torch's current seed).

    ``image_proj.*``: an ``ImageProjection`` from ``image_embed_dim`` to 4 tokens of the UNet's
    cross-attention width; ``ip_adapter.<n>.to_{k,v}_ip.weight``: one pair per cross-attention
    layer, numbered 1, 3, 5, ... as diffusers' loader (and its tests) number them.
    """
    from diffusers.models.attention_processor import IPAdapterAttnProcessor
    from diffusers.models.embeddings import ImageProjection

    cross_dim = unet.config.cross_attention_dim
    projection = ImageProjection(
        image_embed_dim=image_embed_dim, cross_attention_dim=cross_dim, num_image_text_embeds=4
    )
    # the original layout calls ImageProjection's image_embeds "proj"
    tensors = {
        "image_proj." + k.replace("image_embeds.", "proj."): v for k, v in projection.state_dict().items()
    }
    key_id = 1
    for name in unet.attn_processors:
        if not name.endswith("attn2.processor"):  # self-attention takes no image tokens
            continue
        block = unet.get_submodule(name.rsplit(".", 1)[0])
        processor = IPAdapterAttnProcessor(hidden_size=block.to_q.out_features, cross_attention_dim=cross_dim)
        state = processor.state_dict()
        tensors[f"ip_adapter.{key_id}.to_k_ip.weight"] = state["to_k_ip.0.weight"]
        tensors[f"ip_adapter.{key_id}.to_v_ip.weight"] = state["to_v_ip.0.weight"]
        key_id += 2
    return {k: v.contiguous() for k, v in tensors.items()}


def build_ip_adapter(base_dir: Path, out_dir: Path, *, seed: int = 33) -> None:
    """An IP-Adapter for the inpainting UNet in ``base_dir``, as h94/IP-Adapter lays one out.

    ``ip-adapter.safetensors`` (:func:`ip_adapter_weights`) and ``image_encoder/`` (a tiny
    ``CLIPVisionModelWithProjection``, 32 px). Weights are random and non-zero.
    """
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    unet = UNet2DConditionModel.from_pretrained(base_dir / "unet")
    embed_dim = 32
    _seed(seed)
    CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
            projection_dim=embed_dim,
        )
    ).save_pretrained(out_dir / "image_encoder", safe_serialization=True)
    save_file(ip_adapter_weights(unet, embed_dim), str(out_dir / "ip-adapter.safetensors"))


def _tiny_sdxl_text_config(vocab_size: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=vocab_size,
        projection_dim=32,
    )


def _tiny_sdxl_unet(*, in_channels: int, cross_attention_dim: int, time_ids: int, seed: int):
    """An SDXL-style UNet: ``text_time`` added conditioning (``time_ids`` size/crop ids + pooled text)."""
    from diffusers import UNet2DConditionModel

    _seed(seed)
    return UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=128,  # x VAE factor 8 = 1024 px, as SDXL
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=time_ids * 8 + 32,  # + pooled text (32)
        cross_attention_dim=cross_attention_dim,
        norm_num_groups=8,
    )


def _tiny_sdxl_vae():
    from diffusers import AutoencoderKL

    _seed(6)
    return AutoencoderKL(
        block_out_channels=[4, 4, 4, 4],
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        norm_num_groups=2,
        sample_size=1024,
    )


def _sdxl_scheduler():
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )


def build_sdxl_inpaint(out_dir: Path) -> None:
    """StableDiffusionXLInpaintPipeline: two text encoders, pooled text + size/crop ids, 1024 px."""
    from diffusers import StableDiffusionXLInpaintPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = build_clip_tokenizer()
    text_config = _tiny_sdxl_text_config(len(tokenizer))
    _seed(7)
    text_encoder = CLIPTextModel(text_config)
    text_encoder_2 = CLIPTextModelWithProjection(text_config)
    pipe = StableDiffusionXLInpaintPipeline(
        vae=_tiny_sdxl_vae(),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        # both encoders' hidden states side by side (64); 6 ids: original size, crop, target size
        unet=_tiny_sdxl_unet(in_channels=9, cross_attention_dim=64, time_ids=6, seed=8),
        scheduler=_sdxl_scheduler(),
        requires_aesthetics_score=False,
    )
    pipe.save_pretrained(out_dir, safe_serialization=True)
    make_pipeline_compatible(out_dir)


def build_sdxl_refiner(out_dir: Path) -> None:
    """An SDXL refiner (StableDiffusionXLImg2ImgPipeline) for :func:`build_sdxl_inpaint`'s base.

    Like SDXL 1.0's refiner: a 4-channel UNet conditioned on the second text encoder only, with
    an aesthetic score among its 5 ids. Only ``unet/``, ``scheduler/`` and ``model_index.json``
    are written: the endpoint shares the base's ``text_encoder_2``, ``tokenizer_2`` and ``vae``.
    """
    from diffusers import StableDiffusionXLImg2ImgPipeline
    from transformers import CLIPTextModelWithProjection

    tokenizer = build_clip_tokenizer()
    pipe = StableDiffusionXLImg2ImgPipeline(
        vae=_tiny_sdxl_vae(),
        text_encoder=None,
        text_encoder_2=CLIPTextModelWithProjection(_tiny_sdxl_text_config(len(tokenizer))),
        tokenizer=None,
        tokenizer_2=tokenizer,
        unet=_tiny_sdxl_unet(in_channels=4, cross_attention_dim=32, time_ids=5, seed=9),
        scheduler=_sdxl_scheduler(),
        requires_aesthetics_score=True,
        force_zeros_for_empty_prompt=False,
    )
    pipe.save_pretrained(out_dir, safe_serialization=True)
    for shared in ("text_encoder_2", "tokenizer_2", "vae"):
        shutil.rmtree(out_dir / shared)


def build_sd_inpaint_with_ip_adapter(base_dir: Path, ip_adapter_dir: Path, out_dir: Path) -> None:
    """A copy of the tiny inpainting model that carries the tiny IP-Adapter in ``ip_adapter/``.

    What ``tryon package sd_inpaint --ip-adapter`` ships; the CLI's tiny default, so
    ``tryon run --garment`` works without real checkpoints.
    """
    shutil.copytree(base_dir, out_dir, dirs_exist_ok=True)
    shutil.copytree(ip_adapter_dir, out_dir / "ip_adapter")


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
        "sdxl-inpaint": build_sdxl_inpaint,
        "sdxl-refiner": build_sdxl_refiner,
        "ip-adapter": lambda d: build_ip_adapter(paths["sd-inpaint"], d),
        "sd-inpaint-ip": lambda d: build_sd_inpaint_with_ip_adapter(
            paths["sd-inpaint"], paths["ip-adapter"], d
        ),
    }
    missing = [name for name in NAMES if not paths[name].exists()]
    if missing:
        # transformers draws a "Writing model shards" bar per save: noise for kilobyte models
        import transformers.utils.logging as transformers_logging

        bars = transformers_logging.is_progress_bar_enabled()
        transformers_logging.disable_progress_bar()
        try:
            for name in missing:
                with _building(paths[name]) as tmp:
                    builders[name](tmp)
        finally:
            if bars:
                transformers_logging.enable_progress_bar()
    stamp.write_text(TINY_MODELS_VERSION + "\n")
    return paths


if __name__ == "__main__":
    import sys

    for name, path in ensure_tiny_models(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR).items():
        print(f"{name}: {path}")
