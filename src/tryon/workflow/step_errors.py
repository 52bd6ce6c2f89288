"""Error types whose class names become the Step Functions error names.

A Lambda function that raises ``X`` fails its Task with error ``X``; the state machine
retries the transient ones and sends the permanent ones straight to the failure recorder.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from tryon.core import content_policy, timeouts
from tryon.core.errors import RequestError

F = TypeVar("F", bound=Callable[..., Any])


class WorkflowError(Exception):
    """Base class of every error a step raises on purpose."""

    transient = False


class InvalidInput(WorkflowError):
    """The upload or the requested parameters are invalid (permanent; the message names the field)."""


class ModelError(WorkflowError):
    """An endpoint refused the request (HTTP 4xx from the model container; permanent)."""


class EndpointNotFound(WorkflowError):
    """The configured endpoint does not exist or is misconfigured (permanent)."""


class EndpointTimeout(WorkflowError):
    """The model did not answer within the read timeout (permanent: a retry would redo the same work).

    SageMaker real-time endpoints cap an invocation at 60 s; longer work belongs on an
    asynchronous endpoint or needs smaller inputs.
    """


class EndpointThrottled(WorkflowError):
    """SageMaker throttled the invocation (transient: retried with backoff)."""

    transient = True


class ModelNotReady(WorkflowError):
    """The endpoint is not ready to serve yet (transient: retried with backoff)."""

    transient = True


class EndpointUnavailable(WorkflowError):
    """A 5xx, time-out or connection fault talking to the endpoint (transient: retried)."""

    transient = True


class EndpointNoCapacity(WorkflowError):
    """An inference component has no copy running: it scaled to zero and one is starting (transient).

    SageMaker's scale-out from zero takes minutes (an alarm, a scaling policy, an instance, the
    model), so the state machine retries it on its own, long back-off (:data:`NO_CAPACITY_RETRY`).
    """

    transient = True


class ClaimConflict(WorkflowError):
    """S3 kept answering 409 ConditionalRequestConflict to the job claim's conditional write (permanent)."""


class RuntimeTooOld(WorkflowError):
    """The Lambda runtime's boto3/botocore lacks an API parameter the workflow needs (permanent)."""


#: Error names the state machine retries (besides the Lambda service errors).
TRANSIENT_ERRORS = ("EndpointThrottled", "ModelNotReady", "EndpointUnavailable")
#: The state machine's retry of EndpointNoCapacity on each real-time endpoint step, as the ASL
#: writes it (the numbers are tryon.core.timeouts.NO_CAPACITY_RETRY's).
NO_CAPACITY_RETRY = timeouts.NO_CAPACITY_RETRY.asl()


def no_capacity_wait_seconds() -> float:
    """How long the workflow waits, in all, for a component scaled to zero to get a copy."""
    return sum(timeouts.NO_CAPACITY_RETRY.delays())


class ContentRefused(WorkflowError):
    """The content policy refused the job (permanent; not a fault: a first-class outcome).

    The message is the refusal's (field and why) followed by its details as JSON (stage,
    labels, policy version: :meth:`tryon.core.content_policy.ContentRefused.error_message`),
    which the failure recorder reads back.
    """

    @classmethod
    def from_refusal(cls, refusal: content_policy.ContentRefused) -> ContentRefused:
        return cls(refusal.error_message())


class ModerationUnavailable(WorkflowError):
    """Amazon Rekognition throttled the check or failed transiently (retried with backoff)."""

    transient = True


class ModerationFailed(WorkflowError):
    """Amazon Rekognition refused the call itself (permissions, an image it cannot read; permanent)."""


#: Error names the state machine retries on the moderation steps.
MODERATION_TRANSIENT_ERRORS = ("ModerationUnavailable",)
#: Error names that go straight to the failure recorder.
PERMANENT_ERRORS = (
    "InvalidInput",
    "ModelError",
    "EndpointNotFound",
    "EndpointTimeout",
    "ContentRefused",
    "ModerationFailed",
    "ClaimConflict",
    "RuntimeTooOld",
)


def as_step_errors(func: F) -> F:
    """Turn a refusal of the content policy into :class:`ContentRefused` and any other
    :class:`RequestError` raised inside a step into :class:`InvalidInput`."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except content_policy.ContentRefused as exc:
            raise ContentRefused.from_refusal(exc) from exc
        except RequestError as exc:
            raise InvalidInput(str(exc)) from exc

    return wrapper  # type: ignore[return-value]
