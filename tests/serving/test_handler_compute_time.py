"""Every endpoint's answer carries compute_seconds: its timed work, without the wait for another caller."""

from __future__ import annotations

import json
import threading
import time

import pytest
from PIL import Image
from support.images import b64

from tryon.core.contract import COMPUTE_SECONDS, WAITING_PHASES

pytestmark = pytest.mark.slow
HOLD_S = 0.4


#: endpoint kind -> (the fixture of its loaded tiny model, a request's fields besides the image)
CASES = {
    "clipseg": ("clipseg_model", {"query": "a shirt"}),
    "sd_upscale": ("upscale_model", {"prompt": "a dress", "steps": 2, "seed": 3}),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_compute_seconds_is_the_work_not_the_queue(kind, request):
    import importlib

    handler = importlib.import_module(f"tryon.handlers.{kind}")
    fixture, fields = CASES[kind]
    model = request.getfixturevalue(fixture)
    body = json.dumps({**fields, "image": b64(Image.new("RGB", (40, 32), (200, 40, 90)))})
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
