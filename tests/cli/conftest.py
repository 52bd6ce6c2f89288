"""Fixtures for the command-line tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def restore_environment():
    """A command run in-process sets process-wide variables as a real ``tryon`` process does
    (``TRYON_PROGRESS_BARS``, the libraries' verbosity): restore the environment after each test,
    so one test's command never changes what the next test's subprocess prints. The same
    ``os.environ`` object is kept (botocore sessions hold on to it)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
