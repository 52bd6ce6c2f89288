"""boto3 clients of the workflow, created once per process (a warm Lambda reuses them)."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError

from tryon.core import timeouts
from tryon.core.errors import RequestError

#: Step Functions owns retries of endpoint calls (visible in the execution history), so
#: botocore makes exactly one attempt; the read time-out covers SageMaker's 60 s invocation
#: limit (:data:`tryon.core.timeouts.ENDPOINT_READ_SECONDS`; ``TRYON_ENDPOINT_READ_TIMEOUT``
#: changes it, e.g. for slow CPU-only local runs).
RUNTIME_CONFIG = Config(
    retries={"total_max_attempts": 1, "mode": "standard"},
    read_timeout=int(os.environ.get("TRYON_ENDPOINT_READ_TIMEOUT") or timeouts.ENDPOINT_READ_SECONDS),
    connect_timeout=timeouts.ENDPOINT_CONNECT_SECONDS,
)


def name_the_call(event_name: str, exception: BaseException | None = None, **_: Any) -> None:
    """Add the operation to a connection fault's message (botocore names only the URL).

    Registered on ``after-call-error``: a failure record's cause then says which call failed,
    as a ClientError's message already does (``when calling the PutObject operation``).
    """
    if not isinstance(exception, BotoCoreError) or not exception.args:
        return
    _, service, operation = [*event_name.split(".", 2), "", ""][:3]
    note = f" (calling {service} {operation})"
    if not str(exception.args[0]).endswith(note):
        exception.args = (f"{exception.args[0]}{note}", *exception.args[1:])


def _named(made: Any) -> Any:
    made.meta.events.register("after-call-error", name_the_call)
    return made


#: Every other call: botocore's ``standard`` retry mode, explicitly (the Lambda runtime's botocore
#: may default to ``legacy``): throttling, 5xx and connection faults retried with jittered backoff.
AWS_CONFIG = Config(retries={"mode": "standard", "max_attempts": timeouts.SDK_ATTEMPTS})


#: Amazon Rekognition (:data:`tryon.core.timeouts.MODERATION_READ_SECONDS`): botocore retries
#: throttling (standard mode) before Step Functions retries the step.
REKOGNITION_CONFIG = Config(
    retries={"total_max_attempts": timeouts.MODERATION_SDK_ATTEMPTS, "mode": "standard"},
    read_timeout=timeouts.MODERATION_READ_SECONDS,
    connect_timeout=timeouts.MODERATION_CONNECT_SECONDS,
)


@cache
def client(service: str) -> Any:
    """A cached boto3 client; ``TRYON_SAGEMAKER_RUNTIME_URL`` redirects sagemaker-runtime and
    ``TRYON_REKOGNITION_URL`` rekognition (local mode: the local server and the moderation stand-in)."""
    if service == "sagemaker-runtime":
        url = os.environ.get("TRYON_SAGEMAKER_RUNTIME_URL") or None
        return _named(boto3.client(service, endpoint_url=url, config=RUNTIME_CONFIG))
    if service == "rekognition":
        url = os.environ.get("TRYON_REKOGNITION_URL") or None
        return _named(boto3.client(service, endpoint_url=url, config=REKOGNITION_CONFIG))
    return _named(boto3.client(service, config=AWS_CONFIG))


@cache
def resource(service: str) -> Any:
    """A cached boto3 resource (DynamoDB tables: items as plain Python values)."""
    made = boto3.resource(service, config=AWS_CONFIG)
    _named(made.meta.client)
    return made


@cache
def _ssm_provider() -> Any:
    from aws_lambda_powertools.utilities.parameters import SSMProvider

    return SSMProvider(boto3_client=client("ssm"))


def ssm_parameter(name: str, *, max_age: int) -> str:
    """An SSM parameter's value, read at most once per ``max_age`` seconds by a warm function.

    aws-lambda-powertools' parameters utility caches it; GetParameterError when it cannot be read.
    """
    return str(_ssm_provider().get(name, max_age=max_age))


def ssm_parameters(path: str, *, max_age: int) -> dict[str, str]:
    """Every SSM parameter directly under ``path``, by its name below it (cached like :func:`ssm_parameter`).

    A parameter that cannot be read is a :class:`~tryon.core.errors.RequestError` naming the path.
    """
    from aws_lambda_powertools.utilities.parameters import GetParameterError

    try:
        found = _ssm_provider().get_multiple(path, max_age=max_age)
    except GetParameterError as exc:
        raise RequestError(f"SSM parameters {path}", f"could not be read: {exc}") from None
    return {str(name): str(value) for name, value in found.items()}


def reset_clients() -> None:
    """Forget cached clients and cached parameters (the local harness calls this when it starts and stops)."""
    client.cache_clear()
    resource.cache_clear()
    _ssm_provider.cache_clear()
