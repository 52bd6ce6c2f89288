"""Lambda emulation: the template's functions run in-process, each with its own environment.

moto's Lambda backend wants Docker; the harness patches its invoke (:mod:`tryon.local.moto_patches`)
to :meth:`LambdaRuntime.invoke`, which imports the function's handler from ``functions/``,
sets the function's template environment, enforces Step Functions' 256 KiB state limit on the
input and the answer, and returns what moto expects: ``(payload JSON, errored, logs)``.
"""

from __future__ import annotations

import importlib.util
import io
import json
import threading
import time
import traceback
import uuid
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from tryon.core.schema import LAMBDA_ENVIRONMENT_BYTES
from tryon.local.lambda_env import lambda_environment
from tryon.local.template import SamTemplate

#: Step Functions caps each state's input and output (and an execution's input) at 256 KiB.
STATE_LIMIT_BYTES = 256 * 1024
#: Lambda refuses a function whose environment variables, measured as their JSON, exceed 4 KB
#: ("Lambda was unable to configure your environment variables ... exceeded the 4KB limit").
ENVIRONMENT_LIMIT_BYTES = LAMBDA_ENVIRONMENT_BYTES


def check_environment_size(name: str, env: Mapping[str, str]) -> int:
    """The size Lambda measures of a function's variables; ValueError over its 4 KB, as a deploy fails."""
    size = len(json.dumps(dict(env), separators=(",", ":"), ensure_ascii=False).encode())
    if size > ENVIRONMENT_LIMIT_BYTES:
        longest = sorted(env, key=lambda k: len(env[k]), reverse=True)[:3]
        raise ValueError(
            f"function {name}: its environment variables take {size} bytes; Lambda allows "
            f"{ENVIRONMENT_LIMIT_BYTES} (the longest: {', '.join(longest)}): shorten the template "
            "parameters they come from (job defaults, Presets)"
        )
    return size


#: The invocation's event (JSON text) in the function's environment, for fault injection to tell
#: one job's calls from another's (tryon.local.faults); nothing in the functions reads it.
EVENT_VARIABLE = "_TRYON_LOCAL_INVOCATION_EVENT"
#: Lambda tries a failed asynchronous invocation this many more times unless the function's
#: ``EventInvokeConfig`` says otherwise (AWS waits one, then two minutes in between; locally none).
DEFAULT_ASYNC_RETRIES = 2


@dataclass(frozen=True)
class FunctionSpec:
    """One function of the template, as created in moto."""

    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    timeout_s: int
    memory_mb: int


@dataclass
class LambdaContext:
    """The parts of the Lambda context object that powertools and handlers read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_s: int
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "local"
    _deadline: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self._deadline = time.monotonic() + self.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's time-out."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` as the calling thread's environment for the block (:mod:`tryon.local.lambda_env`).

    Per thread, not per process: invocations of different functions run at the same time,
    each seeing its own function's variables.
    """
    with lambda_environment(values):
        yield


class StateTooLarge(Exception):
    """A state's input or output is over Step Functions' 256 KiB (``States.DataLimitExceeded`` on AWS)."""


def check_state_size(document: Any, what: str) -> None:
    """Fail as AWS would when a Task's input or result is over :data:`STATE_LIMIT_BYTES`."""
    size = len(json.dumps(document, default=str).encode())
    if size > STATE_LIMIT_BYTES:
        raise StateTooLarge(f"{what} is {size} bytes; Step Functions allows {STATE_LIMIT_BYTES} per state")


