"""Child processes the tests stop with Ctrl-C."""

from __future__ import annotations

import signal


def ctrl_c_reaches_it() -> None:
    """``preexec_fn`` of a child a test stops with SIGINT: the default action, as in a terminal.

    A test run started in the background by a non-interactive shell (``make test &``, some CI
    runners) ignores SIGINT, and a child inherits that: Python then installs no KeyboardInterrupt
    handler and the server never stops.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
