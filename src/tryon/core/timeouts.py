"""Every time limit of the stack, in one table (light: standard library and :mod:`tryon.core` only).

A number here is written once; everything else follows from it or is checked against it:

- ``template.yaml``: each Lambda function's ``Timeout`` (:data:`FUNCTION_TIMEOUTS`);
- ``statemachine/tryon.asl.json``: each Lambda Task's ``TimeoutSeconds`` (its function's
  timeout plus :data:`TASK_MARGIN_SECONDS`) and the execution's ``TimeoutSeconds``
  (:data:`EXECUTION_TIMEOUT_SECONDS`, above the longest job: :func:`longest_job_seconds`);
- the asynchronous steps' ``HeartbeatSecondsPath`` / ``TimeoutSecondsPath``, which Prepare
  computes into ``job.async_waits`` (:func:`async_wait`; the heartbeat always strictly below
  the time-out, as the States Language requires);
- ``statemachine/batch.asl.json``: ValidateBatch, SummarizeBatch and RecordRefusal's
  ``TimeoutSeconds``, the batch row's (:data:`BATCH_ROW_TIMEOUT_SECONDS`, above the child
  execution's own limit, so a row never gives up on a child that may still finish) and the
  batch execution's (:data:`BATCH_EXECUTION_TIMEOUT_SECONDS`);
- the job claim's hold (:data:`CLAIM_SECONDS`: no execution outlives it);
- the endpoint client's read and connect time-outs (:data:`ENDPOINT_READ_SECONDS`), and the
  Rekognition client's (:data:`MODERATION_READ_SECONDS`).

``tests/static/test_timeouts.py`` reads the template and both state machines and fails when a
copy there disagrees with this table; ``docs/workflow.md`` (Time limits) lists the values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypedDict

from tryon.core.contract import SD_INPAINT
from tryon.core.mask_modes import MAX_GARMENTS

# ------------------------------------------------------------------ what AWS enforces (docs)
#: SageMaker answers a real-time or serverless ``InvokeEndpoint`` within 60 s or fails it.
REALTIME_INVOCATION_SECONDS = 60
#: ``InvocationTimeoutSeconds`` of an asynchronous request: SageMaker allows 1-3600 (default 900).
ASYNC_INVOCATION_MAX_SECONDS = 3600
#: The longest a Lambda function may run.
LAMBDA_MAX_SECONDS = 900

# ------------------------------------------------------------------ template parameters' bounds
#: ``AsyncInvocationTimeoutSeconds`` (default and maximum) and ``AsyncGraceSeconds`` (default and
#: maximum): the template's ranges are checked against these.
ASYNC_INVOCATION_DEFAULT_SECONDS = 900
ASYNC_GRACE_DEFAULT_SECONDS = 600
ASYNC_GRACE_MAX_SECONDS = 1800

# ------------------------------------------------------------------ endpoint calls
#: botocore's read time-out for ``InvokeEndpoint``: SageMaker's 60 s plus 10 s for the answer to
#: travel (``TRYON_ENDPOINT_READ_TIMEOUT`` raises it for slow CPU-only local runs).
ENDPOINT_READ_SECONDS = REALTIME_INVOCATION_SECONDS + 10
ENDPOINT_CONNECT_SECONDS = 5
#: What a step function does besides its endpoint calls (reading the state, small S3 calls).
STEP_OVERHEAD_SECONDS = 15
#: Images one job makes (the inpainting endpoint's ``num_images`` limit): the upscaler takes one
#: image a call, so the Upscale step makes up to this many calls.
MAX_IMAGES: int = SD_INPAINT["num_images"].limits["maximum"]


def endpoint_step_seconds(calls: int) -> int:
    """A real-time endpoint step's function timeout: ``calls`` endpoint calls one after the other."""
    return calls * (ENDPOINT_READ_SECONDS + ENDPOINT_CONNECT_SECONDS) + STEP_OVERHEAD_SECONDS


# ------------------------------------------------------------------ content moderation
#: Amazon Rekognition answers ``DetectModerationLabels`` in about a second: botocore's read and
#: connect time-outs and its attempts (standard mode retries throttling) before the state
#: machine retries the step (:data:`MODERATION_RETRY`).
MODERATION_READ_SECONDS = 30
MODERATION_CONNECT_SECONDS = 5
MODERATION_SDK_ATTEMPTS = 3
#: The Moderate function checks an input stage (photo and packshot) or every result image, one
#: Rekognition call after the other, each at worst all its attempts.
MODERATION_FUNCTION_SECONDS = 90

