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
  that real SageMaker raises. An endpoint that hosts inference components routes on boto3's
  ``InferenceComponentName`` (the ``X-Amzn-SageMaker-Inference-Component`` header) and
  refuses a call without one, with an unknown one, or to a component scaled to zero, as
  SageMaker does (``ValidationError``).
- ``POST /endpoints/{name}/async-invocations`` -- ``InvokeEndpointAsync`` for endpoints in
  ``async`` mode: input from S3, a background queue, answer or error to S3, SNS notification
  (:mod:`tryon.server.async_api`).

Each endpoint has a serving mode (:data:`tryon.core.kinds.MODE_LIMITS`) and the server enforces
its limits as SageMaker does: request size, response size and invocation time, answering
over a limit the way boto3 sees it from AWS. Work nobody waits for any more (time limit
passed, client gone) is abandoned through :mod:`tryon.handlers.cancellation`.

Handlers run in worker threads: ``input_fn``/``output_fn`` concurrently, ``predict_fn`` one
at a time per model copy (an endpoint has one; a component has its copy count), so the
event loop never blocks and a pipeline is never used by two requests at once; different
endpoints and components predict concurrently.

This module holds the app and the server; the endpoints and their models are in
:mod:`tryon.server.registry`, one invocation's handling (limits, errors) in
:mod:`tryon.server.invoke`, the asynchronous API in :mod:`tryon.server.async_api`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tryon.handlers import cancellation
from tryon.server.async_api import AsyncRequest, accept_request, accepted, process
from tryon.server.invoke import (
    BODY_READ_TIMEOUT_S,
    CLIENT_CLOSED,
    CONTAINER_MAX_BODY_BYTES,
    TIMEOUT_MESSAGE,
    ClientGone,
    InvocationError,
    invoke,
    log_request,
    run_handler,
    runtime_error,
    status_of,
)
from tryon.server.registry import EndpointConfig, ModelRegistry, ServedEndpoint

__all__ = [
    "CONTAINER_MAX_BODY_BYTES",
    "TIMEOUT_MESSAGE",
    "EndpointConfig",
    "EndpointLoadError",
    "LocalEndpointServer",
    "ModelRegistry",
    "create_app",
    "runtime_client",
]

log = logging.getLogger("tryon.server")
#: The header boto3 sends ``InferenceComponentName`` in (the sagemaker-runtime service model).
COMPONENT_HEADER = "x-amzn-sagemaker-inference-component"


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
            response = await invoke(ep, request, request_id, max_body_bytes, body_read_timeout)
        except ClientGone:
            log_request("/invocations", ep.config.name, CLIENT_CLOSED, start, request_id, "client gone")
            return Response(status_code=CLIENT_CLOSED)
        except InvocationError as exc:
            log_request("/invocations", ep.config.name, exc.status, start, request_id, exc.message)
            body = {"error": exc.message, "request_id": request_id}
            if exc.field:
                body["field"] = exc.field
            headers = {"x-amzn-RequestId": request_id}
            if exc.status == 408:  # the rest of the body may still be on its way: start afresh
                headers["Connection"] = "close"
            return JSONResponse(body, status_code=exc.status, headers=headers)
        log_request("/invocations", ep.config.name, response.status_code, start, request_id)
        response.headers["x-amzn-RequestId"] = request_id
        return response

    async def runtime_invocations(request: Request) -> Response:
        start = time.perf_counter()
        request_id = str(uuid.uuid4())
        name = request.path_params["name"]
        route = "/endpoints/{name}/invocations"
        component = request.headers.get(COMPONENT_HEADER)
        ep = registry.route(name, component)
        if isinstance(ep, tuple):
            error_type, message = ep
            log_request(route, name, 400, start, request_id, message, component=component)
            return runtime_error(400, error_type, message, request_id)
        if component and ep.copies == 0:
            registry.no_capacity(ep)  # what the NoCapacityInvocationFailures alarm sees
        try:
            response = await invoke(ep, request, request_id, max_body_bytes, body_read_timeout)
        except ClientGone:
            log_request(route, name, CLIENT_CLOSED, start, request_id, "client gone", component=component)
            return Response(status_code=CLIENT_CLOSED)
        except InvocationError as exc:
            log_request(route, name, exc.status, start, request_id, exc.message, component=component)
            if exc.front is not None:
                front = exc.front
                return runtime_error(front.status, front.error_type, front.message, request_id)
            if exc.status == 503:
                return runtime_error(429, "ModelNotReadyException", exc.message, request_id)
            original = exc.original_status
            kind = "client" if 400 <= original < 500 else "server"
            message = f'Received {kind} error ({original}) from primary with message "{exc.message}".'
            response = runtime_error(
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
        log_request(route, name, response.status_code, start, request_id, component=component)
        response.headers["x-amzn-RequestId"] = request_id
        return response

    queues: dict[str, asyncio.Queue[AsyncRequest]] = {}

    async def async_invocations(request: Request) -> Response:
        name = request.path_params["name"]
        ep = registry.endpoints.get(name)
        if ep is None or ep.config.component:
            message = f"Endpoint {name} not found."
            if name in registry.components:
                message = (
                    f"Endpoint {name} hosts inference components, which serve real-time invocations only."
                )
            return runtime_error(400, "ValidationError", message, str(uuid.uuid4()))
        item = accept_request(name, ep.config.mode, ep.config.async_output, request)
        if isinstance(item, Response):
            return item
        queues[name].put_nowait(item)
        return accepted(item)

    async def async_worker(ep: ServedEndpoint) -> None:
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
                return await run_handler(ep, body, headers, token, rid)

            try:
                await process(ep.config.name, config, item, run, status_of)
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


def runtime_client(url: str, *, read_timeout: float = 70.0) -> Any:
    """A boto3 ``sagemaker-runtime`` client for a local server at ``url``, configured as the
    workflow's (:data:`tryon.workflow.clients.RUNTIME_CONFIG`: one attempt, no retries) with
    ``read_timeout`` seconds to wait for an answer."""
    import boto3
    from botocore.config import Config

    from tryon.workflow.clients import RUNTIME_CONFIG

    config = RUNTIME_CONFIG.merge(Config(read_timeout=read_timeout))
    return boto3.client("sagemaker-runtime", endpoint_url=url, region_name="us-east-1", config=config)


#: How long stopping the server waits for handler calls to notice their cancellation.
STOP_WORK_TIMEOUT_S = 60.0


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
        """Shut uvicorn down, end the handler calls still running (abandoned ones too), wait for both.

        A handler thread left inside torch when the process exits aborts it (exit 134), so the
        calls are cancelled (they stop at their next step) and waited for.
        """
        if self._server is not None:
            self._server.should_exit = True
        if not self.registry.stop_work(timeout=STOP_WORK_TIMEOUT_S):
            log.warning("handler calls still running %.0f s after the server was asked to stop",
                        STOP_WORK_TIMEOUT_S)  # fmt: skip
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._server = None
        self._thread = None

    def __enter__(self) -> LocalEndpointServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
