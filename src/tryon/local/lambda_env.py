"""Each emulated Lambda invocation sees its own function's environment, even when several run at once.

On AWS every invocation runs in its own sandbox with the environment its template gives it.
In-process, ``os.environ`` is one per process, so the harness would have to run invocations
one at a time, and that hides exactly the races (two executions of the same job, a batch's
parallel rows) the stack must survive. :func:`lambda_environment` gives the calling thread an
overlay over ``os.environ`` instead: reads and writes of the overlaid keys in that thread see
the function's values; every other thread sees the process environment. A thread that Lambda
code starts (a ``ThreadPoolExecutor`` worker, say) inherits the overlay of the thread that
created it, as every thread of a sandbox shares its environment.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

_install_lock = threading.Lock()


class ThreadOverlayEnviron(MutableMapping[str, str]):
    """``os.environ`` with a per-thread overlay of key/value pairs."""

    def __init__(self, base: MutableMapping[str, str]) -> None:
        self.base = base
        self._local = threading.local()

    def _overlay(self) -> dict[str, str] | None:
        return getattr(self._local, "values", None)

    def __getitem__(self, key: str) -> str:
        overlay = self._overlay()
        if overlay is not None and key in overlay:
            return overlay[key]
        return self.base[key]

    def __setitem__(self, key: str, value: str) -> None:
        overlay = self._overlay()
        if overlay is not None and key in overlay:
            overlay[key] = value
        else:
            self.base[key] = value

    def __delitem__(self, key: str) -> None:
        overlay = self._overlay()
        if overlay is not None and key in overlay:
            del overlay[key]
        else:
            del self.base[key]

    def __iter__(self) -> Iterator[str]:
        overlay = self._overlay() or {}
        yield from overlay
        yield from (k for k in self.base if k not in overlay)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def copy(self) -> dict[str, str]:
        """A plain dict of what this thread sees (``os.environ.copy()``)."""
        return dict(self)

    @contextmanager
    def overlaid(self, values: Mapping[str, str]) -> Iterator[None]:
        """Overlay ``values`` for the calling thread (nested overlays stack)."""
        previous = self._overlay()
        self._local.values = {**(previous or {}), **values}
        try:
            yield
        finally:
            self._local.values = previous


def install() -> ThreadOverlayEnviron:
    """Install the overlay now (idempotent), before any botocore session of the local stack exists.

    A botocore session keeps the ``os.environ`` object it saw when it was made: one made before
    the overlay would never see a function's own variables (its region, for one).
    """
    return _installed()


def _inherit_overlays() -> None:
    """Threads take the creating thread's overlay (set in ``__init__``, applied as they start)."""
    original_init = threading.Thread.__init__
    original_bootstrap = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]

    def init(self: threading.Thread, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        env = os.environ
        self._tryon_env_overlay = env._overlay() if isinstance(env, ThreadOverlayEnviron) else None  # type: ignore[attr-defined]

    def bootstrap(self: threading.Thread) -> None:
        overlay = getattr(self, "_tryon_env_overlay", None)
        env = os.environ
        if overlay is not None and isinstance(env, ThreadOverlayEnviron):
            env._local.values = dict(overlay)
        original_bootstrap(self)

    threading.Thread.__init__ = init  # type: ignore[method-assign]
    threading.Thread._bootstrap_inner = bootstrap  # type: ignore[attr-defined]


def _installed() -> ThreadOverlayEnviron:
    """Swap ``os.environ`` for an overlay-aware mapping once per process (``os.getenv`` follows)."""
    with _install_lock:
        if not isinstance(os.environ, ThreadOverlayEnviron):
            _inherit_overlays()
            os.environ = ThreadOverlayEnviron(os.environ)  # type: ignore[assignment]  # noqa: B003 (wraps it)
        return os.environ  # type: ignore[return-value]


@contextmanager
def lambda_environment(values: Mapping[str, str]) -> Iterator[None]:
    """Run the body with ``values`` as the calling thread's environment overrides."""
    with _installed().overlaid(values):
        yield
