"""Every endpoint's answer carries compute_seconds: its timed work, without the wait for another caller."""

from __future__ import annotations

import json
import threading
import time

import pytest
from PIL import Image

from tryon.core.contract import COMPUTE_SECONDS, WAITING_PHASES
from tryon.core.imaging import b64encode, encode_png

pytestmark = pytest.mark.slow
HOLD_S = 0.4


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread):
    """Tiny models: one intra-op thread (see conftest)."""


def _photo() -> str:
    return b64encode(encode_png(Image.new("RGB", (40, 32), (200, 40, 90))))


CASES = {
    "clipseg": ("clipseg", {"image": None, "query": "a shirt"}),
    "sd_upscale": ("sd-x4-upscaler", {"image": None, "prompt": "a dress", "steps": 2, "seed": 3}),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_compute_seconds_is_the_work_not_the_queue(kind, tiny_models):
    import importlib

    handler = importlib.import_module(f"tryon.handlers.{kind}")
    folder, fields = CASES[kind]
    model = handler.model_fn(str(tiny_models[folder]))
    body = json.dumps({**fields, "image": _photo()})
    model.lock.acquire()  # another request holds the model...
    releaser = threading.Timer(HOLD_S, model.lock.release)
    releaser.start()
    try:
        answer = json.loads(
            handler.output_fn(
                handler.predict_fn(handler.input_fn(body, "application/json"), model), "application/json"
            )
        )
    finally:
        releaser.join()
    timings = answer["timings_ms"]
    assert timings["queue"] >= HOLD_S * 1000 * 0.9  # ...so this one waited in the queue phase
    work = sum(ms for phase, ms in timings.items() if phase not in WAITING_PHASES) / 1000
    assert work > 0 and answer[COMPUTE_SECONDS] == pytest.approx(work, abs=0.002)
    assert answer[COMPUTE_SECONDS] < sum(timings.values()) / 1000 - HOLD_S * 0.9
    # the same request without contention waits (almost) nothing
    start = time.perf_counter()
    again = handler.predict_fn(handler.input_fn(body, "application/json"), model)
    assert again["timings_ms"]["queue"] < 50 and again[COMPUTE_SECONDS] <= time.perf_counter() - start + 0.002
