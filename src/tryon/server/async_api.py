"""The asynchronous inference API of the local endpoint server (``InvokeEndpointAsync``).

``POST /endpoints/{name}/async-invocations`` with the request in S3 (``X-Amzn-SageMaker-InputLocation``)
answers 202 with the inference id and the output and failure locations at once, as SageMaker
does; a per-endpoint queue then runs the requests one at a time in the background: read the
input from S3 (up to 1 GB), run the handler within ``InvocationTimeoutSeconds`` (default 900,
at most 3600), write the answer to ``<output path><inference-id>.out`` or the error to
``<failure path><inference-id>-error.out``, and publish the notification SageMaker publishes
to the endpoint's success or error SNS topic. Only endpoints in ``async`` mode take the route.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tryon.core.errors import RequestError
from tryon.core.kinds import MODE_LIMITS
from tryon.core.s3uri import parse_versioned_s3_uri
from tryon.handlers import cancellation

log = logging.getLogger("tryon.server")

#: ``InvocationTimeoutSeconds``: SageMaker's default and maximum for one asynchronous request.
DEFAULT_INVOCATION_SECONDS = 900
MAX_INVOCATION_SECONDS = int(MODE_LIMITS["async"].max_invocation_seconds)
#: An asynchronous request's input object is at most 1 GB.
MAX_INPUT_BYTES = MODE_LIMITS["async"].max_request_bytes or 1_000_000_000


@dataclass(frozen=True)
class AsyncOutput:
    """An asynchronous endpoint's ``AsyncInferenceConfig``: where answers and errors go, whom to tell.

    ``output_path`` and ``failure_path`` are ``s3://bucket/prefix/`` URIs (``S3OutputPath``,
    ``S3FailurePath``); the topics are SNS topic ARNs (empty: no notification).
    """

    output_path: str
    failure_path: str
    success_topic: str = ""
    error_topic: str = ""


@dataclass(frozen=True)
class AsyncRequest:
    """One queued request."""

    inference_id: str
    input_location: str
    content_type: str
    accept: str
    timeout_s: int
    output_location: str
    failure_location: str
    received: str


#: Runs a request body through the endpoint's handler: (body, headers, token, request id) -> (payload, type).
RunHandler = Callable[[bytes, Mapping[str, str], cancellation.CancelToken, str], Awaitable[tuple[bytes, str]]]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _join(path: str, name: str) -> str:
    return path if path.endswith("/") and not name else (path.rstrip("/") + "/" + name)


def _error(message: str, request_id: str) -> JSONResponse:
    return JSONResponse(
        {"message": message, "Message": message},
        status_code=400,
        headers={"x-amzn-RequestId": request_id, "x-amzn-ErrorType": "ValidationError"},
    )


def accept_request(
    name: str, mode: str, config: AsyncOutput | None, request: Request
) -> AsyncRequest | Response:
    """The queued request for a valid ``InvokeEndpointAsync``, else the ValidationError SageMaker answers."""
    request_id = str(uuid.uuid4())
    headers = request.headers
    if mode != "async" or config is None:
        return _error(f"Endpoint {name} is not an asynchronous endpoint (its mode is {mode}).", request_id)
    location = headers.get("x-amzn-sagemaker-inputlocation", "")
    try:
        parse_versioned_s3_uri(location, field="InputLocation")
    except RequestError as exc:
        return _error(str(exc), request_id)
    raw_timeout = headers.get("x-amzn-sagemaker-invocationtimeoutseconds") or str(DEFAULT_INVOCATION_SECONDS)
    if not raw_timeout.isdigit() or not 1 <= int(raw_timeout) <= MAX_INVOCATION_SECONDS:
        return _error(
            f"InvocationTimeoutSeconds: must be an integer from 1 to {MAX_INVOCATION_SECONDS}, "
            f"got {raw_timeout!r}",
            request_id,
        )
    inference_id = headers.get("x-amzn-sagemaker-inference-id") or str(uuid.uuid4())
    if len(inference_id) > 64:
        return _error(f"InferenceId: is {len(inference_id)} characters; the limit is 64", request_id)
    return AsyncRequest(
        inference_id=inference_id,
        input_location=location,
        content_type=headers.get("x-amzn-sagemaker-content-type") or "application/json",
        accept=headers.get("x-amzn-sagemaker-accept") or "application/json",
        timeout_s=int(raw_timeout),
        output_location=_join(config.output_path, f"{inference_id}.out"),
        failure_location=_join(config.failure_path, f"{inference_id}-error.out"),
        received=_now(),
    )


def accepted(item: AsyncRequest) -> Response:
    """SageMaker's 202 answer: the inference id and where the answer or the error will be."""
    return JSONResponse(
        {"InferenceId": item.inference_id},
        status_code=202,
        headers={
            "X-Amzn-SageMaker-OutputLocation": item.output_location,
            "X-Amzn-SageMaker-FailureLocation": item.failure_location,
            "x-amzn-RequestId": str(uuid.uuid4()),
        },
    )


