"""Fault injection: AWS calls answered with the errors AWS documents, before the request leaves.

Two mechanisms:

- :func:`before_endpoint_call` / :func:`error_answer`: a hook on the workflow's
  ``sagemaker-runtime`` client (botocore's ``before-call``), for tests that hold or fail
  endpoint calls;
- :class:`FaultInjector`: any call a Lambda function makes (S3, DynamoDB, SageMaker runtime,
  Step Functions, SNS, EventBridge), answered at botocore's ``before-send`` with the service's
  own error response (throttling, 500, 503, 409) or a connection reset, once or every time.
  It answers before moto sees the request (moto's stubber is itself a ``before-send`` hook),
  so botocore's retries apply as they would on AWS and the faulted call changes nothing.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from unittest import mock
from urllib.parse import unquote, urlsplit

from tryon.local.lambdas import EVENT_VARIABLE, environment
from tryon.workflow import clients

#: The sagemaker-runtime operations a hook can intercept.
OPERATIONS = ("InvokeEndpoint", "InvokeEndpointAsync")


def before_endpoint_call(
    endpoint_url: str,
    endpoint: str,
    hook: Callable[[Mapping[str, Any]], Any],
    operation: str = "InvokeEndpoint",
) -> Callable[[], None]:
    """Call ``hook(request)`` before each workflow call of ``operation`` to ``endpoint``.

    Whatever ``hook`` returns instead of None (an ``(AWSResponse, parsed)`` pair) is what
    botocore answers instead of sending the request, as botocore's ``before-call`` event does.
    Returns a function that removes the hook.
    """
    if operation not in OPERATIONS:
        raise ValueError(f"operation must be one of {', '.join(OPERATIONS)}, got {operation!r}")
    with environment({"TRYON_SAGEMAKER_RUNTIME_URL": endpoint_url}):
        client = clients.client("sagemaker-runtime")

    def before_call(params: Mapping[str, Any], **_: Any) -> Any:
        if params.get("url_path", "").find(f"/endpoints/{endpoint}/") < 0:
            return None
        return hook(params)

    event = f"before-call.sagemaker-runtime.{operation}"
    client.meta.events.register(event, before_call)
    return lambda: client.meta.events.unregister(event, before_call)


def error_answer(
    endpoint_url: str, endpoint: str, *, code: str, status: int, message: str, times: int
) -> tuple[Callable[[Mapping[str, Any]], Any], Callable[[], int]]:
    """A hook failing the next ``times`` calls with an AWS error, and a function counting them."""
    from botocore.awsrequest import AWSResponse

    failed = [0]

    def fail(_: Mapping[str, Any]) -> Any:
        if failed[0] >= times:
            return None
        failed[0] += 1
        response = AWSResponse(f"{endpoint_url}/endpoints/{endpoint}/invocations", status, {}, None)
        parsed = {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}},
        }
        return response, parsed

    return fail, lambda: failed[0]


# ------------------------------------------------------------------ any call of a function
@dataclass(frozen=True)
class Fault:
    """One documented transient fault: an error response (``status`` and ``code``) or a connection reset."""

    name: str  # throttling | 500 | 503 | 409 | reset
    status: int = 0
    code: str = ""
    message: str = ""

    @property
    def reset(self) -> bool:
        return self.status == 0


RESET = Fault("reset")
#: The transient faults each service documents (S3 throttles with 503 SlowDown; 409 is S3's answer
#: to a conditional write racing another write to the same key, so it applies to those only).
SERVICE_FAULTS: dict[str, tuple[Fault, ...]] = {
    "s3": (
        Fault("throttling", 503, "SlowDown", "Please reduce your request rate."),
        Fault("500", 500, "InternalError", "We encountered an internal error. Please try again."),
        Fault("503", 503, "ServiceUnavailable", "Service is unable to handle request."),
        RESET,
    ),
    "dynamodb": (
        Fault("throttling", 400, "ThrottlingException", "Rate of requests exceeds the allowed throughput."),
        Fault("500", 500, "InternalServerError", "Internal server error"),
        Fault("503", 503, "ServiceUnavailable", "Service unavailable"),
        RESET,
    ),
    "sagemaker-runtime": (
        Fault("throttling", 400, "ThrottlingException", "Rate exceeded"),
        Fault("500", 500, "InternalFailure", "An internal failure occurred."),
        Fault("503", 503, "ServiceUnavailable", "The service is unavailable."),
        RESET,
    ),
    "stepfunctions": (
        Fault("throttling", 400, "ThrottlingException", "Rate exceeded"),
        Fault("500", 500, "InternalFailure", "An internal failure occurred."),
        Fault("503", 503, "ServiceUnavailable", "Service unavailable"),
        RESET,
    ),
    "sns": (
        Fault("throttling", 429, "Throttled", "Rate exceeded"),
        Fault("500", 500, "InternalError", "Internal error"),
        Fault("503", 503, "ServiceUnavailable", "Service unavailable"),
        RESET,
    ),
    "events": (
        Fault("throttling", 400, "ThrottlingException", "Rate exceeded"),
        Fault("500", 500, "InternalException", "Internal exception"),
        Fault("503", 503, "ServiceUnavailable", "Service unavailable"),
        RESET,
    ),
}
CONFLICT = Fault("409", 409, "ConditionalRequestConflict", "A conflicting operation occurred. Please retry.")
#: botocore's hyphenated service ids -> botocore service names
_SERVICE_NAMES = {"sfn": "stepfunctions", "eventbridge": "events"}


def faults_for(service: str, operation: str, conditional: bool = False) -> tuple[Fault, ...]:
    """The faults a call can meet: its service's, and 409 for S3's conditional writes."""
    found = SERVICE_FAULTS[service]
    return (*found, CONFLICT) if service == "s3" and operation == "PutObject" and conditional else found


@cache
def _protocol(service: str) -> str:
    import botocore.session

    return botocore.session.get_session().get_service_model(service).protocol


def error_response(service: str, url: str, fault: Fault) -> Any:
    """The HTTP response ``service`` gives for ``fault``, in its protocol (parsed by botocore as AWS's)."""
    from botocore.awsrequest import AWSResponse
    from moto.core.botocore_stubber import MockRawResponse

    protocol = _protocol(service)
    headers = {"x-amzn-RequestId": "injected-fault"}
    if protocol == "rest-xml":
        body = f"<Error><Code>{fault.code}</Code><Message>{fault.message}</Message></Error>"
        headers["Content-Type"] = "application/xml"
    elif protocol == "query":
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{fault.code}</Code><Message>{fault.message}</Message>"
            "</Error><RequestId>injected-fault</RequestId></ErrorResponse>"
        )
        headers["Content-Type"] = "text/xml"
    else:  # json, rest-json
        body = json.dumps({"__type": fault.code, "message": fault.message})
        headers["Content-Type"] = "application/x-amz-json-1.0"
        headers["x-amzn-ErrorType"] = fault.code
    return AWSResponse(url, fault.status, headers, MockRawResponse(body.encode()))


