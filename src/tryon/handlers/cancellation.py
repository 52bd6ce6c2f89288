"""Abandoning model work nobody waits for any more (standard library only).

The local endpoint server gives each invocation a :class:`CancelToken`: it is cancelled when
the invocation time limit passes or the client disconnects. The handler functions run with
the token bound to their thread (:func:`bound`); long loops consult it through
:func:`raise_if_cancelled`, and diffusers pipelines through their step callbacks
(:func:`step_end_callback` for ``callback_on_step_end``, :func:`legacy_step_callback` for the
older ``callback`` argument). Outside the server no token is bound and the checks cost nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any


class Cancelled(Exception):
    """The invocation was abandoned (time limit passed, or the client went away)."""


class CancelToken:
    """A thread-safe "stop" flag with a reason, and an optional monotonic deadline."""

    def __init__(self, deadline: float | None = None) -> None:
        self.deadline = deadline
        self._reason: str | None = None
        self._lock = threading.Lock()

    def cancel(self, reason: str) -> None:
        """Ask the work to stop; the first reason given is kept."""
        with self._lock:
            if self._reason is None:
                self._reason = reason

    @property
    def reason(self) -> str | None:
        """Why the work was cancelled (``None`` while it may go on)."""
        if self._reason is None and self.deadline is not None and time.monotonic() >= self.deadline:
            self.cancel("the invocation time limit passed")
        return self._reason

    @property
    def cancelled(self) -> bool:
        """Whether the work should stop."""
        return self.reason is not None

    def raise_if_cancelled(self) -> None:
        """Raise :class:`Cancelled` if the work should stop."""
        reason = self.reason
        if reason is not None:
            raise Cancelled(reason)


class RunningWork:
    """Handler calls running in worker threads, so that whoever stops the server can end them.

    A worker thread still inside torch when the interpreter exits aborts the process
    ("terminate called without an active exception", exit 134): an invocation abandoned at its
    time limit goes on until its next cancellation check, which may come after the command
    that started it has returned. :meth:`stop` cancels every running call and waits for the
    threads to leave the handler.
    """

    def __init__(self) -> None:
        self._tokens: dict[int, CancelToken] = {}
        self._done = threading.Condition()

    def run(self, token: CancelToken, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` in this thread with ``token`` bound (skipped if already cancelled), tracked."""
        token.raise_if_cancelled()
        key = id(token)
        with self._done:
            self._tokens[key] = token
        try:
            with bound(token):
                return fn(*args)
        finally:
            with self._done:
                self._tokens.pop(key, None)
                self._done.notify_all()

    @property
    def running(self) -> int:
        """How many calls are running now."""
        with self._done:
            return len(self._tokens)

    def stop(self, reason: str, timeout: float) -> bool:
        """Cancel every running call and wait up to ``timeout`` s for them to return; True if they did."""
        with self._done:
            for token in self._tokens.values():
                token.cancel(reason)
            return self._done.wait_for(lambda: not self._tokens, timeout)


_current: ContextVar[CancelToken | None] = ContextVar("tryon_cancel_token", default=None)


@contextmanager
def bound(token: CancelToken | None) -> Iterator[None]:
    """Make ``token`` the current one (in this thread / context) for the ``with`` body."""
    reset = _current.set(token)
    try:
        yield
    finally:
        _current.reset(reset)


def current() -> CancelToken | None:
    """The token bound to this thread, if any."""
    return _current.get()


def raise_if_cancelled() -> None:
    """Raise :class:`Cancelled` if the current invocation was abandoned; a no-op outside the server."""
    token = _current.get()
    if token is not None:
        token.raise_if_cancelled()


def step_end_callback(pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
    """diffusers ``callback_on_step_end``: stop the denoising loop of an abandoned invocation."""
    raise_if_cancelled()
    return callback_kwargs


def legacy_step_callback(step: int, timestep: Any, latents: Any) -> None:
    """diffusers' older ``callback`` argument (e.g. the x4 upscaler): same check per step."""
    raise_if_cancelled()
