"""Upscale: the SD x4 upscaler endpoint on each inpainted image -> upscaled-<i>.png in S3.

Thin handler: the logic lives in :mod:`tryon.workflow.steps` (shipped in the shared layer).
"""

from __future__ import annotations

from tryon.workflow import steps
from tryon.workflow.entry import lambda_handler

handler = lambda_handler(steps.upscale, counts=lambda result: {"ImagesUpscaled": len(result["keys"])})