def s3_key(url: str) -> str:
    """The object key a (virtual-hosted or path-style) S3 request URL names."""
    parts = urlsplit(url)
    path = unquote(parts.path.lstrip("/"))
    host = parts.hostname or ""
    if host.startswith("s3.") or host.startswith("s3-") or host in ("localhost", "127.0.0.1"):
        path = path.partition("/")[2]  # path-style: the bucket comes first
    return path


#: Header the harness's own clients put on their requests: the world around the stack, not a function.
HARNESS_HEADER = "X-Tryon-Local-Harness"


def mark_harness_request(request: Any, **_: Any) -> None:
    """``before-send`` hook of the harness's session: tags its requests so no fault is injected into them."""
    request.headers[HARNESS_HEADER] = "1"


@dataclass
class Rule:
    """``faults`` in turn on the calls ``matches(call)`` accepts: ``times`` of them, or all (None)."""

    faults: tuple[Fault, ...]
    matches: Callable[[Call], bool]
    times: int | None = 1
    fired: int = 0
    seen: list[Call] = field(default_factory=list)

    def next_fault(self) -> Fault:
        return self.faults[(self.fired - 1) % len(self.faults)]


@dataclass(frozen=True)
class Call:
    """One call a function makes, as the injector sees it."""

    function: str  # logical id
    service: str
    operation: str
    url: str
    event: str  # the invocation's event, JSON text

    @property
    def key(self) -> str:
        return s3_key(self.url) if self.service == "s3" else ""


class FaultInjector:
    """Answers the functions' AWS calls with faults, per :class:`Rule`; every call is also counted.

    ``function_of(name)`` maps a physical function name (the calling thread's
    ``AWS_LAMBDA_FUNCTION_NAME``) to its logical id. Use as a context manager (it patches moto's
    stubber for its duration). ``delivered`` lists the calls that went through unfaulted.
    """

    def __init__(self, function_of: Callable[[str], str | None]) -> None:
        self.function_of = function_of
        self.rules: list[Rule] = []
        self.delivered: list[Call] = []
        self._lock = threading.Lock()
        self._patch: AbstractContextManager[Any] | None = None

    def arm(
        self, fault: Fault | tuple[Fault, ...], matches: Callable[[Call], bool], times: int | None = 1
    ) -> Rule:
        """Answer the next ``times`` calls ``matches`` takes (None: all) with ``fault`` (several in turn)."""
        rule = Rule(fault if isinstance(fault, tuple) else (fault,), matches, times)
        with self._lock:
            self.rules.append(rule)
        return rule

    def disarm(self, rule: Rule) -> None:
        with self._lock:
            if rule in self.rules:
                self.rules.remove(rule)

    def _call(self, event_name: str, request: Any) -> Call | None:
        if request.headers.get(HARNESS_HEADER):
            return None
        name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        function = self.function_of(name) if name else None
        if function is None:
            return None
        _, service_id, operation = event_name.split(".", 2)
        service = _SERVICE_NAMES.get(service_id, service_id)
        return Call(function, service, operation, request.url, os.environ.get(EVENT_VARIABLE, ""))

    def _answer(self, event_name: str, request: Any) -> Any:
        from botocore.exceptions import ConnectionClosedError

        call = self._call(event_name, request)
        if call is None:
            return None
        with self._lock:
            rule = next(
                (r for r in self.rules if (r.times is None or r.fired < r.times) and r.matches(call)),
                None,
            )
            if rule is None:
                self.delivered.append(call)
                return None
            rule.fired += 1
            rule.seen.append(call)
            fault = rule.next_fault()
        if fault.reset:
            raise ConnectionClosedError(endpoint_url=request.url)
        return error_response(call.service, request.url, fault)

    def __enter__(self) -> FaultInjector:
        from moto.core.botocore_stubber import BotocoreStubber

        original = BotocoreStubber.__call__
        injector = self

        def stubber(stub: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
            answer = injector._answer(event_name, request)
            return answer if answer is not None else original(stub, event_name, request, **kwargs)

        self._patch = mock.patch.object(BotocoreStubber, "__call__", stubber)
        self._patch.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._patch is not None:
            self._patch.__exit__(*exc_info)
            self._patch = None
