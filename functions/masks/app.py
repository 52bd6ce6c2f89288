"""Masks: every garment's final mask (box, painted mask, keep-regions, an outfit's overlap rule) in S3.

Thin handler: the logic lives in :mod:`tryon.workflow.mask_compose` (shipped in the shared layer).
"""

from __future__ import annotations

from tryon.workflow import mask_compose
from tryon.workflow.entry import lambda_handler

handler = lambda_handler(
    mask_compose.compose, counts=lambda result: {"MasksComposed": len(result["garments"])}
)