def zip_dir(path: Path) -> bytes:
    """The function's code as the zip ``CreateFunction`` takes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(path.rglob("*.py")):
            zf.write(file, file.relative_to(path).as_posix())
    return buf.getvalue()


def _logs_to_stderr(service: str) -> None:
    """Send a function's structured logs (powertools writes them to stdout) to stderr.

    On Lambda stdout is the function's log stream; here it is the user's terminal, where
    stdout carries only the command's answer (``--json``: one JSON object).
    """
    import logging
    import sys

    for handler in logging.getLogger(service).handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)


class LambdaRuntime:
    """The template's functions, created in moto and run in-process (one invocation at a time per function).

    ``base_environment()`` is called at each invocation for the variables every function
    gets besides its own (region, the local endpoint server's URL ...). ``invocations``
    records ``(logical id, seconds, errored)`` of each call. ``on_failure(destination ARN,
    record)`` receives an asynchronous invocation that failed every attempt, in Lambda's
    destination record format, when the function's ``EventInvokeConfig`` names a destination.
    """

    def __init__(self, template: SamTemplate, base_environment: Callable[[], dict[str, str]]) -> None:
        self.template = template
        self.base_environment = base_environment
        self.functions: dict[str, FunctionSpec] = {}
        self.invocations: list[tuple[str, float, bool]] = []
        self.on_failure: Callable[[str, dict[str, Any]], None] | None = None
        self.lock = threading.RLock()
        self._function_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._modules: dict[str, ModuleType] = {}

    def create_functions(self, lam: Any, role_arn: str, stack_name: str) -> None:
        """``CreateFunction`` for each ``AWS::Serverless::Function``; resolves their ``Ref``/``Arn``."""
        t = self.template
        for logical in t.resources_of_type("AWS::Serverless::Function"):
            name = f"{stack_name}-{logical}"
            code_dir = (t.root / t.function_property(logical, "CodeUri")).resolve()
            handler = t.function_property(logical, "Handler")
            env = t.function_environment(logical)
            check_environment_size(logical, env)
            timeout = int(t.function_property(logical, "Timeout", 3))
            memory = int(t.function_property(logical, "MemorySize", 128))
            arn = lam.create_function(
                FunctionName=name,
                Runtime=t.function_property(logical, "Runtime"),
                Role=role_arn,
                Handler=handler,
                Code={"ZipFile": zip_dir(code_dir)},
                Timeout=timeout,
                MemorySize=memory,
                Environment={"Variables": env},
            )["FunctionArn"]
            t.resources[logical] = {"Ref": name, "Arn": arn}
            self.functions[name] = FunctionSpec(logical, name, arn, code_dir, handler, env, timeout, memory)

    def _environment(self, fn: FunctionSpec) -> dict[str, str]:
        return {
            **fn.environment,
            **self.base_environment(),
            "AWS_LAMBDA_FUNCTION_NAME": fn.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_mb),
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
        }

    def _module(self, fn: FunctionSpec) -> ModuleType:
        with self.lock:
            return self._load_module(fn)

    def _load_module(self, fn: FunctionSpec) -> ModuleType:
        if fn.name not in self._modules:
            module_name, _, _ = fn.handler.rpartition(".")
            path = fn.code_dir / (module_name.replace(".", "/") + ".py")
            spec = importlib.util.spec_from_file_location(f"_tryon_lambda_{fn.logical_id}_{id(self)}", path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {path}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            _logs_to_stderr(fn.environment.get("POWERTOOLS_SERVICE_NAME", "service_undefined"))
            self._modules[fn.name] = module
        return self._modules[fn.name]

    def invoke(self, function_name: str, event: Any) -> tuple[str, bool, str]:
        """Run a function's handler in-process, as the Lambda runtime would; (payload, errored, logs)."""
        fn = self.functions[function_name]
        if isinstance(event, str | bytes):
            try:
                event = json.loads(event or "{}")
            except ValueError:  # moto hands a string state over unencoded; Lambda gets that string
                event = event.decode() if isinstance(event, bytes) else event
        start = time.perf_counter()
        # One invocation at a time per function (one warm sandbox each), any number across
        # functions: two executions of the same job really do run their steps concurrently.
        env = {**self._environment(fn), EVENT_VARIABLE: json.dumps(event, default=str)}
        with self._function_locks[fn.name], environment(env):
            try:
                handler = getattr(self._module(fn), fn.handler.rpartition(".")[2])
                context = LambdaContext(fn.name, fn.arn, fn.memory_mb, fn.timeout_s)
                check_state_size(event, f"the input of {fn.logical_id}")
                result = handler(event if event is not None else {}, context)
                payload, errored, logs = json.dumps(result, default=str), False, ""
                check_state_size(result, f"the output of {fn.logical_id}")
            except Exception as exc:
                stack = traceback.format_exception(exc)
                error_type = (
                    "States.DataLimitExceeded" if isinstance(exc, StateTooLarge) else type(exc).__name__
                )
                payload = json.dumps(
                    {"errorType": error_type, "errorMessage": str(exc), "stackTrace": stack[-8:]}
                )
                errored, logs = True, "".join(stack)
        self.invocations.append((fn.logical_id, time.perf_counter() - start, errored))
        return payload, errored, logs

    def invoke_async(self, function_name: str, event: Any) -> None:
        """An asynchronous invocation (as SNS delivers): retried, then sent to the on-failure destination.

        As Lambda does with the function's ``EventInvokeConfig``: ``MaximumRetryAttempts`` more
        tries after an error, then a record of the last one to ``DestinationConfig.OnFailure``.
        """
        fn = self.functions[function_name]
        config = self.template.function_property(fn.logical_id, "EventInvokeConfig") or {}
        attempts = 1 + int(config.get("MaximumRetryAttempts", DEFAULT_ASYNC_RETRIES))
        payload = ""
        for _ in range(attempts):
            payload, errored, _ = self.invoke(function_name, event)
            if not errored:
                return
        destination = ((config.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        if destination and self.on_failure is not None:
            request = json.loads(event) if isinstance(event, str | bytes) else event
            self.on_failure(
                destination,
                {
                    "version": "1.0",
                    "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "requestContext": {
                        "requestId": str(uuid.uuid4()),
                        "functionArn": f"{fn.arn}:$LATEST",
                        "condition": "RetriesExhausted",
                        "approximateInvokeCount": attempts,
                    },
                    "requestPayload": request,
                    "responseContext": {
                        "statusCode": 200,
                        "executedVersion": "$LATEST",
                        "functionError": "Unhandled",
                    },
                    "responsePayload": json.loads(payload),
                },
            )