def _get(uri: str) -> bytes:
    bucket, key, version = parse_versioned_s3_uri(uri, field="InputLocation")
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version:
        kwargs["VersionId"] = version
    obj = boto3.client("s3").get_object(**kwargs)
    if obj.get("ContentLength", 0) > MAX_INPUT_BYTES:
        obj["Body"].close()
        raise RequestError(
            "InputLocation", f"is {obj['ContentLength']} bytes; the limit is {MAX_INPUT_BYTES}"
        )
    return obj["Body"].read()


def _put(uri: str, data: bytes, content_type: str) -> None:
    bucket, key, _ = parse_versioned_s3_uri(uri, field="output")
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)


def _notify(topic: str, message: dict[str, Any]) -> None:
    if topic:
        boto3.client("sns").publish(TopicArn=topic, Message=json.dumps(message))


def _message(name: str, item: AsyncRequest, status: str, response: dict[str, Any]) -> dict[str, Any]:
    """The notification SageMaker publishes for one finished asynchronous request."""
    return {
        "awsRegion": boto3.session.Session().region_name,
        "eventTime": _now(),
        "receivedTime": item.received,
        "invocationStatus": status,
        "requestParameters": {
            "contentType": item.content_type,
            "endpointName": name,
            "inputLocation": item.input_location,
        },
        "responseParameters": response,
        "inferenceId": item.inference_id,
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }


async def process(
    name: str,
    config: AsyncOutput,
    item: AsyncRequest,
    run: RunHandler,
    status_of: Callable[[BaseException], int],
) -> str:
    """Run one queued request to its end: answer or error in S3, then the notification. Returns the status.

    ``status_of`` maps a handler failure to the HTTP status the container would answer (the
    real-time route's mapping), so the error notification names it as SageMaker does.
    """
    request_id = str(uuid.uuid4())
    start = time.perf_counter()
    token = cancellation.CancelToken(deadline=time.monotonic() + item.timeout_s)
    try:
        body = await run_in_threadpool(_get, item.input_location)
        headers = {"content-type": item.content_type, "accept": item.accept}
        payload, ctype = await asyncio.wait_for(run(body, headers, token, request_id), timeout=item.timeout_s)
    except (TimeoutError, cancellation.Cancelled):
        token.cancel("the invocation time limit passed")
        reason = (
            f"InvocationTimeout: the request timed out after {item.timeout_s} s (InvocationTimeoutSeconds)"
        )
        detail, status = reason, 0
    except Exception as exc:  # the handler's error, or the input could not be read
        status = 400 if isinstance(exc, RequestError) else status_of(exc)
        detail = getattr(exc, "message", None) or str(exc)
        kind = "client" if 400 <= status < 500 else "server"
        reason = f'ClientError: Received {kind} error ({status}) from primary with message "{detail}".'
    else:
        await run_in_threadpool(_put, item.output_location, payload, ctype)
        response = {"contentType": ctype, "outputLocation": item.output_location}
        await run_in_threadpool(_notify, config.success_topic, _message(name, item, "Completed", response))
        _log(name, item, "Completed", start)
        return "Completed"
    error_body = json.dumps({"error": detail, "message": detail, "status": status}).encode()
    await run_in_threadpool(_put, item.failure_location, error_body, "application/json")
    message = _message(name, item, "Failed", {"failureLocation": item.failure_location})
    message["failureReason"] = reason
    await run_in_threadpool(_notify, config.error_topic, message)
    _log(name, item, "Failed", start, reason)
    return "Failed"


def _log(name: str, item: AsyncRequest, status: str, start: float, error: str | None = None) -> None:
    record: dict[str, Any] = {"route": "/endpoints/{name}/async-invocations", "endpoint": name}
    record |= {"inference_id": item.inference_id, "status": status}
    record["ms"] = round((time.perf_counter() - start) * 1000.0, 1)
    if error:
        record["error"] = error
    log.info(json.dumps(record))
