"""The endpoints one local server serves: their configuration and their models, loaded once."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import json
import logging
import threading
import time
from collections.abc import Sequence
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


@dataclass(frozen=True)
class EndpointConfig:
    """One served endpoint: its name (boto3's ``EndpointName``), handler kind, model folder and mode.

    ``mode`` (``realtime``, ``serverless``, ``async``) sets the limits the server enforces
    (:data:`tryon.core.kinds.MODE_LIMITS`); ``max_invocation_seconds`` tightens the time limit
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


@dataclass
class ServedEndpoint:
    """Runtime state of one endpoint: loaded model, load status, and the lock serialising predicts."""

    config: EndpointConfig
    state: str = "loading"  # loading | ready | failed
    error: str | None = None
    load_ms: float | None = None
    module: ModuleType | None = None
    model: Any = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: the handler calls running in worker threads (stopped when the server stops)
    work: RunningWork = field(default_factory=RunningWork)

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
        self.endpoints: dict[str, ServedEndpoint] = {}
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
            self.endpoints[cfg.name] = ServedEndpoint(cfg)
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
                    # a model folder's own mistake says what to fix; anything else shows its type
                    ep.error = (
                        str(exc) if isinstance(exc, ModelFolderError) else f"{type(exc).__name__}: {exc}"
                    )
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
