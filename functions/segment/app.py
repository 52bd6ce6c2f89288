"""Segment: the CLIPSeg endpoint turns the text query into mask.png in S3.

Thin handler: the logic lives in :mod:`tryon.workflow.steps` (shipped in the shared layer).
"""

from __future__ import annotations

from tryon.workflow import steps
from tryon.workflow.entry import lambda_handler

handler = lambda_handler(steps.segment, counts=lambda result: {"EmptyMasks": int(result["empty"])})
