"""Fault injection: endpoint calls answered by botocore itself, as SageMaker would fail them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tryon.local.lambdas import environment
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
