"""The local harness's per-thread Lambda environment (tryon.local.lambda_env)."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from tryon.local.lambda_env import lambda_environment

KEY = "TRYON_LAMBDA_ENV_TEST"


def test_each_thread_sees_only_its_own_function_environment():
    seen: dict[str, str | None] = {}
    inside = threading.Barrier(2)

    def invocation(name: str) -> None:
        with lambda_environment({KEY: name}):
            inside.wait()  # both overlays are active at the same moment
            seen[name] = os.environ.get(KEY)
            inside.wait()

    threads = [threading.Thread(target=invocation, args=(n,)) for n in ("prepare", "segment")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"prepare": "prepare", "segment": "segment"}
    assert KEY not in os.environ and os.getenv(KEY) is None


def test_threads_started_inside_an_invocation_inherit_its_environment():
    with lambda_environment({KEY: "batch-validate"}), ThreadPoolExecutor(max_workers=3) as pool:
        assert set(pool.map(lambda _: os.getenv(KEY), range(6))) == {"batch-validate"}
    outside = threading.Thread(target=lambda: None)
    outside.start()
    outside.join()
    assert os.getenv(KEY) is None


def test_nested_overlays_stack_and_unset_keys_reach_the_process_environment(monkeypatch):
    monkeypatch.setenv("TRYON_LAMBDA_ENV_BASE", "base")
    with lambda_environment({KEY: "outer"}):
        with lambda_environment({"TRYON_LAMBDA_ENV_OTHER": "inner"}):
            assert os.environ[KEY] == "outer" and os.environ["TRYON_LAMBDA_ENV_OTHER"] == "inner"
            assert os.environ["TRYON_LAMBDA_ENV_BASE"] == "base"
        assert "TRYON_LAMBDA_ENV_OTHER" not in os.environ
        os.environ[KEY] = "changed by the handler"  # stays in the overlay
        assert os.environ[KEY] == "changed by the handler"
    assert KEY not in os.environ
