"""SageMaker entry point of the Stable Diffusion x4 upscaler endpoint (Hugging Face inference toolkit).

The packager vendors the ``tryon`` package next to this file in ``code/`` of model.tar.gz;
the handler logic lives in :mod:`tryon.handlers.sd_upscale`.
"""

from tryon.handlers.sd_upscale import input_fn, model_fn, output_fn, predict_fn

__all__ = ["input_fn", "model_fn", "output_fn", "predict_fn"]
