"""One invocation as SageMaker's container and front end handle it: body limits, the handler
run in worker threads (abandoned when nobody waits), and every failure as the answer AWS gives."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from tryon.core.errors import RequestError
from tryon.core.kinds import ModeLimits
from tryon.handlers import cancellation
from tryon.handlers.common import JSON_CONTENT_TYPE
from tryon.server.registry import NO_CAPACITY_MESSAGE, ServedEndpoint

log = logging.getLogger("tryon.server")

#: What real SageMaker reports as the variant that served a request.
PRODUCTION_VARIANT = "AllTraffic"
#: The serving image's model server (multi-model-server in the Hugging Face inference image)
#: refuses request and response bodies larger than this (its ``max_request_size`` and
#: ``max_response_size`` defaults), in every serving mode.
CONTAINER_MAX_BODY_BYTES = 6_553_500
#: How long the server waits for a request body to arrive in full.
BODY_READ_TIMEOUT_S = 30.0
#: A body over the limit is read and dropped up to this many times the limit (then the connection closes).
DRAIN_FACTOR = 4
#: What SageMaker answers (ModelError, "server error (0)") when the container is too slow.
TIMEOUT_MESSAGE = (
    "Your invocation timed out while waiting for a response from container primary. Review the latency "
    "metrics for each container in Amazon CloudWatch, resolve the issue, and try again."
)


class BodyTooLarge(Exception):
    """The request body is over the server's limit."""

    def __init__(self, size: int | None, limit: int) -> None:
        seen = f"is {size} bytes" if size is not None else "is larger than the limit"
        super().__init__(f"body: {seen}; the limit is {limit} bytes")
        self.size = size
        self.limit = limit


class BodyTimeout(Exception):
    """The request body did not arrive in time (e.g. a Content-Length larger than what was sent)."""


@dataclass(frozen=True)
class FrontEndAnswer:
    """What SageMaker's own front end answers on the runtime route (the container never sees the request)."""

    status: int
    error_type: str | None  # None: no x-amzn-ErrorType; botocore then names the error by the status
    message: str


