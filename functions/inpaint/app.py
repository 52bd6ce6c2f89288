"""Inpaint: the SD inpainting endpoint (with an optional LoRA adapter) -> inpainted-<i>.png in S3.

Thin handler: the logic lives in :mod:`tryon.workflow.steps` (shipped in the shared layer).
"""

from __future__ import annotations

from tryon.workflow import steps
from tryon.workflow.entry import lambda_handler

handler = lambda_handler(steps.inpaint, counts=lambda result: {"ImagesInpainted": len(result["keys"])})
