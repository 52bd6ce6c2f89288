"""Model artefact commands: tiny checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tryon.cli import app, fail


@app.command("tiny-models")
def tiny_models(
    out: Annotated[Path, typer.Option(help="Folder to write the checkpoints to.")] = Path(
        ".cache/tiny-models"
    ),
    force: Annotated[bool, typer.Option(help="Rebuild even if present.")] = False,
) -> None:
    """Build deterministic tiny random checkpoints: CLIPSeg, SD inpainting, the x4 upscaler, two LoRAs,
    SDXL inpainting and its refiner, an IP-Adapter, and SD inpainting packaged with it."""
    from tryon.weights.tiny import ensure_tiny_models

    if out.exists() and not out.is_dir():
        raise fail(f"--out: {out} is a file; give a folder to write the checkpoints to")
    for name, path in ensure_tiny_models(out, force=force).items():
        typer.echo(f"{name}: {path}")
