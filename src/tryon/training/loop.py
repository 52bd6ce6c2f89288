"""The DreamBooth inpainting training loop on diffusers + peft + accelerate.

Objective (as diffusers' inpainting research recipe): the UNet sees
``[noisy_latents, mask at latent size, masked_image_latents]`` (9 channels) and predicts
the noise (or ``v`` for v-prediction schedulers). Masks are random shapes or garment
masks (:mod:`tryon.training.masks`); prior preservation adds a class-image loss.

Every random choice of a micro-batch (images, flips, masks, noise, timesteps) is drawn
from generators seeded by ``(seed, step, micro-step)``, so a run resumed from a
checkpoint (``accelerator.save_state``: weights, optimizer, schedule) continues exactly
as the uninterrupted run would have.
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from tryon.core.errors import RequestError
from tryon.handlers.compat import dtype_kwargs
from tryon.training import data as data_mod
from tryon.training import heldout, outputs
from tryon.training import masks as masks_mod
from tryon.training.checkpoints import (
    checkpoint_path,
    checkpoint_step,
    find_checkpoint,
    register_lora_hooks,
    rotate_checkpoints,
)
from tryon.training.config import TEXT_ENCODER_LORA_TARGETS, TrainingConfig
from tryon.training.families import Family, TextStack, family_for, time_ids

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a run produced and where."""

    output_dir: Path
    global_step: int
    losses: list[float]
    config_path: Path
    adapter_dir: Path | None = None
    model_dir: Path | None = None
    validation_path: Path | None = None
    #: validation.json (every round's metrics) and the best round's weights (with metric networks)
    validation_history: Path | None = None
    best_dir: Path | None = None
    held_out: list[str] = field(default_factory=list)
    resumed_from: Path | None = None
    mask_sources: dict[str, str] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class _Examples:
    """Training examples at the training resolution."""

    images: list[Image.Image]
    prompts: list[str]
    garment_masks: list[Image.Image | None]
    #: SDXL's size/crop ids of each image (:func:`tryon.training.families.time_ids`)
    time_ids: list[list[int]]


# ---------------------------------------------------------------------- data
def _prepare_instance_examples(
    config: TrainingConfig, clipseg_fn: Callable[..., list]
) -> tuple[_Examples, dict[str, str], list[tuple[str, str]], list[Image.Image | None]]:
    """Instance examples, mask sources per file, skipped files, and full-size garment masks."""
    report = data_mod.load_instance_images(config.instance_data_dir, mask_dir=config.mask_dir)
    samples = report.samples
    full_masks: list[Image.Image | None] = [s.mask for s in samples]
    sources = {s.path.name: ("file" if s.mask is not None else "random") for s in samples}
    if config.mask_query:
        todo = [i for i, m in enumerate(full_masks) if m is None]
        if todo:
            computed = clipseg_fn(
                [samples[i].image for i in todo],
                config.mask_query,
                config.clipseg_model,
                threshold=config.mask_threshold,
            )
            for i, mask in zip(todo, computed, strict=True):
                full_masks[i] = masks_mod.binarize(mask)
                sources[samples[i].path.name] = "clipseg"
    res, crop = config.resolution, config.center_crop
    images = [data_mod.fit_square(s.image, res, center_crop=crop) for s in samples]
    garment = [
        None
        if m is None
        else masks_mod.binarize(
            data_mod.fit_square(m, res, center_crop=crop, resample=Image.Resampling.NEAREST)
        )
        for m in full_masks
    ]
    for name, mask in zip([s.path.name for s in samples], garment, strict=True):
        if mask is not None and masks_mod.coverage(mask) < masks_mod.MIN_GARMENT_COVERAGE:
            logger.warning("garment mask of %s is (nearly) empty; random masks are used for it", name)
            sources[name] += " (empty: random used)"
    prompts = [s.caption or config.instance_prompt for s in samples]
    examples = _Examples(images, prompts, garment, _time_ids([s.image for s in samples], config))
    return examples, sources, report.skipped, full_masks


def _time_ids(originals: list[Image.Image], config: TrainingConfig) -> list[list[int]]:
    """SDXL size/crop ids of images as :func:`data_mod.fit_square` fits them (unused by SD)."""
    res, crop = config.resolution, config.center_crop
    return [
        time_ids((img.height, img.width), data_mod.square_crop_origin(img.size, res, center_crop=crop), res)
        for img in originals
    ]


