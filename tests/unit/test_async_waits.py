"""The asynchronous waits Prepare computes (job.async_waits): heartbeat strictly below the time-out."""

from __future__ import annotations

import pytest

from tryon.core import timeouts
from tryon.workflow.async_calls import waits
from tryon.workflow.settings import Settings

#: (invocation, grace) at the template's minima, the defaults, the tests' fast values and the maxima.
WAIT_PARAMETERS = [
    (1, 1),
    (2, 1),
    (timeouts.ASYNC_INVOCATION_DEFAULT_SECONDS, timeouts.ASYNC_GRACE_DEFAULT_SECONDS),
    (timeouts.ASYNC_INVOCATION_MAX_SECONDS, timeouts.ASYNC_GRACE_MAX_SECONDS),
]


@pytest.mark.parametrize(("invocation", "grace"), WAIT_PARAMETERS)
@pytest.mark.parametrize("num_images", range(1, timeouts.MAX_IMAGES + 1))
def test_every_step_heartbeat_is_strictly_below_its_timeout(invocation, grace, num_images):
    """Issue 17 item 2: the States Language requires HeartbeatSeconds < TimeoutSeconds."""
    settings = Settings.from_env(
        {
            "TRYON_ASYNC_INVOCATION_SECONDS": str(invocation),
            "TRYON_ASYNC_GRACE_SECONDS": str(grace),
            "TRYON_MAX_INPUT_BYTES": "1",
            "TRYON_MAX_INPUT_PIXELS": "1",
        }
    )
    computed = waits(settings, num_images)
    assert set(computed) == set(timeouts.ASYNC_STEPS)
    for step, wait in computed.items():
        heartbeat, timeout = wait["heartbeat_seconds"], wait["timeout_seconds"]
        assert isinstance(heartbeat, int) and isinstance(timeout, int)
        assert 0 < heartbeat < timeout, (step, wait)
        # one answer may take the invocation plus the grace; every request of the step fits
        assert heartbeat >= invocation + grace
        assert timeout >= timeouts.async_requests(step, num_images) * heartbeat


def test_only_the_upscaler_waits_per_image():
    four = timeouts.async_waits(900, 600, 4)
    one = timeouts.async_waits(900, 600, 1)
    assert four["segment"] == one["segment"] and four["inpaint"] == one["inpaint"]
    assert four["upscale"]["timeout_seconds"] == one["upscale"]["timeout_seconds"] + 3 * 1500


def test_waits_refuse_what_step_functions_would():
    with pytest.raises(ValueError, match="must be positive"):
        timeouts.async_wait(0, 600, 1)


def test_the_longest_job_grows_with_the_parameters():
    assert timeouts.longest_job_seconds(1, 1, 1) < timeouts.longest_job_seconds()
    assert timeouts.EXECUTION_TIMEOUT_SECONDS % 3600 == 0
    assert timeouts.longest_job_seconds() <= timeouts.EXECUTION_TIMEOUT_SECONDS
