"""Intra-op threads per handler (tryon.handlers.threads): the rule, its inputs, and that handlers apply it."""

from __future__ import annotations

import base64
import io
import json

import pytest
import torch
from PIL import Image

from tryon.handlers import threads


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    monkeypatch.delenv("SAGEMAKER_MODEL_SERVER_WORKERS", raising=False)


def test_small_models_get_one_thread_large_ones_every_core():
    assert threads.choose(100_000, cores=8) == 1
    assert threads.choose(threads.SMALL_MODEL_PARAMS - 1, cores=8) == 1
    assert threads.choose(150_000_000, cores=8) == 8
    assert threads.choose(150_000_000) == threads.available_cores()
    # never more than torch runs with (physical cores, OMP_NUM_THREADS): no hyper-thread oversubscription
    assert threads.choose(150_000_000, cores=8, cap=4) == 4
    assert threads.choose(150_000_000, cores=2, cap=36) == 2  # a 2-CPU quota on a 72-thread host
    assert threads.choose(100_000, cores=8, cap=4) == 1


def test_env_override_and_its_errors(monkeypatch):
    monkeypatch.setenv(threads.THREADS_ENV, "3")
    assert threads.choose(100, cores=8) == 3 and threads.choose(10**9, cores=8) == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(threads.THREADS_ENV, bad)
        with pytest.raises(RuntimeError, match=f"{threads.THREADS_ENV} must be a positive integer"):
            threads.choose(10**9)


def test_cgroup_quota_and_model_server_workers_share_the_cores(tmp_path, monkeypatch):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("max 100000\n")
    assert threads._cgroup_cores(cpu_max) is None
    cpu_max.write_text("150000 100000\n")  # 1.5 CPUs of quota: 2 threads may run
    assert threads._cgroup_cores(cpu_max) == 2
    assert threads._cgroup_cores(tmp_path / "missing") is None
    monkeypatch.setattr(threads, "CGROUP_CPU_MAX", cpu_max)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda _pid: set(range(16)))
    cpu_max.write_text("400000 100000\n")
    assert threads.available_cores() == 4
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_WORKERS", "2")
    assert threads.available_cores() == 2
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_WORKERS", "8")
    assert threads.available_cores() == 1


def test_fitted_sets_the_choice_for_the_block_and_restores():
    small = torch.nn.Linear(4, 4)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with threads.fitted(small, torch.device("cpu")) as chosen:
            assert chosen == 1 and torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with threads.fitted(small, torch.device("cuda")) as chosen:  # GPU: CPU threads left alone
            assert chosen == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_handler_runs_inference_on_the_chosen_threads(tiny_models, monkeypatch):
    """CLIPSeg's forward sees the chosen count, whatever the process had before, and the env override."""
    from tryon.handlers import clipseg

    model = clipseg.model_fn(str(tiny_models["clipseg"]))
    seen: list[int] = []
    model.model.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
    buf = io.BytesIO()
    Image.new("RGB", (48, 40), (120, 30, 200)).save(buf, format="PNG")
    body = json.dumps({"image": base64.b64encode(buf.getvalue()).decode(), "query": "a shirt"})

    def run() -> None:
        clipseg.predict_fn(clipseg.input_fn(body, "application/json"), model)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run()
        monkeypatch.setenv(threads.THREADS_ENV, "3")
        run()
        assert seen == [1, 3]  # the tiny model: one thread; then the operator's override
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
