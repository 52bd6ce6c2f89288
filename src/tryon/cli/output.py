"""What the command line shows: answers on stdout, everything else on stderr, internals only when asked.

A command's stdout carries its answer (the human lines, or with ``--json`` exactly one JSON
object, on success and on failure); logs, progress and the one ``error:`` line go to stderr.
The libraries' own chatter (moto's interpreter notices and state dumps, transformers' and
diffusers' warnings and loading progress bars, Python warnings with their source lines) is
shown only with ``tryon --verbose`` or ``TRYON_DEBUG=1``; a Python warning meant for the user
reads as one ``warning:`` line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from typing import Any

import typer

#: Environment variable that turns on tracebacks and the libraries' logs (``1``, ``true``, ``yes``).
DEBUG_ENV = "TRYON_DEBUG"

_state: dict[str, Any] = {"verbose": False, "json": False, "answered": False}


def debug_enabled() -> bool:
    """Whether ``TRYON_DEBUG`` asks for tracebacks and the libraries' own output."""
    return os.environ.get(DEBUG_ENV, "").lower() in {"1", "true", "yes"}


def verbose() -> bool:
    """Whether this command shows logs, library warnings and progress bars (``--verbose`` or debug)."""
    return bool(_state["verbose"]) or debug_enabled()


def _one_line_warning(message: Any, category: type[Warning], *_args: Any, **_kwargs: Any) -> None:
    """``warnings.showwarning`` for users: ``warning: <message>`` without the file and source line."""
    text = " ".join(str(message).split())
    sys.stderr.write(f"warning: {text}\n")


class _Stderr(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is at the time (tests swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


_HANDLER = _Stderr()
_HANDLER.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
_QUIET = logging.NullHandler()


def configure(*, verbose_output: bool, json_output: bool) -> None:
    """Set up the process for one command (idempotent; a later call replaces an earlier one).

    Quiet (the default): nothing reaches the root logger's output (so neither moto's notices
    nor its interpreter's state dumps, nor the local server's handler faults, which the
    failure record describes); transformers and diffusers log errors only (the model handlers
    show loading and diffusion bars only for ``tryon run --progress``);
    Python warnings read as one line. Verbose: INFO logs on stderr, the libraries as they are.
    """
    _state.update(verbose=verbose_output, json=json_output, answered=False)
    show = verbose()
    root = logging.getLogger()
    for handler in (_HANDLER, _QUIET):
        if handler in root.handlers:
            root.removeHandler(handler)
    if show:
        root.addHandler(_HANDLER)
        root.setLevel(logging.INFO)
        logging.getLogger("moto").setLevel(logging.NOTSET)
        warnings.showwarning = _default_showwarning
        return
    root.addHandler(_QUIET)  # a root handler: Python's last-resort stderr handler never fires
    logging.getLogger("moto").setLevel(logging.CRITICAL + 1)
    for library in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):
        os.environ.setdefault(library, "error")
    warnings.showwarning = _one_line_warning


_default_showwarning = warnings.showwarning


def function_log_level() -> str:
    """The local Lambda functions' log level: their structured logs show with ``--verbose`` only."""
    return "INFO" if verbose() else "CRITICAL"


def json_requested() -> bool:
    """Whether the running command was asked for ``--json``."""
    return bool(_state["json"])


def emit_json(answer: Any, indent: int | None = None) -> None:
    """Print the command's one JSON answer on stdout (at most once per command)."""
    _state["answered"] = True
    typer.echo(json.dumps(answer, indent=indent))


def emit_json_error(message: str, code: int) -> None:
    """With ``--json`` and no answer printed yet: the failure as the one JSON object on stdout."""
    if _state["json"] and not _state["answered"]:
        emit_json({"status": "error", "error": message, "exit_code": code})
