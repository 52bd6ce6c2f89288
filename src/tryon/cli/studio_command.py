"""``tryon studio``: the try-on studio, a web page on 127.0.0.1 (docs/studio.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from tryon.cli import app, fail
from tryon.cli.sessions import Profile, Region

LOOPBACK = "127.0.0.1"
#: What ``--host`` other than the loopback address prints before serving.
NO_AUTH_WARNING = (
    "warning: the studio has no authentication: anyone who reaches {host}:{port} can run jobs with "
    "this machine's AWS credentials (or its local stack). Put it behind an authenticating proxy "
    '(docs/studio.md, "Serving beyond this machine") or keep the default --host 127.0.0.1.'
)


@app.command()
def studio(
    stack: Annotated[
        str | None,
        typer.Option("--stack", help="A deployed stack (your AWS credentials); default: the local stack."),
    ] = None,
    models: Annotated[
        list[str],
        typer.Option(help="KIND=DIR|HUB-ID for the local stack's models (default: the tiny ones)."),
    ] = [],  # noqa: B006  (typer reads list defaults, never mutates them)
    host: Annotated[
        str, typer.Option(help="Address to bind; anything but 127.0.0.1 is unauthenticated.")
    ] = LOOPBACK,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 7860,
    region: Region = "",
    profile: Profile = "",
) -> None:
    """The try-on studio: try garments on photos, paint masks, compare adapters, review batches and jobs."""
    try:
        from tryon.studio import launch
    except ImportError as exc:  # the extra is missing
        raise fail(f"{exc}: install the studio extra, pip install 'tryon[studio]'") from None

    if stack and models:
        raise fail("--models is for the local stack; a deployed stack serves its own models")
    if not 1 <= port <= 65535:
        raise fail(f"--port: must be 1..65535, got {port}")
    if host != LOOPBACK:
        typer.secho(NO_AUTH_WARNING.format(host=host, port=port), err=True, fg=typer.colors.YELLOW)
    launch.serve(stack=stack, models=models, host=host, port=port, region=region, profile=profile,
                on_status=lambda message: typer.echo(message, err=True))  # fmt: skip
