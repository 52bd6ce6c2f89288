"""Start the studio: open the back end (the local stack, or a deployed one), serve the app with uvicorn."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from tryon.studio.backend import StackBackend


@contextlib.contextmanager
def open_backend(
    stack: str | None, models: list[str], *, region: str = "", profile: str = ""
) -> Iterator[StackBackend]:
    """A deployed stack through the user's own credentials, or the local stack (tiny or ``models``)."""
    if stack:
        from tryon.cli.sessions import session as aws_session

        session = aws_session(region, profile)
        yield StackBackend(session.client, stack, label=f"stack {stack} ({session.region_name})")
        return
    from tryon.studio.local_stack import open_local

    with open_local(models) as backend:
        yield backend


def serve(*, stack: str | None, models: list[str], host: str, port: int, region: str = "", profile: str = "",
          on_status: Callable[[str], None] = print) -> None:  # fmt: skip
    """Serve until interrupted."""
    import uvicorn

    from tryon.studio.app import create_app

    if not stack:  # a deployed stack is found in a second; a failure is then its one error line
        on_status("starting the local stack and loading the models")
    with open_backend(stack, models, region=region, profile=profile) as backend:
        app: Any = create_app(backend)
        on_status(f"tryon studio on {backend.label}: open http://{host}:{port}/ (Ctrl-C stops it)")
        uvicorn.run(app, host=host, port=port, log_level="warning")
