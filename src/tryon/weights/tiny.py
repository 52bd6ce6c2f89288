"""Deterministic tiny random checkpoints, built offline.

They have the exact layout and classes of the real checkpoints (CLIPSeg, SD inpainting,
SD x4 upscaler, diffusers-format LoRA adapters, SDXL inpainting and the SDXL refiner, depth and
pose ControlNets with their depth estimator, pose estimator and person detector), so
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
    "sd2-inpaint",
    "controlnet-depth",
    "controlnet-pose",
    "sdxl-controlnet-depth",
    "sdxl-controlnet-pose",
    "depth-estimator",
    "pose-estimator",
    "person-detector",
    "sd-inpaint-controls",
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


def build_sd_inpaint(out_dir: Path, *, text_encoder=None) -> None:
    """StableDiffusionInpaintPipeline: 9-channel UNet, working resolution 64 px.

    ``text_encoder`` (default: the tiny 32-wide CLIP text model) sets the UNet's cross-attention width.
    """
    from diffusers import PNDMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel

    tokenizer = build_clip_tokenizer()
    text_encoder = text_encoder or _text_encoder(len(tokenizer))
    _seed(3)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=32,
        in_channels=9,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=text_encoder.config.hidden_size,
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
        text_encoder=text_encoder,
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


def build_sd2_inpaint(out_dir: Path) -> None:
    """The tiny inpainting model with SD 2's signature: a 1024-wide text encoder (OpenCLIP ViT-H's
    width; SD 1.x's CLIP ViT-L is 768) and so 1024-wide cross-attention. What the endpoint's
    SD 2 rules (no ControlNets: ``tryon.handlers.controls.family``) are tested on."""
    from transformers import CLIPTextConfig, CLIPTextModel

    vocab_size = len(build_clip_tokenizer())
    _seed(12)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1,
            hidden_size=1024,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=1,
            hidden_act="gelu",
            vocab_size=vocab_size,
            max_position_embeddings=77,
            projection_dim=32,
        )
    )
    build_sd_inpaint(out_dir, text_encoder=text_encoder)


def _nonzero_controlnet_outputs(controlnet, seed: int) -> None:
    """Random weights in the layers ControlNet initialises to zero (so a tiny one changes the image)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    layers = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]
    layers.append(controlnet.controlnet_cond_embedding.conv_out)
    with torch.no_grad():
        for layer in layers:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 0.1)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator) * 0.1)


def build_controlnet(base_dir: Path, out_dir: Path, *, seed: int) -> None:
    """A ControlNetModel for the inpainting base in ``base_dir``, as a real one is made for its base.

    The UNet's blocks, widths and added conditioning (SDXL's pooled text and size ids), 4 latent
    input channels (ControlNets see the latents, not the inpainting UNet's mask channels), and a
    conditioning embedding that downsamples the control image by the VAE's factor. The layers a
    ControlNet starts at zero are random too, so the tiny one changes the image.
    """
    import inspect

    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.load_config(base_dir / "unet")
    vae = AutoencoderKL.load_config(base_dir / "vae")
    accepted = set(inspect.signature(ControlNetModel.__init__).parameters) - {"self", "in_channels"}
    config = {k: v for k, v in unet.items() if k in accepted and not k.startswith("_")}
    downsamplings = len(vae["block_out_channels"]) - 1  # the VAE's factor is 2 ** downsamplings
    embedding = tuple(8 * 2 ** min(i, 1) for i in range(downsamplings + 1))  # (8, 16, 16, ...)
    _seed(seed)
    controlnet = ControlNetModel(in_channels=4, conditioning_embedding_out_channels=embedding, **config)
    _nonzero_controlnet_outputs(controlnet, seed + 1)
    controlnet.save_pretrained(out_dir, safe_serialization=True)


_IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}


def build_depth_estimator(out_dir: Path) -> None:
    """Depth Anything (``DepthAnythingForDepthEstimation`` on a tiny DINOv2) with Depth Anything V2's
    image processor settings at 56 px instead of 518 (multiples of the patch size 14)."""
    import torch
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
    )

    backbone = Dinov2Config(
        image_size=56,
        patch_size=14,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        out_features=["stage1", "stage2"],
        reshape_hidden_states=False,
    )
    _seed(50)
    model = DepthAnythingForDepthEstimation(
        DepthAnythingConfig(
            backbone_config=backbone,
            reassemble_hidden_size=32,
            patch_size=14,
            reassemble_factors=[4, 2],
            neck_hidden_sizes=[16, 32],
            fusion_hidden_size=16,
            head_hidden_size=16,
            depth_estimation_type="relative",
        )
    ).eval()
    with torch.no_grad():  # depths of order 1 (the random head's are ~1e-8): a map with contrast
        model.head.conv3.weight.normal_(0.0, 1.0)
        model.head.conv3.bias.fill_(0.5)
    model.save_pretrained(out_dir, safe_serialization=True)
    DPTImageProcessor(
        do_resize=True,
        size={"height": 56, "width": 56},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        resample=3,
        do_pad=False,
        **_IMAGENET,
    ).save_pretrained(out_dir)