class InvocationError(Exception):
    """An invocation failed.

    ``status`` is what the container answers on ``POST /invocations`` (400, 408, 413, 500, 503,
    504); the runtime route relays it as a ``ModelError`` whose ``OriginalStatusCode`` is
    ``original_status`` (default ``status``), unless SageMaker's front end answers itself
    (``front``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        *,
        original_status: int | None = None,
        front: FrontEndAnswer | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.original_status = status if original_status is None else original_status
        self.front = front


class ClientGone(Exception):
    """The client disconnected before the answer was ready; nobody reads the response."""


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body, within ``timeout`` seconds; BodyTooLarge over ``limit``, BodyTimeout if slow.

    A body over the limit is still read (and dropped), up to DRAIN_FACTOR times the limit, so
    that a client still sending gets the 413 rather than a reset connection.
    """
    declared = request.headers.get("content-length")
    declared_size = int(declared) if declared is not None and declared.isdigit() else None
    if declared_size is not None and declared_size > DRAIN_FACTOR * limit:
        raise BodyTooLarge(declared_size, limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > DRAIN_FACTOR * limit:
                    raise BodyTooLarge(declared_size, limit)
                if size <= limit:
                    chunks.append(chunk)
    except TimeoutError:
        expected = f" of the {declared} bytes its Content-Length announced" if declared else ""
        raise BodyTimeout(
            f"body: {size} bytes{expected} arrived in {timeout:g} s, the time limit for sending a body"
        ) from None
    if size > limit:
        raise BodyTooLarge(size, limit)
    return b"".join(chunks)


async def _wait_for_disconnect(request: Request) -> None:
    """Return when the client closes the connection (the body has been read in full before)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _response_content_type(accept: str | None) -> str:
    media = (accept or "").split(",")[0].strip()
    return media if media and "*" not in media else JSON_CONTENT_TYPE


def _encode_output(module: ModuleType, prediction: Any, accept: str | None) -> tuple[bytes, str]:
    """output_fn, normalised to (body bytes, content type)."""
    result = module.output_fn(prediction, accept)
    if isinstance(result, tuple):  # (body, content_type), as the SageMaker toolkits allow
        result, ctype = result
    else:
        ctype = _response_content_type(accept)
    if isinstance(result, str):
        result = result.encode("utf-8")
    return bytes(result), ctype


async def run_handler(
    ep: ServedEndpoint,
    body: bytes,
    headers: Mapping[str, str],
    token: cancellation.CancelToken,
    request_id: str,
) -> tuple[bytes, str]:
    """input_fn -> predict_fn (on a free model copy) -> output_fn; InvocationError on failure."""
    module = ep.module
    assert module is not None
    accept = headers.get("accept")
    try:
        # each call runs in a worker thread with the token bound, tracked so a stopping server can end it
        call = ep.work.run
        data = await run_in_threadpool(call, token, module.input_fn, body, headers.get("content-type"))
        async with ep.copy() as model:  # held until predict_fn returns, even if nobody waits for it any more
            prediction = await run_in_threadpool(call, token, module.predict_fn, data, model)
        return await run_in_threadpool(call, token, _encode_output, module, prediction, accept)
    except RequestError as exc:
        raise InvocationError(400, str(exc), exc.field) from exc
    except cancellation.Cancelled:
        raise
    except Exception as exc:
        log.exception("endpoint %s: handler fault (request %s)", ep.config.name, request_id)
        raise InvocationError(
            500,
            f"the model handler failed unexpectedly; the server log has the details (request {request_id})",
        ) from exc


def _abandoned(task: asyncio.Task) -> None:
    """Done-callback of handler work nobody waits for: retrieve its outcome, log it."""
    if task.cancelled():
        return
    exc = task.exception()
    outcome = f"stopped ({exc})" if isinstance(exc, cancellation.Cancelled) else "finished"
    log.info(json.dumps({"event": "abandoned", "outcome": outcome}))


def _oversize_answer(limits: ModeLimits, size: int | None, request_id: str) -> FrontEndAnswer:
    """SageMaker's own answer to a request body over the mode's limit."""
    limit = limits.max_request_bytes
    seen = f"is {size} bytes" if size is not None else "is larger than the limit"
    detail = f"body: {seen}; the limit is {limit} bytes for {limits.mode} endpoints"
    if limits.mode == "serverless":
        return FrontEndAnswer(400, "ValidationError", f"Request {request_id} has oversize body. ({detail})")
    return FrontEndAnswer(413, None, f"HTTP content length exceeded {limit} bytes. ({detail})")


def _timed_out(seconds: float, mode: str) -> InvocationError:
    """SageMaker's answer to an invocation over its time limit (whichever side noticed first)."""
    message = f"{TIMEOUT_MESSAGE} (The limit is {seconds:g} s for {mode} endpoints.)"
    return InvocationError(504, message, original_status=0)


async def invoke(
    ep: ServedEndpoint, request: Request, request_id: str, max_body_bytes: int, body_timeout: float
) -> Response:
    """Run one request through an endpoint within its mode's limits; raises InvocationError or ClientGone.

    ``input_fn`` and ``output_fn`` (parsing, serialising) run in worker threads concurrently;
    ``predict_fn`` runs in a worker thread on one of the endpoint's (or component's) model
    copies, one request per copy at a time. The time limit counts from the moment the body
    has arrived (waiting for a copy included). A component with no copy running is refused
    before anything else, as SageMaker's front end does.
    """
    if ep.config.component and ep.copies == 0:
        raise InvocationError(
            400, NO_CAPACITY_MESSAGE, front=FrontEndAnswer(400, "ValidationError", NO_CAPACITY_MESSAGE)
        )
    if ep.state == "loading":
        raise InvocationError(503, f"endpoint {ep.config.name} is still loading its model")
    if ep.state == "failed":
        raise InvocationError(
            500, f"endpoint {ep.config.name} failed to load its model (GET /ping and the server log say why)"
        )
    limits = ep.config.limits
    front_limit = limits.max_request_bytes
    limit = min(max_body_bytes, front_limit) if front_limit is not None else max_body_bytes
    try:
        body = await _read_body(request, limit, body_timeout)
    except BodyTooLarge as exc:
        front = None
        message = str(exc)
        if front_limit is not None and front_limit <= max_body_bytes:
            front = _oversize_answer(limits, exc.size, request_id)
            message += f" for {limits.mode} endpoints"
        raise InvocationError(413, message, "body", front=front) from exc
    except BodyTimeout as exc:
        raise InvocationError(408, str(exc), "body") from exc
    except ClientDisconnect as exc:
        raise InvocationError(400, "body: the client disconnected while sending it", "body") from exc

    seconds = limits.max_invocation_seconds
    token = cancellation.CancelToken(deadline=time.monotonic() + seconds)
    work = asyncio.create_task(run_handler(ep, body, request.headers, token, request_id))
    watch = asyncio.create_task(_wait_for_disconnect(request))
    try:
        await asyncio.wait({work, watch}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if not work.done():
        token.cancel("the client disconnected" if watch.done() else "the invocation time limit passed")
        work.add_done_callback(_abandoned)
        if watch.done():
            raise ClientGone()
        raise _timed_out(seconds, limits.mode)
    try:
        payload, ctype = work.result()
    except cancellation.Cancelled as exc:  # the deadline passed just as the work noticed it
        raise _timed_out(seconds, limits.mode) from exc
    response_limit = min(max_body_bytes, limits.max_response_bytes or max_body_bytes)
    if len(payload) > response_limit:
        raise InvocationError(
            500,
            f"response: is {len(payload)} bytes; the limit is {response_limit} bytes for {limits.mode} "
            "endpoints (give the request an output S3 prefix, or ask for fewer or smaller images)",
        )
    headers = {"x-Amzn-Invoked-Production-Variant": PRODUCTION_VARIANT}
    return Response(payload, media_type=ctype, headers=headers)


def log_request(
    route: str,
    endpoint: str | None,
    status: int,
    start: float,
    request_id: str,
    error: str | None = None,
    *,
    component: str | None = None,
) -> None:
    record: dict[str, Any] = {"route": route, "endpoint": endpoint, "status": status}
    if component:
        record["component"] = component
    record["ms"] = round((time.perf_counter() - start) * 1000.0, 1)
    record["request_id"] = request_id
    if error:
        record["error"] = error
    log.info(json.dumps(record))


def runtime_error(
    status: int, error_type: str | None, message: str, request_id: str, **extra: Any
) -> JSONResponse:
    """An error in the shape the sagemaker-runtime API uses, which botocore maps to exceptions."""
    headers = {"x-amzn-RequestId": request_id}
    if error_type:
        headers["x-amzn-ErrorType"] = error_type
    return JSONResponse(
        {"message": message, "Message": message, **extra}, status_code=status, headers=headers
    )


#: Client disconnected before the answer (nginx's convention; only ever seen in the log).
CLIENT_CLOSED = 499


def status_of(exc: BaseException) -> int:
    """The HTTP status the container answers for a failed invocation."""
    return exc.status if isinstance(exc, InvocationError) else 500
