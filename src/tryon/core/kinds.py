"""The endpoint kinds and serving modes, and the limits SageMaker enforces on each mode (light).

The names, used by the handlers, the local endpoint server, packaging, ``deploy-models``,
the workflow and the CLI: a kind is always spelled ``clipseg``, ``sd_inpaint`` or
``sd_upscale``; a mode is ``realtime``, ``serverless`` or ``async``. Each kind's other
spellings, its handler module and the modes it offers are its row in
:data:`tryon.core.schema.ENDPOINT_KINDS`. Nothing here imports more than the standard
library, so Lambda code may use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

EndpointKind = Literal["clipseg", "sd_inpaint", "sd_upscale"]
EndpointMode = Literal["realtime", "serverless", "async"]

#: Every endpoint kind, in workflow order.
KINDS: tuple[EndpointKind, ...] = get_args(EndpointKind)
#: Every serving mode ``deploy-models`` and the template can create.
MODES: tuple[EndpointMode, ...] = get_args(EndpointMode)


@dataclass(frozen=True)
class ModeLimits:
    """What SageMaker enforces on one invocation of an endpoint in a given mode.

    ``None`` means no limit on that axis for the mode (asynchronous requests travel through S3).
    """

    mode: EndpointMode
    max_request_bytes: int | None
    max_response_bytes: int | None
    max_invocation_seconds: float


#: Environment of every endpoint container, stack-created (template.yaml) or ``deploy-models``:
#: no Hub access at run time, and one model-server worker (multi-model-server's default is one
#: per vCPU on CPU instances, each loading its own copy of the model: four SD pipelines on a
#: 4-vCPU instance run out of memory; the handlers use the cores through threads instead).
CONTAINER_ENVIRONMENT: dict[str, str] = {"HF_HUB_OFFLINE": "1", "SAGEMAKER_MODEL_SERVER_WORKERS": "1"}
#: InvokeEndpoint's ``Body`` is at most 6,291,456 bytes (6 MiB) for real-time endpoints and
#: 4 MiB for serverless ones; both answer within 60 s. Asynchronous endpoints read their input
#: from S3 (up to 1 GB) and may run for up to an hour (``InvocationTimeoutSeconds`` <= 3600).
MODE_LIMITS: dict[EndpointMode, ModeLimits] = {
    "realtime": ModeLimits("realtime", 6 * 1024 * 1024, 6 * 1024 * 1024, 60.0),
    "serverless": ModeLimits("serverless", 4 * 1024 * 1024, 4 * 1024 * 1024, 60.0),
    "async": ModeLimits("async", 1_000_000_000, 1_000_000_000, 3600.0),
}


def check_kind(kind: str) -> EndpointKind:
    """``kind`` if it names an endpoint kind, else ValueError listing the known ones."""
    if kind not in KINDS:
        raise ValueError(f"unknown endpoint kind {kind!r}; known: {', '.join(KINDS)}")
    return kind  # type: ignore[return-value]


def check_mode(mode: str) -> EndpointMode:
    """``mode`` if it names a serving mode, else ValueError listing the known ones."""
    if mode not in MODES:
        raise ValueError(f"unknown endpoint mode {mode!r}; known: {', '.join(MODES)}")
    return mode  # type: ignore[return-value]