# ------------------------------------------------------------------ Lambda functions
#: Each function's ``Timeout`` in template.yaml, by logical id.
FUNCTION_TIMEOUTS: dict[str, int] = {
    "PrepareFunction": 30,
    # one CLIPSeg request per garment of an outfit
    "SegmentFunction": endpoint_step_seconds(MAX_GARMENTS),
    # an outfit's later pass inpaints each image of the previous pass: one request per image
    "InpaintFunction": endpoint_step_seconds(MAX_IMAGES),
    # composes up to MAX_GARMENTS masks of the largest photo (Pillow)
    "MasksFunction": 60,
    "UpscaleFunction": endpoint_step_seconds(MAX_IMAGES),
    "ModerateFunction": MODERATION_FUNCTION_SECONDS,
    "FinalizeFunction": 90,
    "RecordFailureFunction": 30,
    "SubmitAsyncFunction": 60,
    "CompleteAsyncFunction": 60,
    # a whole manifest (up to 10,000 rows) is validated or summarised in one invocation
    "ValidateBatchFunction": LAMBDA_MAX_SECONDS,
    "SummarizeBatchFunction": LAMBDA_MAX_SECONDS,
}
#: ``Globals.Function.Timeout`` (every function sets its own; this is the template's fallback).
GLOBAL_FUNCTION_TIMEOUT = 90

#: A Lambda Task waits this much longer than its function may run: the function's own time-out
#: (``Sandbox.Timedout``, with Lambda's message) always ends the Task first.
TASK_MARGIN_SECONDS = 30


def task_timeout(function: str) -> int:
    """``TimeoutSeconds`` of the Task state that invokes ``function`` (a logical id)."""
    return FUNCTION_TIMEOUTS[function] + TASK_MARGIN_SECONDS


#: Task states of each state machine -> the function they invoke (their ``Resource`` is that
#: function's ``${<Function>Arn}`` substitution).
TRYON_TASKS: dict[str, str] = {
    "Prepare": "PrepareFunction",
    "ModerateInputs": "ModerateFunction",
    "ModerateResults": "ModerateFunction",
    "Segment": "SegmentFunction",
    "Masks": "MasksFunction",
    "Inpaint": "InpaintFunction",
    "Upscale": "UpscaleFunction",
    "Finalize": "FinalizeFunction",
    "RecordFailure": "RecordFailureFunction",
}
BATCH_TASKS: dict[str, str] = {
    "ValidateBatch": "ValidateBatchFunction",
    "SummarizeBatch": "SummarizeBatchFunction",
    "RecordRefusal": "RecordFailureFunction",
}


# ------------------------------------------------------------------ retries
@dataclass(frozen=True)
class Retrier:
    """The numbers of one ``Retry`` entry of the ASL (its ``ErrorEquals`` is the ASL's to name)."""

    interval_seconds: int
    max_attempts: int
    backoff_rate: float
    max_delay_seconds: int
    #: ``JitterStrategy``: ``FULL``, or None for none (the ASL then leaves the field out)
    jitter: str | None = "FULL"

    def asl(self) -> dict[str, float | int | str]:
        """The entry's fields besides ``ErrorEquals``, as the ASL writes them."""
        fields: dict[str, float | int | str] = {
            "IntervalSeconds": self.interval_seconds,
            "MaxAttempts": self.max_attempts,
            "BackoffRate": self.backoff_rate,
            "MaxDelaySeconds": self.max_delay_seconds,
        }
        return fields | ({"JitterStrategy": self.jitter} if self.jitter else {})

    def delays(self) -> list[float]:
        """The waits before each retry, at their longest (``JitterStrategy: FULL`` only shortens them)."""
        return [
            min(self.interval_seconds * self.backoff_rate**k, self.max_delay_seconds)
            for k in range(self.max_attempts)
        ]


