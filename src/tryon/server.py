"""Local endpoint server: the model handlers behind the SageMaker HTTP contracts.

One Starlette app serves any number of endpoints, each a handler module (``model_fn``,
``input_fn``, ``predict_fn``, ``output_fn``) resolved through
:data:`tryon.handlers.HANDLER_MODULES` and loaded once, in a background thread, at startup.

Routes:

- ``GET /ping`` -- 200 once every model is loaded, 503 while loading, 500 if one failed.
- ``POST /invocations`` -- the SageMaker container contract (the default endpoint).
- ``POST /endpoints/{name}/invocations`` -- the ``sagemaker-runtime`` API path, so an
  unmodified boto3 client pointed at ``endpoint_url`` reaches the handlers, and handler
  errors come back as the ``ModelError`` / ``ValidationError`` / ``ModelNotReadyException``
  that real SageMaker raises.
- ``POST /endpoints/{name}/async-invocations`` -- ``InvokeEndpointAsync`` for endpoints in
  ``async`` mode: input from S3, a background queue, answer or error to S3, SNS notification
  (:mod:`tryon.server_async`).

Each endpoint has a serving mode (:data:`tryon.kinds.MODE_LIMITS`) and the server enforces
its limits as SageMaker does: request size, response size and invocation time, answering
over a limit the way boto3 sees it from AWS. Work nobody waits for any more (time limit
passed, client gone) is abandoned through :mod:`tryon.cancellation`.

Handlers run in worker threads: ``input_fn``/``output_fn`` concurrently, ``predict_fn`` one
at a time per endpoint (a per-endpoint lock), so the event loop never blocks and a pipeline
is never used by two requests at once; different endpoints predict concurrently.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tryon import cancellation
from tryon.errors import RequestError
from tryon.handlers import HANDLER_MODULES
from tryon.handlers.common import JSON_CONTENT_TYPE
from tryon.kinds import MODE_LIMITS, EndpointMode, ModeLimits, check_mode
from tryon.server_async import AsyncOutput, AsyncRequest, accept_request, accepted, process

log = logging.getLogger("tryon.server")

HANDLER_FUNCTIONS = ("model_fn", "input_fn", "predict_fn", "output_fn")
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


@dataclass(frozen=True)
class EndpointConfig:
    """One served endpoint: its name (boto3's ``EndpointName``), handler kind, model folder and mode.

    ``mode`` (``realtime``, ``serverless``, ``async``) sets the limits the server enforces
    (:data:`tryon.kinds.MODE_LIMITS`); ``max_invocation_seconds`` tightens the time limit
    (tests use it so as not to wait a minute).
    """

    name: str
    kind: str
    model_dir: str
    mode: EndpointMode = "realtime"
    max_invocation_seconds: float | None = None
    #: where an ``async`` endpoint writes answers and errors and which SNS topics it tells
    async_output: AsyncOutput | None = None

    @property
    def limits(self) -> ModeLimits:
        """The mode's limits, with ``max_invocation_seconds`` applied."""
        limits = MODE_LIMITS[check_mode(self.mode)]
        if self.max_invocation_seconds is None:
            return limits
        return dataclasses.replace(limits, max_invocation_seconds=self.max_invocation_seconds)


class BodyTooLarge(Exception):
    """The request body is over the server's limit."""

    def __init__(self, size: int | None, limit: int) -> None:
        seen = f"is {size} bytes" if size is not None else "is larger than the limit"
        super().__init__(f"body: {seen}; the limit is {limit} bytes")
        self.size = size
        self.limit = limit


class BodyTimeout(Exception):
    """The request body did not arrive in time (e.g. a Content-Length larger than what was sent)."""


@dataclass
class _Endpoint:
    """Runtime state of one endpoint: loaded model, load status, and the lock serialising predicts."""

    config: EndpointConfig
    state: str = "loading"  # loading | ready | failed
    error: str | None = None
    load_ms: float | None = None
    module: ModuleType | None = None
    model: Any = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.config.kind, "model_dir": self.config.model_dir}
        out["mode"] = self.config.mode
        out["state"] = self.state
        if self.load_ms is not None:
            out["load_ms"] = self.load_ms
        if self.error:
            out["error"] = self.error
        return out


def _import_handler(kind: str) -> ModuleType:
    module = importlib.import_module(HANDLER_MODULES[kind])
    missing = [name for name in HANDLER_FUNCTIONS if not callable(getattr(module, name, None))]
    if missing:
        raise TypeError(f"handler module {module.__name__} lacks {', '.join(missing)}")
    return module


