"""Random-initialised diffusers pipelines with the real models' shapes, built in code (nothing downloaded).

Each :class:`PipelineSpec` holds the published configs of one checkpoint (UNet, VAE, text
encoder(s), scheduler) as plain dicts, and :func:`build_pipeline` builds the pipeline from
them on a device, in a dtype, with random weights: the compute and memory are those of the
real model, the images are noise. ``reduced=True`` shrinks every width and depth (same
blocks, same pipeline class) so the same code runs in seconds on a CPU, in the tests.

Configs: stabilityai/stable-diffusion-2-inpainting, runwayml/stable-diffusion-inpainting
(SD 1.5), diffusers/stable-diffusion-xl-1.0-inpainting-0.1 and
stabilityai/stable-diffusion-x4-upscaler (their ``*/config.json`` files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.gpu_unet_throughput import SD2_INPAINT_UNET

#: OpenCLIP ViT-H/14 text tower (SD 2.x, the x4 upscaler).
OPENCLIP_H_TEXT: dict[str, Any] = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "hidden_act": "gelu",
    "projection_dim": 512,
}
#: OpenAI CLIP ViT-L/14 text tower (SD 1.x, SDXL's first encoder).
CLIP_L_TEXT: dict[str, Any] = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}
#: OpenCLIP ViT-bigG/14 text tower (SDXL's second encoder, with projection).
OPENCLIP_BIGG_TEXT: dict[str, Any] = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}
SD_VAE: dict[str, Any] = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "latent_channels": 4,
    "layers_per_block": 2,
    "scaling_factor": 0.18215,
}
SD15_INPAINT_UNET: dict[str, Any] = {
    **SD2_INPAINT_UNET,
    "attention_head_dim": 8,
    "cross_attention_dim": 768,
    "use_linear_projection": False,
}
SDXL_INPAINT_UNET: dict[str, Any] = {
    "sample_size": 128,
    "in_channels": 9,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
X4_UPSCALER_UNET: dict[str, Any] = {
    "sample_size": 128,
    "in_channels": 7,
    "out_channels": 4,
    "down_block_types": (
        "DownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
    ),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (256, 512, 512, 1024),
    "layers_per_block": 2,
    "attention_head_dim": 8,
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
    "num_class_embeds": 1000,
    "only_cross_attention": (True, True, True, False),
}
X4_UPSCALER_VAE: dict[str, Any] = {
    **SD_VAE,
    "block_out_channels": (128, 256, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3,
    "scaling_factor": 0.08333,
}
_SD_SCHEDULER = {
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "steps_offset": 1,
}


@dataclass(frozen=True)
class PipelineSpec:
    """One checkpoint's shape: pipeline class, component configs, native working size."""

    name: str
    pipeline: str
    unet: dict[str, Any]
    vae: dict[str, Any]
    text_encoders: tuple[dict[str, Any], ...]
    working_size: int
    extra: dict[str, Any] = field(default_factory=dict)


SPECS: dict[str, PipelineSpec] = {
    "sd2-inpaint": PipelineSpec(
        "sd2-inpaint", "StableDiffusionInpaintPipeline", SD2_INPAINT_UNET, SD_VAE, (OPENCLIP_H_TEXT,), 512
    ),
    "sd15-inpaint": PipelineSpec(
        "sd15-inpaint", "StableDiffusionInpaintPipeline", SD15_INPAINT_UNET, SD_VAE, (CLIP_L_TEXT,), 512
    ),
    "sdxl-inpaint": PipelineSpec(
        "sdxl-inpaint",
        "StableDiffusionXLInpaintPipeline",
        SDXL_INPAINT_UNET,
        {**SD_VAE, "scaling_factor": 0.13025},
        (CLIP_L_TEXT, OPENCLIP_BIGG_TEXT),
        1024,
        {"requires_aesthetics_score": False},
    ),
    "x4-upscaler": PipelineSpec(
        "x4-upscaler",
        "StableDiffusionUpscalePipeline",
        X4_UPSCALER_UNET,
        X4_UPSCALER_VAE,
        (OPENCLIP_H_TEXT,),
        512,
        {"max_noise_level": 350},
    ),
}

#: Widths used by ``reduced=True``: every block keeps its type, channels shrink to these.
_REDUCED_CHANNELS = (32, 32, 64, 64)


