"""Intra-op CPU threads that fit what a handler runs and the cores its worker has.

Torch's default (one thread per physical core of the whole machine) is wrong both ways on
an endpoint: small models lose time to thread start-up and synchronisation on every tiny
op (the tiny x4 upscaler on 225 tiles took 44.9 s with the default on 2 cores, 14.4 s on
one thread), and a container limited by a CPU quota (serverless) or sharing the machine
with other model-server workers oversubscribes the cores. It is never too low for a
dedicated machine, though, so it stays the upper bound. Each handler runs inference in
``with fitted(module, device):``, which sets the count chosen by :func:`choose` for that
call and restores the previous one. ``TRYON_TORCH_THREADS`` overrides the choice.
The rule and its measurements: docs/benchmarks.md#handler-threads.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Environment variable that fixes the intra-op thread count of every handler.
THREADS_ENV = "TRYON_TORCH_THREADS"
#: Models below this many parameters run on one thread: their ops are too small to share.
SMALL_MODEL_PARAMS = 20_000_000
#: cgroup v2 CPU quota of the container (``max 100000`` when unlimited).
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def _cgroup_cores(path: Path | None = None) -> int | None:
    """Whole cores the cgroup quota allows (rounded up), or None without a quota."""
    try:
        quota, period = (path or CGROUP_CPU_MAX).read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def available_cores() -> int:
    """CPUs this worker may use: affinity and cgroup quota, shared among the model-server workers.

    ``SAGEMAKER_MODEL_SERVER_WORKERS`` is how many copies of the model the serving toolkit
    runs side by side; each gets its share.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = _cgroup_cores()
    if quota is not None:
        cores = min(cores, quota)
    workers = int(os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS") or 1)
    return max(1, cores // max(1, workers))


def parameter_count(module: Any) -> int:
    """Parameters of a torch module."""
    return sum(p.numel() for p in module.parameters())


def choose(params: int, cores: int | None = None, cap: int | None = None) -> int:
    """Intra-op threads for a CPU model of ``params`` parameters: 1 if small, else every available core.

    ``cap`` bounds the second case: torch's own count (its default is the machine's physical
    cores, or ``OMP_NUM_THREADS``), so hyper-threads are not counted as cores.
    """
    override = os.environ.get(THREADS_ENV)
    if override:
        try:
            value = int(override)
        except ValueError:
            raise RuntimeError(f"{THREADS_ENV} must be a positive integer, got {override!r}") from None
        if value < 1:
            raise RuntimeError(f"{THREADS_ENV} must be a positive integer, got {override!r}")
        return value
    if params < SMALL_MODEL_PARAMS:
        return 1
    available = available_cores() if cores is None else cores
    return available if cap is None else max(1, min(available, cap))


@contextmanager
def fitted(module: Any, device: Any) -> Iterator[int]:
    """Run the block with the thread count chosen for ``module`` on ``device``; yields the count.

    On CUDA the model runs on the GPU and the CPU threads are left as they are.
    """
    import torch

    before = torch.get_num_threads()
    if getattr(device, "type", str(device)) != "cpu":
        yield before
        return
    threads = choose(parameter_count(module), cap=before)
    if threads != before:
        torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        if threads != before:
            torch.set_num_threads(before)
