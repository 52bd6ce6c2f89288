"""DreamBooth + LoRA fine-tuning of the SD / SDXL inpainting model on a few garment photos.

Light on import: the heavy modules (``train``, ``outputs``) import torch/diffusers lazily,
and ``sagemaker_launcher`` imports the sagemaker SDK only when a job is launched.

- :mod:`tryon.training.config`   every hyperparameter, JSON round-trip, argparse, checks
- :mod:`tryon.training.data`     instance/class image folders, captions, mask files
- :mod:`tryon.training.masks`    random and garment-shaped inpainting masks
- :mod:`tryon.training.loop`    the training loop (diffusers + peft + accelerate)
- :mod:`tryon.training.families` what differs per base (SD 1.5/2, SDXL): text encoders, added conditioning
- :mod:`tryon.training.checkpoints`  resumable checkpoints (LoRA layers only in LoRA mode)
- :mod:`tryon.training.outputs`  adapter / UNet, ``training_config.json``, validation grid
- :mod:`tryon.training.sagemaker_launcher`  SageMaker training job (SDK v3 ``ModelTrainer``)
"""

from __future__ import annotations

from tryon.training.config import TrainingConfig

__all__ = ["TrainingConfig"]
