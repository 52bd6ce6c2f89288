"""SageMaker entry point for the Stable Diffusion inpainting endpoint.

The Hugging Face inference toolkit imports this module from ``code/`` of model.tar.gz;
packaging vendors the ``tryon`` package next to it. The logic lives in
:mod:`tryon.handlers.sd_inpaint`.
"""

from tryon.handlers.sd_inpaint import input_fn, model_fn, output_fn, predict_fn

__all__ = ["input_fn", "model_fn", "output_fn", "predict_fn"]
