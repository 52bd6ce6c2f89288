"""Random metric networks built in code, in the ``--metric-models DIR`` layout, for tests and benchmarks.

``tiny``: a few hundred thousand parameters each, seconds to build. ``full``: the real
architectures at full size with random weights (CLIP ViT-L/14, DINOv2-base, Inception-v3), so a
benchmark measures real compute. Both load through exactly the code that loads real weights
(:class:`tryon.evaluation.metric_models.MetricModels`).
"""

from __future__ import annotations

from pathlib import Path

from tryon.evaluation.metric_models import SUBFOLDERS

#: CLIP's and DINOv2's normalisation constants (what their processors ship with).
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _clip(out: Path, *, full: bool) -> None:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from tryon.weights.tiny import build_clip_tokenizer

    tokenizer = build_clip_tokenizer()
    vocab = 49408 if full else len(tokenizer)
    special = {
        "bos_token_id": len(tokenizer) - 2,
        "eos_token_id": len(tokenizer) - 1,
        "pad_token_id": len(tokenizer) - 1,
    }
    if full:  # openai/clip-vit-large-patch14
        text = {"vocab_size": vocab, "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                "num_hidden_layers": 12, **special}  # fmt: skip
        vision = {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
                  "num_hidden_layers": 24, "image_size": 224, "patch_size": 14}  # fmt: skip
        projection, size = 768, 224
    else:
        text = {"vocab_size": vocab, "hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4,
                "num_hidden_layers": 2, **special}  # fmt: skip
        vision = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4,
                  "num_hidden_layers": 2, "image_size": 32, "patch_size": 8}  # fmt: skip
        projection, size = 16, 32
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection))
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": size},
            crop_size={"height": size, "width": size},
            image_mean=CLIP_MEAN,
            image_std=CLIP_STD,
        ),
        tokenizer=tokenizer,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)


def _dino(out: Path, *, full: bool) -> None:
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    if full:  # facebook/dinov2-base
        config = Dinov2Config(
            hidden_size=768, num_hidden_layers=12, num_attention_heads=12, image_size=518, patch_size=14
        )
        size = 224
    else:
        config = Dinov2Config(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            image_size=32,
            patch_size=8,
        )
        size = 32
    Dinov2Model(config).save_pretrained(out)
    BitImageProcessor(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        do_convert_rgb=True,
    ).save_pretrained(out)


def build_metric_models(folder: str | Path, *, full: bool = False, seed: int = 0) -> Path:
    """Write random CLIP, DINOv2 and Inception networks into ``folder`` (the ``--metric-models`` layout)."""
    import torch

    from tryon.evaluation.inception import FIDInceptionV3, save_inception

    out = Path(folder)
    torch.manual_seed(seed)
    _clip(out / SUBFOLDERS["clip"], full=full)
    _dino(out / SUBFOLDERS["dino"], full=full)
    save_inception(
        FIDInceptionV3(width=1.0 if full else 0.0625).randomise(seed), out / SUBFOLDERS["inception"]
    )
    return out


if __name__ == "__main__":  # python -m tryon.evaluation.tiny_metrics DIR [--full]
    import sys

    args = [a for a in sys.argv[1:] if a != "--full"]
    print(build_metric_models(args[0] if args else ".cache/metric-models", full="--full" in sys.argv))
