"""Session-wide fixtures: tiny checkpoints are built once per test session."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from support.paths import REPO

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tiny models are fastest on one thread, and OpenMP spin-waiting starves the Python threads
# of the local workflow (moto, the ASGI server) on a 2-core machine. Set before torch loads.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
# Fake credentials so no test can reach a real account.
for _var, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
}.items():
    os.environ[_var] = _value

REPO_ROOT = REPO
#: The permission check: every AWS call of the Lambda functions, against the SAM-translated policies.
pytest_plugins = ["support.iam_check"]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    """name -> folder of each tiny checkpoint (clipseg, sd-inpaint, sd-x4-upscaler, lora-a, lora-b)."""
    from tryon.weights.tiny import ensure_tiny_models

    return ensure_tiny_models(REPO_ROOT / ".cache" / "tiny-models")


@pytest.fixture(scope="session")
def tiny_metric_models(tmp_path_factory) -> Path:
    """Tiny random CLIP, DINOv2 and Inception networks in the ``--metric-models`` layout, built once
    per session and loaded through the same code as real weights (evaluation, validation, the docs)."""
    from support.evaluation import metric_models

    return metric_models(tmp_path_factory.mktemp("metric-models"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module: tiny models gain nothing from threads, and on a shared
    2-core machine OpenMP spinning across busy cores makes them many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def probe_handler():
    """``probe_handler(kind, module_name, model_fn=..., input_fn=..., predict_fn=...)``: a context
    manager serving test functions as endpoint kind ``kind`` (JSON ``output_fn``), for server tests."""
    import sys
    import types
    from contextlib import contextmanager

    from tryon.handlers import HANDLER_MODULES
    from tryon.handlers.common import json_response

    @contextmanager
    def register(kind, module_name, **functions):
        module = types.ModuleType(module_name)
        module.output_fn = json_response
        for name, fn in functions.items():
            setattr(module, name, fn)
        with pytest.MonkeyPatch.context() as mp:
            mp.setitem(sys.modules, module_name, module)
            mp.setitem(HANDLER_MODULES, kind, module_name)
            yield module

    return register


@pytest.fixture
def moto_s3(monkeypatch):
    """``moto_s3(*buckets, versioned=buckets, env={})``: buckets on moto S3 (those in ``versioned``
    versioned), ``env`` set for the test, the workflow's cached clients reset; returns an S3 client."""
    import boto3
    from moto import mock_aws

    from tryon.workflow import clients

    with mock_aws():
        clients.reset_clients()

        def make(*buckets, versioned=None, env=None):
            for key, value in (env or {}).items():
                monkeypatch.setenv(key, value)
            client = boto3.client("s3")
            for bucket in buckets:
                client.create_bucket(Bucket=bucket)
                if versioned is None or bucket in versioned:
                    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
            return client

        yield make
    clients.reset_clients()


@pytest.fixture(autouse=True)
def _root_logging_restored():
    """A command run in-process (``tryon serve`` calls ``logging.basicConfig(force=True)``) leaves no
    handler behind on a stream that pytest closes with the test; a later log line would print
    ``--- Logging error ---`` with a traceback into another test's output."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
