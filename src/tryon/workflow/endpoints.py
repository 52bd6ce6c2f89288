"""Calling the model endpoints through ``sagemaker-runtime`` and classifying their faults."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

from tryon.core.errors import RETRYABLE_MARKER
from tryon.workflow import clients
from tryon.workflow.step_errors import (
    EndpointNoCapacity,
    EndpointNotFound,
    EndpointThrottled,
    EndpointTimeout,
    EndpointUnavailable,
    ModelError,
    ModelNotReady,
    WorkflowError,
    no_capacity_wait_seconds,
)

JSON = "application/json"
_THROTTLING = {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
#: What SageMaker says when a container does not answer within the 60 s invocation limit.
TIMED_OUT = "Your invocation timed out while waiting for a response from container"
_UNAVAILABLE = {"ServiceUnavailable", "ServiceUnavailableException", "InternalFailure", "InternalServerError"}
#: What SageMaker says (ValidationError) when an inference component has no copy to run a call.
NO_CAPACITY = "Inference Component has no capacity to process this request"


def classify_model_error(endpoint: str, original: int, detail: str, status: int = 0) -> WorkflowError:
    """The container's own error (HTTP ``original`` and its message): permanent if 4xx, else transient.

    One classification for the real-time path (a ``ModelError``) and the asynchronous one (an
    error notification, :mod:`tryon.workflow.async_completion`).
    """
    if RETRYABLE_MARKER in detail:  # the serving toolkit answers 400 even for S3 throttling
        return EndpointUnavailable(f"endpoint {endpoint} hit a transient fault (HTTP {original}): {detail}")
    if 400 <= original < 500:
        return ModelError(f"endpoint {endpoint} refused the request (HTTP {original}): {detail}")
    return EndpointUnavailable(f"endpoint {endpoint} failed (HTTP {original or status}): {detail}")


def classify_client_error(endpoint: str, exc: ClientError) -> WorkflowError:
    """Map a sagemaker-runtime ClientError to a transient or permanent workflow error."""
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    message = error.get("Message", str(exc))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code in _THROTTLING or (status == 429 and code != "ModelNotReadyException"):
        return EndpointThrottled(f"endpoint {endpoint} throttled the call: {message}")
    if code == "ModelNotReadyException":
        return ModelNotReady(f"endpoint {endpoint} is not ready: {message}")
    if code == "ModelError":
        original = exc.response.get("OriginalStatusCode") or 0
        detail = exc.response.get("OriginalMessage") or message
        if TIMED_OUT in detail or TIMED_OUT in message:
            return EndpointTimeout(
                f"endpoint {endpoint} ran past SageMaker's 60 s invocation limit: use smaller inputs or "
                "fewer steps, or an asynchronous endpoint for long work"
            )
        return classify_model_error(endpoint, original if isinstance(original, int) else 0, detail, status)
    if code == "ValidationError":
        if NO_CAPACITY in message:  # an inference component scaled to zero: a copy is starting
            waited = round(no_capacity_wait_seconds() / 60)
            return EndpointNoCapacity(
                f"endpoint {endpoint} has no copy running (scaled to zero): {message} The workflow retries "
                f"for about {waited} minutes while the scale-out from zero (the NoCapacityInvocationFailures "
                "alarm and its step-scaling policy) starts one; as a failure record this means none came in "
                "that time: check the alarm, the policy and the component's maximum copies"
            )
        if "oversize body" in message:  # a serverless endpoint's 4 MB request limit
            return ModelError(f"endpoint {endpoint} refused the request as too large: {message}")
        return EndpointNotFound(f"endpoint {endpoint}: {message}")
    if code in _UNAVAILABLE or status >= 500:
        return EndpointUnavailable(f"endpoint {endpoint} is unavailable ({code or status}): {message}")
    return ModelError(f"endpoint {endpoint} rejected the call ({code or status}): {message}")


def described(endpoint: str, component: str | None) -> str:
    """How errors name what was called: ``tryon-shared (component tryon-shared-sd-inpaint)``."""
    return f"{endpoint} (component {component})" if component else endpoint


def invoke_json(endpoint: str, payload: dict[str, Any], component: str | None = None) -> dict[str, Any]:
    """POST ``payload`` as JSON to ``endpoint`` (its inference ``component``, if given); the JSON answer."""
    if not endpoint:
        raise EndpointNotFound("no endpoint name is configured for this step")
    kwargs = {"InferenceComponentName": component} if component else {}
    name = endpoint
    endpoint = described(endpoint, component)
    try:
        response = clients.client("sagemaker-runtime").invoke_endpoint(
            EndpointName=name, ContentType=JSON, Accept=JSON, Body=json.dumps(payload).encode(), **kwargs
        )
        body = response["Body"].read()
    except ClientError as exc:
        raise classify_client_error(endpoint, exc) from exc
    except ReadTimeoutError as exc:
        limit = clients.RUNTIME_CONFIG.read_timeout
        raise EndpointTimeout(
            f"endpoint {endpoint} did not answer within {limit} s; real-time endpoints allow 60 s: "
            "use smaller inputs or fewer steps, or an asynchronous endpoint for long work"
        ) from exc
    except BotoCoreError as exc:  # connection refused, reset ...
        raise EndpointUnavailable(f"endpoint {endpoint} could not be reached: {exc}") from exc
    return decode_answer(endpoint, body)


def decode_answer(endpoint: str, body: bytes) -> dict[str, Any]:
    """An endpoint's JSON answer (a response body, or an asynchronous output object) as a dict."""
    try:
        result = json.loads(body)
    except ValueError as exc:
        raise EndpointUnavailable(f"endpoint {endpoint} answered with invalid JSON: {exc}") from exc
    if not isinstance(result, dict):
        raise EndpointUnavailable(f"endpoint {endpoint} answered with {type(result).__name__}, not an object")
    return result


def invoke_async(endpoint: str, input_uri: str, inference_id: str, timeout_s: int) -> dict[str, Any]:
    """``InvokeEndpointAsync`` of a request already in S3; the answer names the output locations."""
    if not endpoint:
        raise EndpointNotFound("no endpoint name is configured for this step")
    try:
        return clients.client("sagemaker-runtime").invoke_endpoint_async(
            EndpointName=endpoint,
            ContentType=JSON,
            Accept=JSON,
            InputLocation=input_uri,
            InferenceId=inference_id,
            InvocationTimeoutSeconds=timeout_s,
        )
    except ClientError as exc:
        raise classify_client_error(endpoint, exc) from exc
    except BotoCoreError as exc:
        raise EndpointUnavailable(f"endpoint {endpoint} could not be reached: {exc}") from exc