def _reduce_unet(config: dict[str, Any]) -> dict[str, Any]:
    blocks = len(config["block_out_channels"])
    reduced = {
        **config,
        "block_out_channels": _REDUCED_CHANNELS[:blocks],
        "layers_per_block": 1,
        "attention_head_dim": 8,
        "cross_attention_dim": 32,
        "norm_num_groups": 8,
        "sample_size": 8,
    }
    if "transformer_layers_per_block" in config:
        reduced["transformer_layers_per_block"] = 1
    if config.get("addition_embed_type") == "text_time":  # pooled text (32) + 6 time ids x 8
        reduced.update(addition_time_embed_dim=8, projection_class_embeddings_input_dim=32 + 6 * 8)
    return reduced


def _reduce_vae(config: dict[str, Any]) -> dict[str, Any]:
    blocks = len(config["block_out_channels"])
    return {**config, "block_out_channels": (8,) * blocks, "layers_per_block": 1, "norm_num_groups": 8}


def _reduce_text(config: dict[str, Any], hidden: int) -> dict[str, Any]:
    return {
        **config,
        "hidden_size": hidden,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "projection_dim": 32,
    }


def _text_encoder(config: dict[str, Any], vocab: int, *, with_projection: bool) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return cls(
        CLIPTextConfig(
            vocab_size=vocab,
            max_position_embeddings=77,
            bos_token_id=vocab - 2,
            eos_token_id=vocab - 1,
            pad_token_id=vocab - 1,
            **config,
        )
    )


