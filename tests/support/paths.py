"""Where the repository's files are, for tests in any folder."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
TRYON_ASL = REPO / "statemachine" / "tryon.asl.json"
BATCH_ASL = REPO / "statemachine" / "batch.asl.json"