#: Endpoint faults (EndpointThrottled, ModelNotReady, EndpointUnavailable) on the endpoint steps.
ENDPOINT_RETRY = Retrier(interval_seconds=1, max_attempts=5, backoff_rate=2.0, max_delay_seconds=20)
#: ``ModerationUnavailable`` (Rekognition throttled or down past botocore's attempts) on the
#: ModerateInputs and ModerateResults steps: the endpoint steps' numbers.
MODERATION_RETRY = ENDPOINT_RETRY
#: Lambda service faults (``Lambda.ServiceException`` ...) on every Lambda Task.
LAMBDA_RETRY = Retrier(interval_seconds=1, max_attempts=3, backoff_rate=2.0, max_delay_seconds=10)
#: ``EndpointNoCapacity`` (an inference component scaled to zero) on the real-time endpoint steps:
#: no jitter, the waits add up to 16 minutes, three times the 5 minutes a scale-out from zero takes
#: as AWS describes it (docs/deploy.md#scale-to-zero-per-component).
NO_CAPACITY_RETRY = Retrier(
    interval_seconds=30, max_attempts=10, backoff_rate=1.5, max_delay_seconds=120, jitter=None
)
#: Attempts botocore makes of every AWS call of the functions but the endpoint calls (its
#: ``standard`` retry mode: throttling, 5xx and connection faults are retried with a jittered
#: exponential backoff of up to 20 s); endpoint calls make one, the state machine retries them.
SDK_ATTEMPTS = 3
#: Step Functions faults starting a batch row's child execution.
CHILD_START_RETRY = Retrier(interval_seconds=2, max_attempts=6, backoff_rate=2.0, max_delay_seconds=60)

# ------------------------------------------------------------------ asynchronous steps
#: The asynchronous steps (``<Step>Async`` in the ASL), and whether they send one request or one per image.
ASYNC_STEPS: dict[str, bool] = {"segment": False, "inpaint": False, "upscale": True}


class AsyncWait(TypedDict):
    """What the ASL's ``HeartbeatSecondsPath`` / ``TimeoutSecondsPath`` read for one step."""

    heartbeat_seconds: int
    timeout_seconds: int


def async_wait(invocation_seconds: int, grace_seconds: int, requests: int) -> AsyncWait:
    """The callback waits of an asynchronous step that sends ``requests`` requests.

    Heartbeat: one request's ``InvocationTimeoutSeconds`` plus the grace (template parameter
    ``AsyncGraceSeconds``: submitting, queueing, an instance starting from zero, the notification's
    way to CompleteAsync and its retries), the longest silence before the next answer; each
    answer renews it. Time-out: a heartbeat per request plus one grace more, so it is always
    strictly above the heartbeat (the States Language requires ``HeartbeatSeconds`` <
    ``TimeoutSeconds``; an equal pair may fail the state with ``States.Runtime``, which no Catch
    takes, and the execution would end without a failure record).
    """
    if invocation_seconds < 1 or grace_seconds < 1 or requests < 1:
        raise ValueError(
            f"invocation ({invocation_seconds} s), grace ({grace_seconds} s) and requests ({requests}) "
            "must be positive"
        )
    heartbeat = invocation_seconds + grace_seconds
    return {"heartbeat_seconds": heartbeat, "timeout_seconds": requests * heartbeat + grace_seconds}


def async_requests(step: str, num_images: int, *, segment_requests: int = 1, passes: int = 1) -> int:
    """Requests an asynchronous step sends at most: Segment one per garment that asks CLIPSeg,
    Inpaint one (or one per image on an outfit's later passes), the upscaler one per image."""
    if step == "segment":
        return max(1, segment_requests)
    if step == "inpaint":
        return max(1, num_images) if passes > 1 else 1
    return max(1, num_images) if ASYNC_STEPS[step] else 1


def async_waits(
    invocation_seconds: int,
    grace_seconds: int,
    num_images: int,
    *,
    segment_requests: int = 1,
    passes: int = 1,
) -> dict[str, AsyncWait]:
    """Every asynchronous step's waits for a job of ``num_images`` images (``job.async_waits``)."""
    return {
        step: async_wait(
            invocation_seconds,
            grace_seconds,
            async_requests(step, num_images, segment_requests=segment_requests, passes=passes),
        )
        for step in ASYNC_STEPS
    }