def build_pipeline(name: str, *, device: Any = "cpu", dtype: Any = None, reduced: bool = False) -> Any:
    """The pipeline of ``SPECS[name]`` with random weights, created directly on ``device`` in ``dtype``."""
    import diffusers
    import torch

    from tryon.weights.tiny import build_clip_tokenizer

    spec = SPECS[name]
    dtype = dtype or torch.float32
    tokenizer = build_clip_tokenizer()
    unet_config = _reduce_unet(spec.unet) if reduced else spec.unet
    vae_config = _reduce_vae(spec.vae) if reduced else spec.vae
    cross = unet_config["cross_attention_dim"]
    torch.manual_seed(0)
    with torch.device(device):  # parameters are created where they run: fast random init on a GPU
        unet = diffusers.UNet2DConditionModel(**unet_config)
        vae = diffusers.AutoencoderKL(**vae_config)
        if len(spec.text_encoders) == 2:  # SDXL: the UNet sees both encoders' hidden states concatenated
            first, second = spec.text_encoders
            if reduced:
                first, second = _reduce_text(first, cross // 2), _reduce_text(second, cross // 2)
            encoders = {
                "text_encoder": _text_encoder(first, len(tokenizer), with_projection=False),
                "text_encoder_2": _text_encoder(second, len(tokenizer), with_projection=True),
                "tokenizer_2": tokenizer,
            }
        else:
            (config,) = spec.text_encoders
            config = _reduce_text(config, cross) if reduced else config
            encoders = {"text_encoder": _text_encoder(config, len(tokenizer), with_projection=False)}
    components: dict[str, Any] = {"vae": vae, "unet": unet, "tokenizer": tokenizer, **encoders}
    if spec.pipeline == "StableDiffusionUpscalePipeline":
        components["low_res_scheduler"] = diffusers.DDPMScheduler(beta_schedule="linear")
        components["scheduler"] = diffusers.DDIMScheduler(
            beta_schedule="scaled_linear", beta_start=0.0001, beta_end=0.02, prediction_type="v_prediction"
        )
    elif spec.pipeline == "StableDiffusionXLInpaintPipeline":
        components["scheduler"] = diffusers.EulerDiscreteScheduler(**_SD_SCHEDULER)
    else:
        components["scheduler"] = diffusers.DDIMScheduler(**_SD_SCHEDULER)
        components.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    for module in (unet, vae, *(m for k, m in encoders.items() if k.startswith("text_encoder"))):
        module.to(dtype=dtype)
    pipe = getattr(diffusers, spec.pipeline)(**components, **spec.extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def working_size(name: str, reduced: bool) -> int:
    """The native working size of ``name`` in px (64 px for every reduced pipeline)."""
    return 64 if reduced else SPECS[name].working_size


def unet_params(pipe: Any) -> int:
    """Parameters of the pipeline's UNet."""
    return sum(p.numel() for p in pipe.unet.parameters())


#: lllyasviel/control_v11f1p_sd15_depth and control_v11p_sd15_openpose: the SD 1.5 UNet's encoder
#: and middle block on 4 latent channels, plus the control image's embedding (8x downsampling).
CONTROLNET_EMBEDDING = (16, 32, 96, 256)
#: depth-anything/Depth-Anything-V2-Small-hf: DINOv2 ViT-S/14 at 518 px (24.8 M parameters).
DEPTH_ANYTHING_V2_SMALL: dict[str, Any] = {
    "backbone": {
        "image_size": 518,
        "patch_size": 14,
        "hidden_size": 384,
        "num_hidden_layers": 12,
        "num_attention_heads": 6,
        "out_indices": [3, 6, 9, 12],
        "reshape_hidden_states": False,
    },
    "reassemble_hidden_size": 384,
    "neck_hidden_sizes": [48, 96, 192, 384],
    "fusion_hidden_size": 64,
    "head_hidden_size": 32,
}
#: usyd-community/vitpose-base-simple: ViT-B/16 at 256x192 with the simple decoder, 17 COCO keypoints.
VITPOSE_BASE: dict[str, Any] = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12}


def build_body_controls(pipe: Any, *, device: Any = "cpu", dtype: Any = None, reduced: bool = False) -> Any:
    """``tryon.handlers.controls.BodyControls`` for ``pipe`` (SD 1.5 shapes), random weights.

    Full size: SD 1.5 depth and pose ControlNets, Depth Anything V2 small (with its 518 px image
    processor), ViTPose base (256x192) and RT-DETR R50vd (640 px, 80 COCO labels, ``person``
    first) as the person detector, nothing downloaded. ``reduced``: ControlNets of the reduced
    pipeline's UNet and the tiny estimators of ``tryon.weights.tiny``.
    """
    import inspect

    import diffusers
    import torch
    import transformers

    from tryon.handlers import body_estimators, controls
    from tryon.weights.tiny import ensure_tiny_models

    dtype = dtype or torch.float32
    unet = dict(pipe.unet.config)
    downsamplings = len(pipe.vae.config.block_out_channels) - 1
    embedding = CONTROLNET_EMBEDDING if not reduced else (8,) * downsamplings + (16,)
    keys = set(inspect.signature(diffusers.ControlNetModel.__init__).parameters) - {"self", "in_channels"}
    config = {k: v for k, v in unet.items() if k in keys and not k.startswith("_")}
    torch.manual_seed(3)
    with torch.device(device):
        nets = {
            name: diffusers.ControlNetModel(
                in_channels=4, conditioning_embedding_out_channels=embedding, **config
            )
            for name in ("depth", "pose")
        }
    nets = {name: net.to(dtype=dtype).eval() for name, net in nets.items()}
    if reduced:
        tiny = ensure_tiny_models()
        estimators = {
            "depth": body_estimators.load_depth(tiny["depth-estimator"], device, dtype),
            "pose": body_estimators.load_pose(tiny["pose-estimator"], tiny["person-detector"], device, dtype),
        }
        return controls.assemble(pipe, "sd15", nets, estimators)
    imagenet = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    spec = DEPTH_ANYTHING_V2_SMALL
    with torch.device(device):
        depth = transformers.DepthAnythingForDepthEstimation(
            transformers.DepthAnythingConfig(
                backbone_config=transformers.Dinov2Config(**spec["backbone"]),
                **{k: v for k, v in spec.items() if k != "backbone"},
            )
        )
        pose = transformers.VitPoseForPoseEstimation(
            transformers.VitPoseConfig(
                backbone_config=transformers.VitPoseBackboneConfig(**VITPOSE_BASE), num_labels=17
            )
        )
        labels = {0: "person", **{i: f"class-{i}" for i in range(1, 80)}}
        detector = transformers.RTDetrForObjectDetection(
            transformers.RTDetrConfig(id2label=labels, label2id={v: k for k, v in labels.items()})
        )
    depth, pose, detector = (m.to(dtype=dtype).eval() for m in (depth, pose, detector))
    depth_processor = transformers.DPTImageProcessor(
        size={"height": 518, "width": 518},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        resample=3,
        **imagenet,
    )
    estimators = {
        "depth": body_estimators.DepthEstimator(depth, depth_processor),
        "pose": body_estimators.PoseEstimator(
            pose,
            transformers.VitPoseImageProcessor(),
            body_estimators.PersonDetector(detector, transformers.RTDetrImageProcessor()),
        ),
    }
    return controls.assemble(pipe, "sd15", nets, estimators)


def params_m(module: Any) -> float:
    """Millions of parameters of a torch module."""
    return sum(p.numel() for p in module.parameters()) / 1e6