class ModelRegistry:
    """The endpoints of one app and their models, loaded once in a background thread."""

    def __init__(self, endpoints: Sequence[EndpointConfig], default: str | None = None) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint is required")
        self.endpoints: dict[str, _Endpoint] = {}
        for cfg in endpoints:
            if cfg.kind not in HANDLER_MODULES:
                raise ValueError(
                    f"endpoint {cfg.name!r}: unknown kind {cfg.kind!r}; known: {', '.join(HANDLER_MODULES)}"
                )
            try:
                check_mode(cfg.mode)
            except ValueError as exc:
                raise ValueError(f"endpoint {cfg.name!r}: {exc}") from None
            if cfg.max_invocation_seconds is not None and not cfg.max_invocation_seconds > 0:
                raise ValueError(f"endpoint {cfg.name!r}: max_invocation_seconds must be > 0")
            if cfg.name in self.endpoints:
                raise ValueError(f"endpoint name {cfg.name!r} is used twice")
            self.endpoints[cfg.name] = _Endpoint(cfg)
        self.default = default or endpoints[0].name
        if self.default not in self.endpoints:
            raise ValueError(f"default endpoint {self.default!r} is not among {', '.join(self.endpoints)}")
        self.loaded = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def start_loading(self) -> None:
        """Load every model in a daemon thread (idempotent); ``loaded`` is set when all are done."""
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._load_all, name="tryon-model-loader", daemon=True)
                self._thread.start()

    def _load_all(self) -> None:
        try:
            for ep in self.endpoints.values():
                start = time.perf_counter()
                try:
                    ep.module = _import_handler(ep.config.kind)
                    ep.model = ep.module.model_fn(ep.config.model_dir)
                except BaseException as exc:  # a failed load must surface, never hang /ping
                    log.exception("endpoint %s failed to load", ep.config.name)
                    ep.error = f"{type(exc).__name__}: {exc}"
                    ep.state = "failed"
                else:
                    ep.state = "ready"
                ep.load_ms = round((time.perf_counter() - start) * 1000.0, 1)
                log.info(
                    json.dumps(
                        {"event": "load", "endpoint": ep.config.name, "state": ep.state, "ms": ep.load_ms}
                    )
                )
        finally:
            self.loaded.set()

    @property
    def state(self) -> str:
        """``ready`` when every model is loaded, ``failed`` if any failed, else ``loading``."""
        states = {ep.state for ep in self.endpoints.values()}
        if "failed" in states:
            return "failed"
        return "ready" if states == {"ready"} else "loading"

    def load_errors(self) -> dict[str, str]:
        """Endpoint name -> load error, for the endpoints that failed."""
        return {name: ep.error or "" for name, ep in self.endpoints.items() if ep.state == "failed"}


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


def _call(token: cancellation.CancelToken, fn: Callable[..., Any], *args: Any) -> Any:
    """Run a handler function in a worker thread with the invocation's token bound (skip if abandoned)."""
    token.raise_if_cancelled()
    with cancellation.bound(token):
        return fn(*args)


async def _run_handler(
    ep: _Endpoint, body: bytes, headers: Mapping[str, str], token: cancellation.CancelToken, request_id: str
) -> tuple[bytes, str]:
    """input_fn -> predict_fn (under the endpoint's lock) -> output_fn; InvocationError on failure."""
    module = ep.module
    assert module is not None
    accept = headers.get("accept")
    try:
        data = await run_in_threadpool(_call, token, module.input_fn, body, headers.get("content-type"))
        async with ep.lock:  # held until predict_fn returns, even if nobody waits for it any more
            prediction = await run_in_threadpool(_call, token, module.predict_fn, data, ep.model)
        return await run_in_threadpool(_call, token, _encode_output, module, prediction, accept)
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


async def _invoke(
    ep: _Endpoint, request: Request, request_id: str, max_body_bytes: int, body_timeout: float
) -> Response:
    """Run one request through an endpoint within its mode's limits; raises InvocationError or ClientGone.

    ``input_fn`` and ``output_fn`` (parsing, serialising) run in worker threads concurrently;
    ``predict_fn`` runs in a worker thread under the endpoint's lock, one at a time. The time
    limit counts from the moment the body has arrived (waiting for the lock included).
    """
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
    work = asyncio.create_task(_run_handler(ep, body, request.headers, token, request_id))
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


def _log_request(
    route: str, endpoint: str | None, status: int, start: float, request_id: str, error: str | None = None
) -> None:
    record: dict[str, Any] = {"route": route, "endpoint": endpoint, "status": status}
    record["ms"] = round((time.perf_counter() - start) * 1000.0, 1)
    record["request_id"] = request_id
    if error:
        record["error"] = error
    log.info(json.dumps(record))