def _generate_class_images(
    config: TrainingConfig, family: Family, wanted: int, out_dir: Path, device: Any, dtype: Any
) -> None:
    """Generate ``wanted`` class images with the base model (full-image inpainting = text-to-image)."""
    import torch
    from tqdm.auto import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    pipe = (
        family.pipeline_class()
        .from_pretrained(
            config.pretrained_model, **dtype_kwargs("diffusers", dtype), **family.pipeline_options()
        )
        .to(device)
    )
    pipe.set_progress_bar_config(disable=True)
    res = config.resolution
    blank = Image.new("RGB", (res, res), (127, 127, 127))
    full = Image.new("L", (res, res), 255)
    start = len(data_mod.list_image_files(out_dir))
    for i in tqdm(range(start, start + wanted), desc="class images"):
        generator = torch.Generator("cpu").manual_seed(config.seed * 100_003 + i)
        image = pipe(
            prompt=config.class_prompt,
            image=blank,
            mask_image=full,
            height=res,
            width=res,
            num_inference_steps=config.class_generation_steps,
            strength=1.0,  # SDXL inpainting defaults to 0.9999: one step would round to none
            generator=generator,
        ).images[0]
        image.save(out_dir / f"class-{i:05d}.png")
    del pipe


def _prepare_class_examples(
    config: TrainingConfig, family: Family, device: Any, dtype: Any
) -> _Examples | None:
    if not config.with_prior_preservation:
        return None
    generated_dir = Path(config.output_dir) / "class_images"
    supplied = []
    if config.class_data_dir:
        supplied = data_mod.scan_folder(config.class_data_dir, field_name="class_data_dir").samples
    have = len(supplied) + len(data_mod.list_image_files(generated_dir))
    if have < config.num_class_images:
        logger.info("generating %d class images into %s", config.num_class_images - have, generated_dir)
        _generate_class_images(config, family, config.num_class_images - have, generated_dir, device, dtype)
    samples = list(supplied)
    if generated_dir.is_dir():
        samples += data_mod.scan_folder(generated_dir, field_name="class_data_dir").samples
    res = config.resolution
    images = [data_mod.fit_square(s.image, res, center_crop=config.center_crop) for s in samples]
    prompts = [s.caption or config.class_prompt for s in samples]
    return _Examples(images, prompts, [None] * len(images), _time_ids([s.image for s in samples], config))


# ---------------------------------------------------------------------- batches
def _pick(count: int, position: int, seed: int) -> int:
    """Index of the example at ``position`` of an endless sequence of seeded epoch permutations."""
    epoch, offset = divmod(position, count)
    order = list(range(count))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order[offset]


def _batch_tensors(
    examples: _Examples,
    sampler: masks_mod.MaskSampler | None,
    positions: list[int],
    rng: random.Random,
    config: TrainingConfig,
    tokenize: Callable[[list[str]], dict[str, Any]],
) -> dict[str, Any]:
    """Pixels in [-1, 1], masks in {0, 1}, masked images, size/crop ids and token ids of a micro-batch."""
    import numpy as np
    import torch

    pixels, mask_list, prompts, ids = [], [], [], []
    size = (config.resolution, config.resolution)
    for position in positions:
        index = _pick(len(examples.images), position, config.seed)
        image = examples.images[index]
        if sampler is None:
            mask = masks_mod.random_mask(size, rng)
        else:
            mask, _ = sampler.sample(index, size, rng)
        if config.random_flip and rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            mask = mask.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        pixels.append(np.asarray(image, dtype=np.float32) / 127.5 - 1.0)
        mask_list.append((np.asarray(mask, dtype=np.float32) >= 128).astype(np.float32))
        prompts.append(examples.prompts[index])
        ids.append(examples.time_ids[index])
    pixel_values = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous()
    mask = torch.from_numpy(np.stack(mask_list))[:, None]
    return {
        "pixel_values": pixel_values,
        "masks": mask,
        "masked_images": pixel_values * (mask < 0.5),
        "time_ids": torch.tensor(ids, dtype=torch.float32),
        **tokenize(prompts),
    }


