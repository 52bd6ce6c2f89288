"""boto3 clients of the workflow, created once per process (a warm Lambda reuses them)."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

#: Step Functions owns retries of endpoint calls (visible in the execution history), so
#: botocore makes exactly one attempt; 70 s covers SageMaker's 60 s invocation limit
#: (``TRYON_ENDPOINT_READ_TIMEOUT`` changes it, e.g. for slow CPU-only local runs).
RUNTIME_CONFIG = Config(
    retries={"total_max_attempts": 1, "mode": "standard"},
    read_timeout=int(os.environ.get("TRYON_ENDPOINT_READ_TIMEOUT") or 70),
    connect_timeout=5,
)


@cache
def client(service: str) -> Any:
    """A cached boto3 client; ``TRYON_SAGEMAKER_RUNTIME_URL`` redirects sagemaker-runtime (local mode)."""
    if service == "sagemaker-runtime":
        url = os.environ.get("TRYON_SAGEMAKER_RUNTIME_URL") or None
        return boto3.client(service, endpoint_url=url, config=RUNTIME_CONFIG)
    return boto3.client(service)


@cache
def resource(service: str) -> Any:
    """A cached boto3 resource (DynamoDB tables: items as plain Python values)."""
    return boto3.resource(service)


@cache
def _ssm_provider() -> Any:
    from aws_lambda_powertools.utilities.parameters import SSMProvider

    return SSMProvider(boto3_client=client("ssm"))


def ssm_parameter(name: str, *, max_age: int) -> str:
    """An SSM parameter's value, read at most once per ``max_age`` seconds by a warm function.

    aws-lambda-powertools' parameters utility caches it; GetParameterError when it cannot be read.
    """
    return str(_ssm_provider().get(name, max_age=max_age))


def reset_clients() -> None:
    """Forget cached clients and cached parameters (the local harness calls this when it starts and stops)."""
    client.cache_clear()
    resource.cache_clear()
    _ssm_provider.cache_clear()
