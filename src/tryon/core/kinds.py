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


# ---------------------------------------------------------------- endpoint layouts
EndpointLayout = Literal["separate", "shared"]
#: ``separate``: one endpoint per kind (as it always was); ``shared``: the real-time kinds are
#: inference components of ONE GPU endpoint (docs/deploy.md#one-gpu-endpoint-for-several-models),
#: named by their schema row (``tryon.core.schema.Kind.component_name``).
LAYOUTS: tuple[EndpointLayout, ...] = get_args(EndpointLayout)
#: SageMaker hosts inference components on real-time endpoints only: a kind served in another
#: mode (serverless CLIPSeg, asynchronous inpainting) keeps an endpoint of its own in either layout.
COMPONENT_MODES: frozenset[EndpointMode] = frozenset({"realtime"})


@dataclass(frozen=True)
class ComponentResources:
    """What one copy of a kind's model gets as an inference component (ComputeResourceRequirements).

    ``accelerators`` are whole devices: SageMaker's minimum for a component that has any is 1,
    and a GPU is never split between components, so the shared endpoint's instance type needs
    one GPU per GPU component copy (:func:`instance_fits`).
    """

    accelerators: int
    cpu_cores: float
    memory_mb: int


#: Per kind, one copy's resources on the shared endpoint: SD 2 inpainting (fp16 weights 2.6 GB,
#: the garment IP-Adapter and LoRA adapters beside them) and the x4 upscaler each take a GPU.
#: CLIPSeg takes one too: the smallest instance with room for two GPU components has four GPUs,
#: so its GPU is paid for either way, and it replaces a CPU endpoint of its own (the decision
#: and its figures: docs/cost.md#the-shared-layout).
COMPONENT_RESOURCES: dict[EndpointKind, ComponentResources] = {
    "clipseg": ComponentResources(accelerators=1, cpu_cores=2, memory_mb=4096),
    "sd_inpaint": ComponentResources(accelerators=1, cpu_cores=4, memory_mb=16384),
    "sd_upscale": ComponentResources(accelerators=1, cpu_cores=4, memory_mb=16384),
}
#: The shared endpoint's default instance type: 4 NVIDIA A10G, 48 vCPUs, 192 GiB.
SHARED_INSTANCE_TYPE = "ml.g5.12xlarge"


@dataclass(frozen=True)
class InstanceShape:
    """What one instance type offers the components placed on it."""

    accelerators: int
    vcpus: int
    memory_mb: int


#: GPU instance types the shared endpoint is sized against (AWS instance specifications). A type
#: not listed is accepted unchecked (``instance_fits`` says so), as AWS adds types faster than this.
INSTANCE_SHAPES: dict[str, InstanceShape] = {
    "ml.g5.xlarge": InstanceShape(1, 4, 16384),
    "ml.g5.2xlarge": InstanceShape(1, 8, 32768),
    "ml.g5.4xlarge": InstanceShape(1, 16, 65536),
    "ml.g5.12xlarge": InstanceShape(4, 48, 196608),
    "ml.g5.24xlarge": InstanceShape(4, 96, 393216),
    "ml.g5.48xlarge": InstanceShape(8, 192, 786432),
    "ml.g6.xlarge": InstanceShape(1, 4, 16384),
    "ml.g6.12xlarge": InstanceShape(4, 48, 196608),
    "ml.g6.48xlarge": InstanceShape(8, 192, 786432),
    "ml.g4dn.xlarge": InstanceShape(1, 4, 16384),
    "ml.g4dn.12xlarge": InstanceShape(4, 48, 196608),
    "ml.p4d.24xlarge": InstanceShape(8, 96, 1179648),
}


def check_layout(layout: str) -> EndpointLayout:
    """``layout`` if it names an endpoint layout, else ValueError listing the known ones."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown endpoint layout {layout!r}; known: {', '.join(LAYOUTS)}")
    return layout  # type: ignore[return-value]


def component_kinds(layout: str, modes: dict[str, str]) -> tuple[EndpointKind, ...]:
    """The kinds that are inference components of the shared endpoint (none in the separate layout)."""
    if check_layout(layout) == "separate":
        return ()
    return tuple(kind for kind in KINDS if modes.get(kind, "realtime") in COMPONENT_MODES)


def instance_fits(instance_type: str, copies: dict[str, int]) -> str | None:
    """Why ``copies`` (kind -> copies at full scale) do not fit one ``instance_type``; None if they do.

    Unlisted instance types are not checked (None).
    """
    shape = INSTANCE_SHAPES.get(instance_type)
    if shape is None:
        return None
    need = ComponentResources(0, 0.0, 0)
    for kind, count in copies.items():
        r = COMPONENT_RESOURCES[check_kind(kind)]
        need = ComponentResources(
            need.accelerators + count * r.accelerators,
            need.cpu_cores + count * r.cpu_cores,
            need.memory_mb + count * r.memory_mb,
        )
    if need.accelerators > shape.accelerators:
        return (
            f"{instance_type} has {shape.accelerators} GPU(s); the components need {need.accelerators} "
            "(one per GPU component copy: SageMaker never splits a GPU between components)"
        )
    if need.cpu_cores > shape.vcpus:
        return f"{instance_type} has {shape.vcpus} vCPUs; the components need {need.cpu_cores:g}"
    if need.memory_mb > shape.memory_mb:
        return f"{instance_type} has {shape.memory_mb} MiB of memory; the components need {need.memory_mb}"
    return None
