"""Resumable checkpoints of the fine-tune: where they are, and what a LoRA checkpoint holds.

``accelerator.save_state`` writes ``<checkpoint_dir>/checkpoint-<step>/`` (optimizer,
schedule, random states). In LoRA mode the hooks registered by :func:`register_lora_hooks`
replace the model weights with the LoRA layers alone (the adapter file format of
:func:`tryon.training.outputs.save_lora_adapter`), and put them back exactly on resume:
UNet and every trained text encoder (SDXL has two).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from tryon.core.errors import RequestError
from tryon.training import outputs
from tryon.training.config import TrainingConfig

CHECKPOINT_PREFIX = "checkpoint-"
FIELD = "resume_from_checkpoint"


def checkpoint_path(folder: Path, step: int) -> Path:
    """The checkpoint folder of ``step`` under ``folder``."""
    return folder / f"{CHECKPOINT_PREFIX}{step}"


def find_checkpoint(config: TrainingConfig) -> Path | None:
    """The checkpoint ``resume_from_checkpoint`` names ("latest" -> newest, or None if there is none)."""
    wanted = config.resume_from_checkpoint
    if not wanted:
        return None
    if wanted != "latest":
        path = Path(wanted)
        if not path.is_dir():
            raise RequestError(FIELD, f"{path} is not a checkpoint folder")
        return path
    found = list_checkpoints(config.effective_checkpoint_dir)
    return found[-1] if found else None


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint folders under ``folder``, oldest step first."""
    if not folder.is_dir():
        return []
    pattern = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := pattern.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def checkpoint_step(path: Path) -> int:
    """The optimizer step a checkpoint folder was saved at (from its name)."""
    match = re.search(rf"{CHECKPOINT_PREFIX}(\d+)$", path.name)
    if not match:
        raise RequestError(FIELD, f"{path.name} is not named {CHECKPOINT_PREFIX}<step>")
    return int(match.group(1))


def rotate_checkpoints(folder: Path, limit: int | None) -> None:
    """Delete the oldest checkpoints so that one more leaves at most ``limit``."""
    if not limit:
        return
    existing = list_checkpoints(folder)
    for old in existing[: max(0, len(existing) - limit + 1)]:
        shutil.rmtree(old, ignore_errors=True)


def _restore_lora(model: Any, layers: dict[str, Any], *, unet: bool) -> None:
    """Load diffusers-format LoRA ``layers`` (as :func:`outputs.save_lora_adapter` wrote them) into ``model``.

    The file's ``up`` weights carry the scale alpha / rank (folded for portability); the
    model applies its own scale, so it is divided out again. Names are matched to the
    model's: the file's text-encoder names start with ``text_model.``, which transformers 5's
    ``CLIPTextModel`` does not use. A layer the model lacks is an error, never skipped.
    """
    from diffusers.utils import convert_state_dict_to_peft, convert_unet_state_dict_to_peft
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    from tryon.weights.portable import CLIP_TEXT_PREFIX

    state = convert_unet_state_dict_to_peft(layers) if unet else convert_state_dict_to_peft(layers)
    own = get_peft_model_state_dict(model)
    if not unet and not any(k.startswith(CLIP_TEXT_PREFIX) for k in own):
        state = {k.removeprefix(CLIP_TEXT_PREFIX): v for k, v in state.items()}
    peft_config = model.peft_config["default"]
    scale = float(peft_config.lora_alpha) / float(peft_config.r)
    state = {k: v / scale if "lora_B" in k and scale != 1.0 else v for k, v in state.items()}
    incompatible = set_peft_model_state_dict(model, state, "default")
    unexpected = list(getattr(incompatible, "unexpected_keys", None) or [])
    missing = sorted(set(own) - set(state))
    if unexpected or missing:
        raise RequestError(
            FIELD,
            f"checkpoint does not match the LoRA options (unexpected {unexpected[:3]}, "
            f"missing {missing[:3]})",
        )


def register_lora_hooks(accelerator: Any, config: TrainingConfig) -> None:
    """Checkpoints hold only the LoRA layers (diffusers format), not the frozen base weights."""
    from diffusers import StableDiffusionInpaintPipeline
    from diffusers.training_utils import cast_training_params

    def is_unet(model: Any) -> bool:
        return hasattr(accelerator.unwrap_model(model), "conv_in")

    def split(models: list[Any]) -> tuple[Any, list[Any]]:
        """(UNet, text encoders in the order they were prepared)."""
        unet = next(accelerator.unwrap_model(m) for m in models if is_unet(m))
        return unet, [accelerator.unwrap_model(m) for m in models if not is_unet(m)]

    def save_hook(models: list[Any], weights: list[Any], output_dir: str) -> None:
        unet, encoders = split(models)
        outputs.save_lora_adapter(output_dir, unet, *encoders)
        weights.clear()

    def load_hook(models: list[Any], input_dir: str) -> None:
        unet, encoders = split(models)
        models.clear()
        state, _ = StableDiffusionInpaintPipeline.lora_state_dict(input_dir)
        for prefix, model in (("unet.", unet), *((_encoder_prefix(i), e) for i, e in enumerate(encoders))):
            layers = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            _restore_lora(model, layers, unet=model is unet)
        if config.mixed_precision == "fp16":
            cast_training_params([unet, *encoders])

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def _encoder_prefix(index: int) -> str:
    """``text_encoder.`` for the first text encoder, ``text_encoder_2.`` for SDXL's second."""
    return "text_encoder." if index == 0 else f"text_encoder_{index + 1}."
