"""The endpoints one local server serves: their configuration and their models, loaded once."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from tryon.core.kinds import MODE_LIMITS, EndpointMode, ModeLimits, check_mode
from tryon.handlers import HANDLER_MODULES
from tryon.handlers.cancellation import RunningWork
from tryon.handlers.common import ModelFolderError
from tryon.server.async_api import AsyncOutput

log = logging.getLogger("tryon.server")

HANDLER_FUNCTIONS = ("model_fn", "input_fn", "predict_fn", "output_fn")


#: What SageMaker answers (ValidationError, HTTP 400) when an inference component has no copy running.
NO_CAPACITY_MESSAGE = (
    "Inference Component has no capacity to process this request. ApplicationAutoScaling may be "
    "in-progress (if configured) or try to increase the capacity by invoking "
    "UpdateInferenceComponentRuntimeConfig API."
)


@dataclass(frozen=True)
class EndpointConfig:
    """One served model: its endpoint (boto3's ``EndpointName``), handler kind, model folder and mode.

    ``mode`` (``realtime``, ``serverless``, ``async``) sets the limits the server enforces
    (:data:`tryon.core.kinds.MODE_LIMITS`); ``max_invocation_seconds`` tightens the time limit
    (tests use it so as not to wait a minute).

    With ``component`` set the model is that inference component of endpoint ``name``
    (boto3's ``InferenceComponentName``; several configs share the endpoint name, each with
    its own component): ``copies`` model copies serve it, one request each at a time (0: scaled
    to zero, every call answered "no capacity"); ``scale_from_zero_seconds`` emulates the
    scale-out path from zero (the no-capacity alarm and its step-scaling policy): that long
    after a call found no copy, one copy runs again (None: it stays at zero).
    """

    name: str
    kind: str
    model_dir: str
    mode: EndpointMode = "realtime"
    max_invocation_seconds: float | None = None
    #: where an ``async`` endpoint writes answers and errors and which SNS topics it tells
    async_output: AsyncOutput | None = None
    component: str | None = None
    copies: int = 1
    scale_from_zero_seconds: float | None = None

    @property
    def key(self) -> str:
        """The name the registry knows this model by: its component's, else its endpoint's."""
        return self.component or self.name

    @property
    def limits(self) -> ModeLimits:
        """The mode's limits, with ``max_invocation_seconds`` applied."""
        limits = MODE_LIMITS[check_mode(self.mode)]
        if self.max_invocation_seconds is None:
            return limits
        return dataclasses.replace(limits, max_invocation_seconds=self.max_invocation_seconds)


@dataclass
class ServedEndpoint:
    """Runtime state of one endpoint or component: its model copies, load status and running copy count.

    Each copy serves one ``predict_fn`` at a time (:meth:`copy`); one copy is the per-endpoint
    lock the server always had.
    """

    config: EndpointConfig
    state: str = "loading"  # loading | ready | failed
    error: str | None = None
    load_ms: float | None = None
    module: ModuleType | None = None
    model: Any = None
    #: the handler calls running in worker threads (stopped when the server stops)
    work: RunningWork = field(default_factory=RunningWork)
    models: list[Any] = field(default_factory=list)
    #: copies running now (a component scaled to zero has none); set by ModelRegistry.scale
    copies: int = 1
    #: invocations refused for want of a copy (CloudWatch's NoCapacityInvocationFailures)
    no_capacity_failures: int = 0
    #: the emulated scale-out from zero (EndpointConfig.scale_from_zero_seconds; ModelRegistry.scale sets it)
    scale_from_zero_seconds: float | None = None
    scaling_out: bool = False
    _free: list[Any] | None = None
    _turn: asyncio.Condition | None = None

    @asynccontextmanager
    async def copy(self) -> AsyncIterator[Any]:
        """Hold one model copy for a predict, waiting while as many as run (``copies``) are busy."""
        if self._free is None or self._turn is None:
            self._free = list(self.models or [self.model])
            self._turn = asyncio.Condition()
        loaded = len(self.models or [self.model])
        async with self._turn:
            # at least one: a call that passed the capacity check is served even if the copies
            # were scaled to zero since
            await self._turn.wait_for(lambda: loaded - len(self._free) < max(1, self.copies) and self._free)
            model = self._free.pop()
        try:
            yield model
        finally:
            async with self._turn:
                self._free.append(model)
                self._turn.notify_all()

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.config.kind, "model_dir": self.config.model_dir}
        out["mode"] = self.config.mode
        out["state"] = self.state
        if self.config.component:
            out.update(endpoint=self.config.name, copies=self.copies)
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
        self.endpoints: dict[str, ServedEndpoint] = {}
        #: endpoint name -> component name -> the component's model (endpoints hosting components)
        self.components: dict[str, dict[str, ServedEndpoint]] = {}
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
            if cfg.key in self.endpoints:
                raise ValueError(
                    f"{'component' if cfg.component else 'endpoint'} name {cfg.key!r} is used twice"
                )
            if cfg.component:
                _check_component(cfg)
            plain = self.endpoints.get(cfg.name)
            if (cfg.component is None and cfg.name in self.components) or (
                cfg.component and plain is not None and not plain.config.component
            ):
                raise ValueError(f"endpoint {cfg.name!r} cannot both host inference components and a model")
            served = self.endpoints[cfg.key] = ServedEndpoint(
                cfg, copies=cfg.copies, scale_from_zero_seconds=cfg.scale_from_zero_seconds
            )
            if cfg.component:
                self.components.setdefault(cfg.name, {})[cfg.component] = served
        self.default = default or endpoints[0].key
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
                    # a component scaled to zero keeps one loaded copy: SageMaker caches its artefact
                    ep.models = [
                        ep.module.model_fn(ep.config.model_dir) for _ in range(max(1, ep.config.copies))
                    ]
                    ep.model = ep.models[0]
                except BaseException as exc:  # a failed load must surface, never hang /ping
                    log.exception("endpoint %s failed to load", ep.config.key)
                    # a model folder's own mistake says what to fix; anything else shows its type
                    ep.error = (
                        str(exc) if isinstance(exc, ModelFolderError) else f"{type(exc).__name__}: {exc}"
                    )
                    ep.state = "failed"
                else:
                    ep.state = "ready"
                ep.load_ms = round((time.perf_counter() - start) * 1000.0, 1)
                record = {"event": "load", "endpoint": ep.config.name, "state": ep.state, "ms": ep.load_ms}
                if ep.config.component:
                    record["component"] = ep.config.component
                log.info(json.dumps(record))
        finally:
            self.loaded.set()

    @property
    def state(self) -> str:
        """``ready`` when every model is loaded, ``failed`` if any failed, else ``loading``."""
        states = {ep.state for ep in self.endpoints.values()}
        if "failed" in states:
            return "failed"
        return "ready" if states == {"ready"} else "loading"

    def stop_work(self, timeout: float) -> bool:
        """Cancel the handler calls still running (abandoned ones too), wait for them; True if all ended."""
        deadline = time.monotonic() + timeout
        return all(
            ep.work.stop("the server is stopping", max(0.0, deadline - time.monotonic()))
            for ep in self.endpoints.values()
        )

    def load_errors(self) -> dict[str, str]:
        """Endpoint name -> load error, for the endpoints that failed."""
        return {name: ep.error or "" for name, ep in self.endpoints.items() if ep.state == "failed"}

    def route(self, endpoint: str, component: str | None) -> ServedEndpoint | tuple[str, str]:
        """The model an InvokeEndpoint call reaches, or (error type, message) as SageMaker refuses it."""
        hosted = self.components.get(endpoint)
        if hosted is None:
            served = self.endpoints.get(endpoint)
            if served is None or served.config.component:
                return "ValidationError", f"Endpoint {endpoint} not found."
            if component:
                return "ValidationError", (
                    "Inference Component Name header is not allowed for endpoints to which you dont plan "
                    "to deploy inference components. Please remove the Inference Component Name header "
                    "and try again."
                )
            return served
        if not component:
            return "ValidationError", (
                "Inference Component Name header is required for endpoints to which you plan to deploy "
                "inference components. Please include Inference Component Name header or consider using "
                f"SageMaker models. (Endpoint {endpoint} hosts: {', '.join(sorted(hosted))}.)"
            )
        served = hosted.get(component)
        if served is None:
            return "ValidationError", (
                f"Inference component {component} not found on endpoint {endpoint} "
                f"(it hosts: {', '.join(sorted(hosted))})."
            )
        return served

    def scale(self, component: str, copies: int, *, scale_from_zero_seconds: float | None = None) -> None:
        """Set a component's running copies (0 scales it to zero), as its scaling policies would, and
        how long its emulated scale-out from zero takes (None: it stays at zero)."""
        served = self.endpoints.get(component)
        if served is None or not served.config.component:
            raise ValueError(f"no inference component named {component!r}")
        if not 0 <= copies <= max(1, served.config.copies):
            raise ValueError(
                f"{component}: copies must be 0..{max(1, served.config.copies)} (the loaded copies)"
            )
        served.copies = copies
        served.scale_from_zero_seconds = scale_from_zero_seconds

    def no_capacity(self, served: ServedEndpoint) -> None:
        """Count a call that found no copy and, as the step-scaling policy on the alarm would, start one."""
        served.no_capacity_failures += 1
        delay = served.scale_from_zero_seconds
        if delay is not None and not served.scaling_out:
            served.scaling_out = True

            def scale_out() -> None:
                served.copies = max(served.copies, 1)
                served.scaling_out = False

            timer = threading.Timer(delay, scale_out)
            timer.daemon = True
            timer.start()


def _check_component(cfg: EndpointConfig) -> None:
    """ValueError unless a component's config is one SageMaker could host."""
    if cfg.mode != "realtime":
        raise ValueError(
            f"component {cfg.component!r}: inference components serve real-time endpoints only, "
            f"not {cfg.mode}"
        )
    if cfg.copies < 0:
        raise ValueError(f"component {cfg.component!r}: copies must be >= 0")
    if cfg.scale_from_zero_seconds is not None and cfg.scale_from_zero_seconds < 0:
        raise ValueError(f"component {cfg.component!r}: scale_from_zero_seconds must be >= 0")
