"""Moderate: the job's images through Amazon Rekognition DetectModerationLabels.

ModerateInputs (the photo and the packshot, before any model runs) and ModerateResults (every
result image, before Finalize publishes it; refused ones go to the quarantine prefix). Thin
handler: the logic lives in :mod:`tryon.workflow.moderate` (shipped in the shared layer).
"""

from __future__ import annotations

from tryon.workflow import moderate
from tryon.workflow.entry import lambda_handler

handler = lambda_handler(
    moderate.moderate,
    counts=lambda result: {"ModerationStepsPassed": 1},
)