# ------------------------------------------------------------------ executions
def _task_worst_case(timeout_s: int, function_s: int, *, endpoint: bool, components: bool = False) -> float:
    """The longest a Task state can take, retries included.

    An endpoint fault (retried up to :data:`ENDPOINT_RETRY`'s attempts) may come at the end of a
    whole wait; a Lambda service fault, or an inference component without a copy
    (:data:`NO_CAPACITY_RETRY`, real-time steps only), comes within the function's own run.
    """
    delays = LAMBDA_RETRY.delays()
    long_attempts, short_attempts = 1, LAMBDA_RETRY.max_attempts
    if endpoint:
        delays += ENDPOINT_RETRY.delays()
        long_attempts += ENDPOINT_RETRY.max_attempts
    if components:
        delays += NO_CAPACITY_RETRY.delays()
        short_attempts += NO_CAPACITY_RETRY.max_attempts
    return long_attempts * timeout_s + short_attempts * function_s + sum(delays)


def longest_job_seconds(
    invocation_seconds: int = ASYNC_INVOCATION_MAX_SECONDS,
    grace_seconds: int = ASYNC_GRACE_MAX_SECONDS,
    num_images: int = MAX_IMAGES,
) -> int:
    """The longest a try-on execution can run before some Task's own time-out ends it.

    Prepare, both moderation checks, each endpoint step on its slower path (asynchronous at the
    template parameters' maxima for the most images and garments, or real-time; Inpaint once per
    garment), Masks, Finalize and the failure recorder, each with every retry its ``Retry`` allows.
    """
    waits = async_waits(
        invocation_seconds, grace_seconds, num_images, segment_requests=MAX_GARMENTS, passes=MAX_GARMENTS
    )
    total = 0.0
    for name in ("Prepare", "Masks", "Finalize", "RecordFailure"):
        function = TRYON_TASKS[name]
        total += _task_worst_case(task_timeout(function), FUNCTION_TIMEOUTS[function], endpoint=False)
    for name in ("ModerateInputs", "ModerateResults"):  # retried on ModerationUnavailable
        function = TRYON_TASKS[name]
        total += _task_worst_case(task_timeout(function), FUNCTION_TIMEOUTS[function], endpoint=True)
    for step, wait in waits.items():
        function = TRYON_TASKS[step.capitalize()]
        realtime = _task_worst_case(
            task_timeout(function), FUNCTION_TIMEOUTS[function], endpoint=True, components=True
        )
        submit = FUNCTION_TIMEOUTS["SubmitAsyncFunction"]
        asynchronous = _task_worst_case(wait["timeout_seconds"], submit, endpoint=True)
        runs = MAX_GARMENTS if step == "inpaint" else 1  # an outfit's passes, one after the other
        total += runs * max(realtime, asynchronous)
    return math.ceil(total)


def _whole_hours(seconds: float) -> int:
    return math.ceil(seconds / 3600) * 3600


#: The try-on execution's ``TimeoutSeconds``: the longest job, in whole hours, so every wait ends
#: in a Task's own time-out and a failure record first (an execution's time-out records nothing).
EXECUTION_TIMEOUT_SECONDS = _whole_hours(longest_job_seconds())
#: A job claim is stale once it is older than the longest an execution can run.
CLAIM_SECONDS = EXECUTION_TIMEOUT_SECONDS
#: ``startExecution.sync:2`` learns of a child's end by polling and events: a little slack.
SYNC_MARGIN_SECONDS = 300
#: The batch row's ``TimeoutSeconds``: the child always ends by its own limit first, so a row is
#: never counted as failed (and its child stopped, leaving no failure record) while it may finish.
BATCH_ROW_TIMEOUT_SECONDS = EXECUTION_TIMEOUT_SECONDS + SYNC_MARGIN_SECONDS


def batch_minimum_seconds() -> int:
    """The least a batch execution needs: validation, one row at its worst, the summary, a refusal."""
    tasks = sum(
        _task_worst_case(task_timeout(fn), FUNCTION_TIMEOUTS[fn], endpoint=False)
        for fn in BATCH_TASKS.values()
    )
    return math.ceil(BATCH_ROW_TIMEOUT_SECONDS + sum(CHILD_START_RETRY.delays()) + tasks)


#: The batch execution's ``TimeoutSeconds`` (14 days): above one row's worst case (an outfit of
#: three garments, every step asynchronous at the maxima) and the batch's own Tasks. A batch that
#: runs longer (many slow rows at a low concurrency) is stopped without a report: size
#: ``max_concurrency`` so that rows / concurrency x a row's time fits (docs/batches.md).
BATCH_EXECUTION_TIMEOUT_SECONDS = 14 * 24 * 3600
