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

Handlers run in worker threads: ``input_fn``/``output_fn`` concurrently, ``predict_fn`` one
at a time per endpoint (a per-endpoint lock), so the event loop never blocks and a pipeline
is never used by two requests at once; different endpoints predict concurrently.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import socket
import threading
import time
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tryon.errors import RequestError
from tryon.handlers import HANDLER_MODULES
from tryon.handlers.common import JSON_CONTENT_TYPE, MAX_BODY_BYTES

log = logging.getLogger("tryon.server")

HANDLER_FUNCTIONS = ("model_fn", "input_fn", "predict_fn", "output_fn")
#: What real SageMaker reports as the variant that served a request.
PRODUCTION_VARIANT = "AllTraffic"


@dataclass(frozen=True)
class EndpointConfig:
    """One served endpoint: its name (as boto3's ``EndpointName``), handler kind and model folder."""

    name: str
    kind: str
    model_dir: str


class BodyTooLarge(Exception):
    """The request body is over the server's limit."""

    def __init__(self, size: int | None, limit: int) -> None:
        seen = f"is {size} bytes" if size is not None else "is larger than the limit"
        super().__init__(f"body: {seen}; the limit is {limit} bytes")
        self.limit = limit


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


class InvocationError(Exception):
    """An invocation failed: ``status`` is what the handler contract maps it to (400, 413, 500, 503)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(None, limit)
        chunks.append(chunk)
    return b"".join(chunks)


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


async def _invoke(ep: _Endpoint, request: Request, limit: int) -> Response:
    """Run one request through an endpoint; raises InvocationError with the contract status.

    ``input_fn`` and ``output_fn`` (parsing, serialising) run in worker threads concurrently;
    ``predict_fn`` runs in a worker thread under the endpoint's lock, one at a time.
    """
    if ep.state == "loading":
        raise InvocationError(503, f"endpoint {ep.config.name} is still loading its model")
    if ep.state == "failed":
        raise InvocationError(500, f"endpoint {ep.config.name} failed to load its model: {ep.error}")
    try:
        body = await _read_body(request, limit)
    except BodyTooLarge as exc:
        raise InvocationError(413, str(exc), "body") from exc
    except ClientDisconnect as exc:
        raise InvocationError(400, "body: the client disconnected while sending it", "body") from exc
    module = ep.module
    assert module is not None
    accept = request.headers.get("accept")
    try:
        data = await run_in_threadpool(module.input_fn, body, request.headers.get("content-type"))
        async with ep.lock:
            prediction = await run_in_threadpool(module.predict_fn, data, ep.model)
        payload, ctype = await run_in_threadpool(_encode_output, module, prediction, accept)
    except RequestError as exc:
        raise InvocationError(400, str(exc), exc.field) from exc
    except Exception as exc:
        log.exception("endpoint %s: handler fault", ep.config.name)
        raise InvocationError(500, f"{type(exc).__name__}: {exc}") from exc
    headers = {"x-Amzn-Invoked-Production-Variant": PRODUCTION_VARIANT}
    return Response(payload, media_type=ctype, headers=headers)


def _log_request(
    route: str, endpoint: str | None, status: int, start: float, error: str | None = None
) -> None:
    record: dict[str, Any] = {"route": route, "endpoint": endpoint, "status": status}
    record["ms"] = round((time.perf_counter() - start) * 1000.0, 1)
    if error:
        record["error"] = error
    log.info(json.dumps(record))


def _runtime_error(status: int, error_type: str, message: str, **extra: Any) -> JSONResponse:
    """An error in the shape the sagemaker-runtime API uses, which botocore maps to exceptions."""
    return JSONResponse(
        {"message": message, "Message": message, **extra},
        status_code=status,
        headers={"x-amzn-ErrorType": error_type},
    )


def create_app(
    endpoints: Sequence[EndpointConfig],
    *,
    default: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Starlette:
    """The ASGI app serving ``endpoints``; models start loading when the app starts (lifespan).

    ``default`` names the endpoint behind ``POST /invocations`` (the first one unless set).
    ``app.state.registry`` is the :class:`ModelRegistry`.
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
        ep = registry.endpoints[registry.default]
        try:
            response = await _invoke(ep, request, max_body_bytes)
        except InvocationError as exc:
            _log_request("/invocations", ep.config.name, exc.status, start, exc.message)
            body = {"error": exc.message}
            if exc.field:
                body["field"] = exc.field
            return JSONResponse(body, status_code=exc.status)
        _log_request("/invocations", ep.config.name, response.status_code, start)
        return response

    async def runtime_invocations(request: Request) -> Response:
        start = time.perf_counter()
        name = request.path_params["name"]
        route = "/endpoints/{name}/invocations"
        ep = registry.endpoints.get(name)
        if ep is None:
            _log_request(route, name, 400, start, "not found")
            return _runtime_error(400, "ValidationError", f"Endpoint {name} not found.")
        try:
            response = await _invoke(ep, request, max_body_bytes)
        except InvocationError as exc:
            _log_request(route, name, exc.status, start, exc.message)
            if exc.status == 503:
                return _runtime_error(429, "ModelNotReadyException", exc.message)
            kind = "client" if exc.status < 500 else "server"
            message = f'Received {kind} error ({exc.status}) from primary with message "{exc.message}".'
            return _runtime_error(
                424,
                "ModelError",
                message,
                ErrorCode=f"{kind.upper()}_ERROR_FROM_MODEL",
                OriginalStatusCode=exc.status,
                OriginalMessage=exc.message,
            )
        _log_request(route, name, response.status_code, start)
        return response

    @asynccontextmanager
    async def lifespan(app: Starlette):
        registry.start_loading()
        yield

    app = Starlette(
        routes=[
            Route("/ping", ping, methods=["GET"]),
            Route("/invocations", invocations, methods=["POST"]),
            Route("/endpoints/{name}/invocations", runtime_invocations, methods=["POST"]),
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
        max_body_bytes: int = MAX_BODY_BYTES,
        load_timeout: float = 900.0,
        wait_for_models: bool = True,
    ) -> None:
        self.app = create_app(endpoints, default=default, max_body_bytes=max_body_bytes)
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
        sock = socket.socket(family, socket.SOCK_STREAM)
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
