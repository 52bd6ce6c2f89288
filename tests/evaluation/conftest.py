"""Fixtures of the evaluation tests."""

from __future__ import annotations

import pytest
from support.evaluation import metric_models


@pytest.fixture(scope="session")
def tiny_metric_models(tmp_path_factory):
    """Tiny random metric networks, loaded through the same code as real weights (--metric-models)."""
    return metric_models(tmp_path_factory.mktemp("metric-models"))