def build_pose_estimator(out_dir: Path) -> None:
    """ViTPose (``VitPoseForPoseEstimation``, 17 COCO keypoints, simple decoder) at 64x48 px input
    (the real one: 256x192), with ViTPose's image processor settings."""
    import torch
    from transformers import (
        VitPoseBackboneConfig,
        VitPoseConfig,
        VitPoseForPoseEstimation,
        VitPoseImageProcessor,
    )

    backbone = VitPoseBackboneConfig(
        image_size=[64, 48],
        patch_size=[16, 16],
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        out_indices=[2],
    )
    _seed(51)
    model = VitPoseForPoseEstimation(
        VitPoseConfig(backbone_config=backbone, num_labels=17, scale_factor=4, use_simple_decoder=True)
    ).eval()
    with torch.no_grad():  # heatmap peaks above the drawing's 0.3 score threshold: a skeleton to draw
        model.head.conv.weight.mul_(8.0)
    model.save_pretrained(out_dir, safe_serialization=True)
    VitPoseImageProcessor(
        do_affine_transform=True, size={"height": 64, "width": 48}, normalize_factor=200.0, **_IMAGENET
    ).save_pretrained(out_dir)


def build_person_detector(out_dir: Path) -> None:
    """RT-DETR (``RTDetrForObjectDetection``, a tiny ResNet backbone, 3 queries) with a ``person``
    label it always finds, as PekingU/rtdetr_r50vd_coco_o365 is used beside ViTPose."""
    import torch
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrImageProcessor, RTDetrResNetConfig

    backbone = RTDetrResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 16, 16, 32],
        depths=[1, 1, 1, 1],
        layer_type="basic",
        out_features=["stage2", "stage3", "stage4"],
    )
    _seed(52)
    model = RTDetrForObjectDetection(
        RTDetrConfig(
            backbone_config=backbone,
            encoder_hidden_dim=16,
            encoder_in_channels=[16, 16, 32],
            feat_strides=[8, 16, 32],
            encoder_layers=1,
            encoder_ffn_dim=32,
            encoder_attention_heads=2,
            encode_proj_layers=[2],
            hidden_expansion=0.5,
            d_model=16,
            decoder_in_channels=[16, 16, 16],
            decoder_ffn_dim=32,
            num_queries=3,
            decoder_layers=1,
            decoder_attention_heads=2,
            decoder_n_points=2,
            num_feature_levels=3,
            num_denoising=0,
            id2label={0: "person", 1: "handbag"},
            label2id={"person": 0, "handbag": 1},
        )
    ).eval()
    with torch.no_grad():  # every query scores "person" well above the detector's 0.5 threshold
        model.model.decoder.class_embed[-1].bias[0] = 4.0
    model.save_pretrained(out_dir, safe_serialization=True)
    RTDetrImageProcessor(size={"height": 64, "width": 64}).save_pretrained(out_dir)


def build_sd_inpaint_with_controls(base_dir: Path, parts: dict[str, Path], out_dir: Path) -> None:
    """A copy of ``base_dir`` (the tiny model with its IP-Adapter) carrying every body control folder.

    ``parts``: folder name in the model (``controlnet_depth``, ``depth_estimator``, ...) -> its
    tiny checkpoint. What ``tryon package sd_inpaint --controlnet ... --depth ... --pose ...``
    ships; the CLI's tiny default, so ``tryon run --keep-body pose`` works without real weights.
    """
    shutil.copytree(base_dir, out_dir, dirs_exist_ok=True)
    for folder, source in parts.items():
        shutil.copytree(source, out_dir / folder)


@contextmanager
def _building(target: Path) -> Iterator[Path]:
    """Build into a temporary sibling and rename, so a crash never leaves a half model."""
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def control_parts(paths: dict[str, Path], *, sdxl: bool = False) -> dict[str, Path]:
    """Model-folder name -> tiny checkpoint of every body control folder, for the SD (or SDXL) base."""
    prefix = "sdxl-" if sdxl else ""
    return {
        "controlnet_depth": paths[f"{prefix}controlnet-depth"],
        "controlnet_pose": paths[f"{prefix}controlnet-pose"],
        "depth_estimator": paths["depth-estimator"],
        "pose_estimator": paths["pose-estimator"],
        "person_detector": paths["person-detector"],
    }


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
        "sd2-inpaint": build_sd2_inpaint,
        "controlnet-depth": lambda d: build_controlnet(paths["sd-inpaint"], d, seed=40),
        "controlnet-pose": lambda d: build_controlnet(paths["sd-inpaint"], d, seed=42),
        "sdxl-controlnet-depth": lambda d: build_controlnet(paths["sdxl-inpaint"], d, seed=44),
        "sdxl-controlnet-pose": lambda d: build_controlnet(paths["sdxl-inpaint"], d, seed=46),
        "depth-estimator": build_depth_estimator,
        "pose-estimator": build_pose_estimator,
        "person-detector": build_person_detector,
        "sd-inpaint-controls": lambda d: build_sd_inpaint_with_controls(
            paths["sd-inpaint-ip"], control_parts(paths), d
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
