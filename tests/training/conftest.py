"""Fixtures of the training tests: every module trains on one torch thread (see tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread_per_module(one_torch_thread):
    """Tiny models gain nothing from threads: every training module runs on one."""
