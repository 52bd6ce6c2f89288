"""SageMaker entry point of the CLIPSeg endpoint (Hugging Face inference toolkit contract).

The packager vendors the ``tryon`` package next to this file in ``code/`` of model.tar.gz;
the handler logic lives in :mod:`tryon.handlers.clipseg`.
"""

from tryon.handlers.clipseg import input_fn, model_fn, output_fn, predict_fn

__all__ = ["input_fn", "model_fn", "output_fn", "predict_fn"]
