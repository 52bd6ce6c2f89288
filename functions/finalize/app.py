"""Finalize: manifest.json and preview.jpg (input | mask overlay | result) in S3.

Thin handler: the logic lives in :mod:`tryon.workflow.finalize` (shipped in the shared layer).
"""

from __future__ import annotations

from tryon.workflow import finalize
from tryon.workflow.entry import lambda_handler

handler = lambda_handler(finalize.finalize, counts=lambda result: {f"Jobs-{result['status']}": 1})
