"""The ``tryon`` command line (typer). Each command group lives in its own module."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="tryon",
    help="Event-driven virtual try-on: run the workflow locally, serve models, fine-tune, deploy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Event-driven virtual try-on: run the workflow locally, serve models, fine-tune, deploy."""


def main() -> None:
    """Console-script entry point."""
    from tryon.cli import models  # noqa: F401  (registers commands)

    app()