def _runtime_error(
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


def _status_of(exc: BaseException) -> int:
    """The HTTP status the container answers for a failed invocation."""
    return exc.status if isinstance(exc, InvocationError) else 500


def create_app(
    endpoints: Sequence[EndpointConfig],
    *,
    default: str | None = None,
    max_body_bytes: int = CONTAINER_MAX_BODY_BYTES,
    body_read_timeout: float = BODY_READ_TIMEOUT_S,
) -> Starlette:
    """The ASGI app serving ``endpoints``; models start loading when the app starts (lifespan).

    ``default`` names the endpoint behind ``POST /invocations`` (the first one unless set).
    ``max_body_bytes`` is the container's own cap on request and response bodies (the serving
    image's, by default); each endpoint's mode may cap them lower. ``body_read_timeout`` bounds
    the time a client may take to send a body. ``app.state.registry`` is the :class:`ModelRegistry`.
    """
    registry = ModelRegistry(endpoints, default)

    async def ping(request: Request) -> JSONResponse:
        state = registry.state
        status = {"ready": 200, "loading": 503, "failed": 500}[state]
        body: dict[str, Any] = {"status": state}
        body["endpoints"] = {name: ep.status() for name, ep in registry.endpoints.items()}
        if state == "failed":
            body["error"] = "; ".join(f"{name}: {err}" for name, err in registry.load_errors().items())
        return JSONResponse(body, status_code=status)

    async def invocations(request: Request) -> Response:
        start = time.perf_counter()
        request_id = str(uuid.uuid4())
        ep = registry.endpoints[registry.default]
        try:
            response = await _invoke(ep, request, request_id, max_body_bytes, body_read_timeout)
        except ClientGone:
            _log_request("/invocations", ep.config.name, CLIENT_CLOSED, start, request_id, "client gone")
            return Response(status_code=CLIENT_CLOSED)
        except InvocationError as exc:
            _log_request("/invocations", ep.config.name, exc.status, start, request_id, exc.message)
            body = {"error": exc.message, "request_id": request_id}
            if exc.field:
                body["field"] = exc.field
            headers = {"x-amzn-RequestId": request_id}
            if exc.status == 408:  # the rest of the body may still be on its way: start afresh
                headers["Connection"] = "close"
            return JSONResponse(body, status_code=exc.status, headers=headers)
        _log_request("/invocations", ep.config.name, response.status_code, start, request_id)
        response.headers["x-amzn-RequestId"] = request_id
        return response

    async def runtime_invocations(request: Request) -> Response:
        start = time.perf_counter()
        request_id = str(uuid.uuid4())
        name = request.path_params["name"]
        route = "/endpoints/{name}/invocations"
        ep = registry.endpoints.get(name)
        if ep is None:
            _log_request(route, name, 400, start, request_id, "not found")
            return _runtime_error(400, "ValidationError", f"Endpoint {name} not found.", request_id)
        try:
            response = await _invoke(ep, request, request_id, max_body_bytes, body_read_timeout)
        except ClientGone:
            _log_request(route, name, CLIENT_CLOSED, start, request_id, "client gone")
            return Response(status_code=CLIENT_CLOSED)
        except InvocationError as exc:
            _log_request(route, name, exc.status, start, request_id, exc.message)
            if exc.front is not None:
                front = exc.front
                return _runtime_error(front.status, front.error_type, front.message, request_id)
            if exc.status == 503:
                return _runtime_error(429, "ModelNotReadyException", exc.message, request_id)
            original = exc.original_status
            kind = "client" if 400 <= original < 500 else "server"
            message = f'Received {kind} error ({original}) from primary with message "{exc.message}".'
            response = _runtime_error(
                424,
                "ModelError",
                message,
                request_id,
                ErrorCode=f"{kind.upper()}_ERROR_FROM_MODEL",
                OriginalStatusCode=original,
                OriginalMessage=exc.message,
            )
            if exc.status == 408:
                response.headers["Connection"] = "close"
            return response
        _log_request(route, name, response.status_code, start, request_id)
        response.headers["x-amzn-RequestId"] = request_id
        return response

    queues: dict[str, asyncio.Queue[AsyncRequest]] = {}

    async def async_invocations(request: Request) -> Response:
        name = request.path_params["name"]
        ep = registry.endpoints.get(name)
        if ep is None:
            return _runtime_error(400, "ValidationError", f"Endpoint {name} not found.", str(uuid.uuid4()))
        item = accept_request(name, ep.config.mode, ep.config.async_output, request)
        if isinstance(item, Response):
            return item
        queues[name].put_nowait(item)
        return accepted(item)

    async def async_worker(ep: _Endpoint) -> None:
        """Run an async endpoint's queue in order, once its model has loaded (SageMaker queues meanwhile)."""
        config = ep.config.async_output
        assert config is not None
        while True:
            item = await queues[ep.config.name].get()
            while ep.state == "loading":
                await asyncio.sleep(0.05)

            async def run(
                body: bytes, headers: Mapping[str, str], token: cancellation.CancelToken, rid: str
            ) -> tuple[bytes, str]:
                if ep.state == "failed":
                    raise InvocationError(500, f"endpoint {ep.config.name} failed to load its model")
                return await _run_handler(ep, body, headers, token, rid)

            try:
                await process(ep.config.name, config, item, run, _status_of)
            except Exception:  # S3 or SNS refused: logged, the queue goes on (a lost notification)
                log.exception("endpoint %s: asynchronous request %s", ep.config.name, item.inference_id)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        registry.start_loading()
        workers = []
        for ep in registry.endpoints.values():
            if ep.config.mode == "async" and ep.config.async_output is not None:
                queues[ep.config.name] = asyncio.Queue()
                workers.append(asyncio.create_task(async_worker(ep)))
        yield
        for worker in workers:
            worker.cancel()

    app = Starlette(
        routes=[
            Route("/ping", ping, methods=["GET"]),
            Route("/invocations", invocations, methods=["POST"]),
            Route("/endpoints/{name}/invocations", runtime_invocations, methods=["POST"]),
            Route("/endpoints/{name}/async-invocations", async_invocations, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.registry = registry
    return app


class EndpointLoadError(RuntimeError):
    """A model failed to load when the local server started."""


class LocalEndpointServer:
    """Serve endpoints with uvicorn in a daemon thread: ``with LocalEndpointServer([...]) as server:``.

    ``__enter__`` binds ``host:port`` (port 0 picks a free one; ``.port``/``.url`` report it),
    then blocks until every model is loaded, raising :class:`EndpointLoadError` if one fails or
    ``load_timeout`` seconds pass. With ``wait_for_models=False`` it returns as soon as the
    server answers, and ``/ping`` reports loading progress (what a SageMaker container does).
    ``__exit__`` shuts uvicorn down and joins its thread.
    """

    def __init__(
        self,
        endpoints: Sequence[EndpointConfig],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        default: str | None = None,
        max_body_bytes: int = CONTAINER_MAX_BODY_BYTES,
        body_read_timeout: float = BODY_READ_TIMEOUT_S,
        load_timeout: float = 900.0,
        wait_for_models: bool = True,
    ) -> None:
        self.app = create_app(
            endpoints, default=default, max_body_bytes=max_body_bytes, body_read_timeout=body_read_timeout
        )
        self.registry: ModelRegistry = self.app.state.registry
        self.host = host
        self.port = port
        self.load_timeout = load_timeout
        self.wait_for_models = wait_for_models
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (pass it as boto3's ``endpoint_url``)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def start(self) -> LocalEndpointServer:
        """Start serving and wait until every model is loaded (what ``__enter__`` does)."""
        import uvicorn

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose proto says TCP;
        # without it every keep-alive request after the first waits ~40 ms for a delayed ACK (Nagle)
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="on")
        self._server = server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="tryon-endpoint-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self.load_timeout
        while not server.started:
            if not self._thread.is_alive():
                sock.close()
                raise EndpointLoadError(f"the server on {self.url} stopped while starting")
            if time.monotonic() > deadline:
                self.stop()
                raise EndpointLoadError(f"the server on {self.url} did not start in {self.load_timeout} s")
            time.sleep(0.01)
        if self.wait_for_models:
            self.wait_until_loaded(max(0.0, deadline - time.monotonic()))
        return self

    def wait_until_loaded(self, timeout: float | None = None) -> None:
        """Block until every model has loaded; on a failure or timeout stop and raise EndpointLoadError."""
        timeout = self.load_timeout if timeout is None else timeout
        if not self.registry.loaded.wait(timeout):
            self.stop()
            raise EndpointLoadError(f"models did not load within {timeout:g} s")
        errors = self.registry.load_errors()
        if errors:
            self.stop()
            raise EndpointLoadError("; ".join(f"endpoint {n} failed to load: {e}" for n, e in errors.items()))

    @property
    def running(self) -> bool:
        """Whether the uvicorn thread is still serving."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Shut uvicorn down and wait for its thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._server = None
        self._thread = None

    def __enter__(self) -> LocalEndpointServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