# ---------------------------------------------------------------------- the run
def train(
    config: TrainingConfig,
    *,
    clipseg_fn: Callable[..., list] | None = None,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Fine-tune per ``config``; write the adapter (or UNet), config JSON and validation grid.

    ``clipseg_fn(images, query, model_dir, threshold=...)`` computes garment masks for
    ``--mask-query`` (default: :func:`tryon.training.masks.clipseg_masks`).
    ``on_step(global_step, loss)`` is called after every optimizer step (before checkpoints
    and validation), e.g. for timing or logging.
    Raises RequestError for bad options or data (naming the field).
    """
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from diffusers.optimization import get_scheduler
    from tqdm.auto import tqdm

    started = time.perf_counter()
    config.validate()
    # Data first: bad folders fail before any weights are loaded or outputs are written.
    instance, mask_sources, skipped, full_masks = _prepare_instance_examples(
        config, clipseg_fn or masks_mod.clipseg_masks
    )
    instance, held = _split_held_out(instance, list(mask_sources), config)
    metric_models = _validation_metric_models(config)
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_dir = config.effective_checkpoint_dir
    tensorboard = config.report_to == "tensorboard"
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=config.mixed_precision,
        log_with="tensorboard" if tensorboard else None,
        project_config=ProjectConfiguration(
            project_dir=str(out_dir), logging_dir=str(config.effective_logging_dir)
        ),
    )
    set_seed(config.seed)
    device = accelerator.device
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(
        accelerator.mixed_precision, torch.float32
    )

    masks_dir = out_dir / "masks"
    for (name, _), mask in zip(mask_sources.items(), full_masks, strict=True):
        if mask is not None:
            masks_dir.mkdir(exist_ok=True)
            mask.save(masks_dir / f"{Path(name).stem}.png")
    sampler = masks_mod.MaskSampler(instance.garment_masks, config.garment_mask_ratio)
    family = family_for(config.pretrained_model)
    class_examples = _prepare_class_examples(config, family, device, weight_dtype)

    text, vae, unet, noise_scheduler = _load_models(config, family, device, weight_dtype)
    lora = config.train_mode == "lora"
    trained_encoders = list(text.encoders) if config.train_text_encoder else []

    lr = config.effective_learning_rate
    groups = [{"params": [p for p in unet.parameters() if p.requires_grad], "lr": lr}]
    if trained_encoders:
        te_params = [p for enc in trained_encoders for p in enc.parameters() if p.requires_grad]
        groups.append({"params": te_params, "lr": config.text_encoder_lr or lr})
    optimizer = _make_optimizer(config, groups)
    lr_scheduler = get_scheduler(
        config.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=config.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=config.max_train_steps * accelerator.num_processes,
        num_cycles=config.lr_num_cycles,
        power=config.lr_power,
    )
    unet, *trained_encoders, optimizer, lr_scheduler = accelerator.prepare(
        unet, *trained_encoders, optimizer, lr_scheduler
    )
    if trained_encoders:
        text.encoders = trained_encoders
    trained = [unet, *trained_encoders]
    if lora:
        register_lora_hooks(accelerator, config)

    global_step = 0
    resumed_from = find_checkpoint(config)
    if config.resume_from_checkpoint == "latest" and resumed_from is None:
        logger.warning("no checkpoint in %s; starting a new run", checkpoint_dir)
    if resumed_from is not None:
        accelerator.load_state(str(resumed_from))
        global_step = checkpoint_step(resumed_from)
        accelerator.print(f"resumed from {resumed_from} at step {global_step}")

    def tokenize(prompts: list[str]) -> dict[str, Any]:
        return family.tokenize(text, prompts)

    if tensorboard:
        accelerator.init_trackers("fine-tune", config=_scalar_options(config))
    validator = _validator(accelerator, config, out_dir, held, metric_models, tensorboard)
    every = config.effective_validation_steps(held.held_out)
    render = _ValidationRenderer(accelerator, config, family, held, vae, text, unet)

    def save_best(target: Path) -> None:
        _save_weights(accelerator, unet, trained_encoders, target, lora=lora)

    last_grid: tuple[int, Path] | None = None  # (step, grid) of the last periodic round
    bar = tqdm(
        total=config.max_train_steps,
        initial=global_step,
        desc="fine-tune",
        disable=not (progress and accelerator.is_local_main_process),
    )
    losses: list[float] = []
    for model in trained:
        model.train()
    accum = config.gradient_accumulation_steps
    bs = config.train_batch_size
    vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
    while global_step < config.max_train_steps:
        step_loss = 0.0
        for micro in range(accum):
            # Each process (under `accelerate launch`) takes its own slice of the example stream.
            draw = (global_step * accum + micro) * accelerator.num_processes + accelerator.process_index
            position = draw * bs
            rng = random.Random(f"{config.seed}:{draw}")
            generator = torch.Generator("cpu").manual_seed(_micro_seed(config.seed, draw))
            batch = _batch_tensors(
                instance, sampler, list(range(position, position + bs)), rng, config, tokenize
            )
            if class_examples is not None:
                prior = _batch_tensors(
                    class_examples, None, list(range(position, position + bs)), rng, config, tokenize
                )
                batch = {k: torch.cat([batch[k], prior[k]]) for k in batch}
            with accelerator.accumulate(*trained):
                loss = _loss(
                    batch,
                    generator=generator,
                    vae=vae,
                    vae_factor=vae_factor,
                    unet=unet,
                    family=family,
                    text_encoders=text.encoders,
                    noise_scheduler=noise_scheduler,
                    device=device,
                    weight_dtype=weight_dtype,
                    prior_weight=config.prior_loss_weight if class_examples is not None else None,
                    functional=F,
                )
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"loss is {loss.item()} at step {global_step}; lower the learning rate"
                    )
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm > 0:
                    params = [p for g in groups for p in g["params"]]
                    accelerator.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            step_loss += loss.detach().item() / accum
        global_step += 1
        losses.append(step_loss)
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr_scheduler.get_last_lr()[0]:.2e}")
        if tensorboard:
            accelerator.log(
                {"train/loss": step_loss, "train/lr": lr_scheduler.get_last_lr()[0]}, step=global_step
            )
        if config.log_metrics_every and global_step % config.log_metrics_every == 0:
            line = heldout.metric_line(
                global_step, {"train_loss": step_loss, "learning_rate": lr_scheduler.get_last_lr()[0]}
            )
            bar.write(line)
        if on_step is not None:
            on_step(global_step, step_loss)
        if config.checkpointing_steps and global_step % config.checkpointing_steps == 0:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                rotate_checkpoints(checkpoint_dir, config.checkpoints_total_limit)
                accelerator.save_state(str(checkpoint_path(checkpoint_dir, global_step)))
        if every and global_step % every == 0 and accelerator.is_main_process:
            grid, renders, seconds = render(out_dir / "validation" / f"step-{global_step:06d}.png")
            validator.round(global_step, renders, grid, save_best, seconds=seconds)
            last_grid = (global_step, grid)
    bar.close()

    accelerator.wait_for_everyone()
    result = TrainResult(
        output_dir=out_dir,
        global_step=global_step,
        losses=losses,
        config_path=out_dir / outputs.CONFIG_NAME,
        resumed_from=resumed_from,
        mask_sources=mask_sources,
        skipped=skipped,
    )
    if accelerator.is_main_process:
        if lora:
            result.adapter_dir = out_dir / "adapter"
        else:
            result.model_dir = out_dir
        _save_weights(accelerator, unet, trained_encoders, result.adapter_dir or out_dir, lora=lora)
        if not config.skip_final_validation:
            final = out_dir / outputs.VALIDATION_NAME
            if last_grid is not None and last_grid[0] == global_step:
                # the last step's round rendered and scored these very weights: its grid is the final one
                result.validation_path = Path(shutil.copyfile(last_grid[1], final))
            else:
                result.validation_path, renders, seconds = render(final)
                validator.round(global_step, renders, result.validation_path, save_best, seconds=seconds)
        if validator.history:
            result.validation_history = validator.write()
        if validator.best is not None:
            result.best_dir = Path(validator.best["path"])
        result.held_out = held.names if held.held_out else []
        result.seconds = time.perf_counter() - started
        outputs.write_config(
            out_dir,
            {
                **config.effective_dict(),
                "validation_steps": every,
                "num_validation_images": config.effective_validation_images(held.held_out),
            },
            {
                "base_family": family.name,
                "global_step": global_step,
                "resumed_from": str(resumed_from) if resumed_from else None,
                "instance_images": len(instance.images),
                "mask_sources": mask_sources,
                "skipped_files": [f"{n}: {r}" for n, r in skipped],
                "final_loss": losses[-1] if losses else None,
                "held_out": result.held_out,
                "best_validation": validator.best,
                "seconds": round(result.seconds, 3),
            },
        )
    accelerator.end_training()
    return result


def _save_weights(
    accelerator: Any, unet: Any, trained_encoders: list[Any], target: Path, *, lora: bool
) -> None:
    """The trained weights as the endpoint loads them: a LoRA adapter file, or unet/ (+ text encoders)."""
    unet_final = accelerator.unwrap_model(unet)
    te_final = [accelerator.unwrap_model(enc) for enc in trained_encoders]
    if lora:
        outputs.save_lora_adapter(target, unet_final, *te_final)
    else:
        outputs.save_full_model(target, unet_final, *te_final)


def _scalar_options(config: TrainingConfig) -> dict[str, Any]:
    """The options TensorBoard's hyperparameter view can show (scalars and strings)."""
    return {
        k: v
        for k, v in config.effective_dict().items()
        if isinstance(v, int | float | str | bool) and v is not None
    }


def _split_held_out(
    instance: _Examples, names: list[str], config: TrainingConfig
) -> tuple[_Examples, heldout.HeldOut]:
    """Training examples without the held-out photos (the last ones by name), and the validation set.

    Without held-out photos validation renders the first training photo (as before held-out
    photos existed). A held-out photo without a garment mask gets a centred ellipse.
    """
    count = config.effective_holdout(len(instance.images))
    if count and len(instance.images) - count < 1:
        raise RequestError(
            "validation_holdout",
            f"must leave at least one photo to train on ({len(instance.images)} photos, {count} held out)",
        )
    keep = len(instance.images) - count
    train_part = _Examples(
        instance.images[:keep],
        instance.prompts[:keep],
        instance.garment_masks[:keep],
        instance.time_ids[:keep],
    )
    chosen = range(keep, len(instance.images)) if count else range(1)
    images = [instance.images[i] for i in chosen]
    masks = [_mask_or_ellipse(instance.garment_masks[i], instance.images[i].size) for i in chosen]
    from tryon.evaluation.feature_metrics import garment_region

    references = [
        garment_region(img, m) for img, m in zip(train_part.images, train_part.garment_masks, strict=True)
    ]
    held = heldout.HeldOut(images, masks, [names[i] for i in chosen], references, held_out=bool(count))
    return train_part, held


def _mask_or_ellipse(mask: Image.Image | None, size: tuple[int, int]) -> Image.Image:
    if mask is not None and masks_mod.coverage(mask) >= masks_mod.MIN_GARMENT_COVERAGE:
        return mask
    from PIL import ImageDraw

    ellipse = Image.new("L", size, 0)
    ImageDraw.Draw(ellipse).ellipse(
        (size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4), fill=255
    )
    return ellipse


def _validation_metric_models(config: TrainingConfig) -> Any:
    """The metric networks validation scores with (checked now, before training), or None."""
    if not config.validation_metric_models:
        return None
    from tryon.evaluation.metric_models import MetricModels

    source = config.validation_metric_models
    models = MetricModels(download=True) if source == "hub" else MetricModels(folder=Path(source))
    try:
        models.check({"garment", "prompt"})
    except RequestError as exc:
        raise RequestError("validation_metric_models", exc.detail) from None
    return models


def _validator(
    accelerator: Any,
    config: TrainingConfig,
    out_dir: Path,
    held: heldout.HeldOut,
    models: Any,
    tensorboard: bool,
) -> heldout.Validator:
    import numpy as np

    def log(values: dict[str, float], step: int) -> None:
        if tensorboard and values:
            accelerator.log(values, step=step)

    def log_images(tag: str, images: list[Image.Image], step: int) -> None:
        if tensorboard and images:
            arrays = np.stack([np.asarray(img.convert("RGB")) for img in images])
            accelerator.get_tracker("tensorboard").log_images({tag: arrays}, step=step, dataformats="NHWC")

    return heldout.Validator(
        out_dir=out_dir,
        prompt=config.validation_prompt or config.instance_prompt,
        best_metric=config.best_metric,
        held=held,
        models=models,
        log=log,
        log_images=log_images,
    )


def _load_models(
    config: TrainingConfig, family: Family, device: Any, weight_dtype: Any
) -> tuple[TextStack, Any, Any, Any]:
    """(text encoders, vae, unet, noise_scheduler), frozen/LoRA-injected per the mode.

    Frozen weights are cast to ``weight_dtype``; trainable ones stay float32 (LoRA layers are
    cast back to float32 under fp16).
    """
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from diffusers.training_utils import cast_training_params

    source = config.pretrained_model
    text = family.load_text(source)
    vae = AutoencoderKL.from_pretrained(source, subfolder="vae")
    unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet")
    noise_scheduler = DDPMScheduler.from_pretrained(source, subfolder="scheduler")
    if unet.config.in_channels != 9:
        raise RequestError(
            "pretrained_model",
            f"{source} is not an inpainting model (UNet in_channels {unet.config.in_channels}, need 9)",
        )
    family.check_unet(unet, text, source)
    lora = config.train_mode == "lora"
    vae.requires_grad_(False)
    for encoder in text.encoders:
        encoder.requires_grad_(config.train_text_encoder and not lora)
    unet.requires_grad_(not lora)
    vae.to(device, dtype=weight_dtype)
    if lora:
        from peft import LoraConfig

        def lora_config(targets: list[str]) -> LoraConfig:
            # "gaussian": A random, B zero -- the adapter starts as a no-op and learns.
            return LoraConfig(
                r=config.lora_rank,
                lora_alpha=config.effective_lora_alpha,
                lora_dropout=config.lora_dropout,
                init_lora_weights="gaussian",
                target_modules=targets,
            )

        unet.to(device, dtype=weight_dtype)
        unet.add_adapter(lora_config(list(config.lora_targets)))
        if config.train_text_encoder:
            for encoder in text.encoders:
                encoder.to(device, dtype=weight_dtype)
                encoder.add_adapter(lora_config(list(TEXT_ENCODER_LORA_TARGETS)))
    if not config.train_text_encoder:
        for encoder in text.encoders:
            encoder.to(device, dtype=weight_dtype)
    if config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        if config.train_text_encoder:
            for encoder in text.encoders:
                encoder.gradient_checkpointing_enable()
    if lora and weight_dtype == torch.float16:
        trained = [unet] + (list(text.encoders) if config.train_text_encoder else [])
        cast_training_params(trained, dtype=torch.float32)
    return text, vae, unet, noise_scheduler


def _make_optimizer(config: TrainingConfig, groups: list[dict[str, Any]]) -> Any:
    import torch

    optimizer_cls = torch.optim.AdamW
    if config.use_8bit_adam:
        try:
            import bitsandbytes as bnb

            optimizer_cls = bnb.optim.AdamW8bit
        except ImportError:
            logger.warning("use_8bit_adam: bitsandbytes is not installed; using torch AdamW")
            print("notice: --use-8bit-adam needs bitsandbytes (pip install bitsandbytes); using torch AdamW")
    return optimizer_cls(
        groups,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.adam_weight_decay,
        eps=config.adam_epsilon,
    )


def _loss(
    batch: dict[str, Any],
    *,
    generator: Any,
    vae: Any,
    vae_factor: int,
    unet: Any,
    family: Family,
    text_encoders: list[Any],
    noise_scheduler: Any,
    device: Any,
    weight_dtype: Any,
    prior_weight: float | None,
    functional: Any,
) -> Any:
    """Inpainting denoising loss of one micro-batch (instance + optional class halves)."""
    import torch

    pixel_values = batch["pixel_values"].to(device, dtype=weight_dtype)
    masked_images = batch["masked_images"].to(device, dtype=weight_dtype)
    scale = vae.config.scaling_factor
    with torch.no_grad():
        latents = vae.encode(pixel_values).latent_dist.sample(generator=generator) * scale
        masked_latents = vae.encode(masked_images).latent_dist.mode() * scale
    latent_size = (pixel_values.shape[-2] // vae_factor, pixel_values.shape[-1] // vae_factor)
    mask = functional.interpolate(batch["masks"], size=latent_size).to(device, dtype=weight_dtype)
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(
        device, dtype=latents.dtype
    )
    timesteps = torch.randint(
        0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator
    ).to(device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    encoder_hidden_states, added_cond = family.encode(text_encoders, batch, device, weight_dtype)
    model_input = torch.cat([noisy, mask, masked_latents], dim=1)
    prediction = unet(
        model_input, timesteps, encoder_hidden_states, added_cond_kwargs=added_cond, return_dict=False
    )[0]
    if noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    if prior_weight is None:
        return functional.mse_loss(prediction.float(), target.float(), reduction="mean")
    pred_instance, pred_prior = torch.chunk(prediction, 2, dim=0)
    target_instance, target_prior = torch.chunk(target, 2, dim=0)
    instance_loss = functional.mse_loss(pred_instance.float(), target_instance.float(), reduction="mean")
    prior_loss = functional.mse_loss(pred_prior.float(), target_prior.float(), reduction="mean")
    return instance_loss + prior_weight * prior_loss


class _ValidationRenderer:
    """Renders the validation photos with the current weights: ``render(grid_path) -> (grid, renders, s)``.

    One pipeline over the training modules (built at the first round, reused: the LoRA or
    full weights it holds are the ones being trained); the renders of all photos go through it
    in batched calls of at most ``max(2, renders per photo)`` renders (the peak memory of one
    photo's two default images before batching), each render with its own generator: image ``r`` of
    every photo starts from seed ``seed + r``, so rounds are comparable step after step. The
    grid has one ``[image | mask | masked image | renders...]`` row per photo.
    """

    def __init__(
        self,
        accelerator: Any,
        config: TrainingConfig,
        family: Family,
        held: heldout.HeldOut,
        vae: Any,
        text: TextStack,
        unet: Any,
    ) -> None:
        self.accelerator, self.config, self.family, self.held = accelerator, config, family, held
        self.vae, self.text, self.unet = vae, text, unet
        self._pipe: Any = None

    def pipeline(self) -> Any:
        """The validation pipeline (built once)."""
        if self._pipe is None:
            from diffusers import DPMSolverMultistepScheduler

            unwrap = self.accelerator.unwrap_model
            self._pipe = self.family.pipeline(
                vae=self.vae,
                text=TextStack(self.text.tokenizers, [unwrap(enc) for enc in self.text.encoders]),
                unet=unwrap(self.unet),
                scheduler=DPMSolverMultistepScheduler.from_pretrained(
                    self.config.pretrained_model, subfolder="scheduler"
                ),
            )
            self._pipe.set_progress_bar_config(disable=True)
        return self._pipe

    def __call__(self, path: Path) -> tuple[Path, list[list[Image.Image]], float]:
        import torch

        started = time.perf_counter()
        config, held = self.config, self.held
        per_photo = config.effective_validation_images(held.held_out)
        pipe = self.pipeline()
        unet_model = self.accelerator.unwrap_model(self.unet)
        was_training = unet_model.training
        unet_model.eval()
        todo = [(i, r) for i in range(len(held.images)) for r in range(per_photo)]
        chunk = max(2, per_photo)
        images: list[Image.Image] = []
        for first in range(0, len(todo), chunk):
            part = todo[first : first + chunk]
            with torch.no_grad(), self.accelerator.autocast():
                images += pipe(
                    prompt=[config.validation_prompt or config.instance_prompt] * len(part),
                    image=[held.images[i] for i, _ in part],
                    mask_image=[held.masks[i] for i, _ in part],
                    height=config.resolution,
                    width=config.resolution,
                    num_inference_steps=config.validation_inference_steps,
                    strength=1.0,  # SDXL inpainting defaults to 0.9999: one step would round to none
                    generator=[torch.Generator("cpu").manual_seed(config.seed + r) for _, r in part],
                ).images
        unet_model.train(was_training)
        renders = [images[i * per_photo : (i + 1) * per_photo] for i in range(len(held.images))]
        cells: list[Image.Image] = []
        for image, mask, results in zip(held.images, held.masks, renders, strict=True):
            masked = Image.composite(Image.new("RGB", image.size, (0, 0, 0)), image, mask)
            cells += [image, mask.convert("RGB"), masked, *results]
        grid = outputs.save_grid(cells, path, columns=3 + per_photo)
        return grid, renders, time.perf_counter() - started


def _micro_seed(seed: int, draw: int) -> int:
    """Seed of the torch generator of one micro-batch (stable across runs and resumes)."""
    return (seed * 1_000_003 + draw) % 2**63
