"""Create or update the three SageMaker endpoints from packaged ``model.tar.gz`` artefacts.

Uses the sagemaker Python SDK v3 resource classes (``sagemaker.core.resources``): a Model,
an EndpointConfig and an Endpoint per kind. Artefacts are content-addressed: a local archive
is uploaded under a key that carries its sha256 (an object a model uses is never
overwritten), and the names of models and configs carry a digest of what they serve
(the artefact's content included), so re-running with the same archive changes nothing
and a new archive rolls the endpoint forward with ``UpdateEndpoint`` (no downtime).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tryon.aws import image_uris
from tryon.core import schema
from tryon.core.errors import RequestError
from tryon.core.kinds import CONTAINER_ENVIRONMENT, KINDS
from tryon.core.kinds import EndpointMode as Mode
from tryon.core.s3uri import parse_s3_uri

#: Instance defaults per kind (CLIPSeg runs fine on CPU): the kinds' rows, as the template's.
DEFAULT_INSTANCE = {row.kind: row.default_instance_type for row in schema.ENDPOINT_KINDS}
#: An IAM role ARN in any partition (aws, aws-cn, aws-us-gov, ...), path allowed.
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})$")


@dataclass(frozen=True)
class EndpointPlan:
    """Everything needed to create one endpoint, and nothing that needs AWS to compute."""

    kind: str
    endpoint_name: str
    model_data_url: str
    image_uri: str
    #: What the artefact holds: ``sha256:<hex>`` of a local archive, ``etag:<etag>`` of an S3 object.
    artifact_digest: str = ""
    mode: Mode = "realtime"
    instance_type: str = "ml.g5.xlarge"
    instance_count: int = 1
    serverless_memory_mb: int = 6144
    serverless_max_concurrency: int = 2
    async_output_path: str | None = None
    async_success_topic: str | None = None
    async_error_topic: str | None = None
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """Short content digest: changes whenever anything the endpoint serves changes."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:10]

    @property
    def model_name(self) -> str:
        return f"{self.endpoint_name[:52]}-{self.digest}"

    @property
    def config_name(self) -> str:
        return f"{self.endpoint_name[:50]}-c-{self.digest}"


def made_for(name: str, endpoint_name: str) -> bool:
    """Whether ``name`` is a model or endpoint config name an :class:`EndpointPlan` for the endpoint gives."""
    model = rf"{re.escape(endpoint_name[:52])}-[0-9a-f]{{10}}"
    config = rf"{re.escape(endpoint_name[:50])}-c-[0-9a-f]{{10}}"
    return re.fullmatch(f"{model}|{config}", name) is not None


def make_plan(
    kind: str,
    *,
    endpoint_name: str,
    model_data_url: str,
    region: str,
    mode: Mode = "realtime",
    instance_type: str | None = None,
    image_uri: str | None = None,
    **options: Any,
) -> EndpointPlan:
    """Validate one endpoint's settings and fill in defaults; RequestError names the bad option."""
    if kind not in KINDS:
        raise RequestError("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    if not model_data_url.startswith("s3://") or not model_data_url.endswith(".tar.gz"):
        raise RequestError(
            f"{kind}.model_data", f"must be an s3://.../model.tar.gz URI, got {model_data_url!r}"
        )
    if mode not in schema.kind(kind).modes:
        offered = [row.kind for row in schema.ENDPOINT_KINDS if mode in row.modes]
        reason = (
            "serverless endpoints are CPU-only" if mode == "serverless" else f"{kind} is not served {mode}"
        )
        raise RequestError(f"{kind}.mode", f"{reason}; use them for {', '.join(offered)}")
    if mode == "async" and not options.get("async_output_path"):
        raise RequestError(f"{kind}.async_output_path", "is required for asynchronous endpoints")
    instance_type = instance_type or DEFAULT_INSTANCE[kind]
    if not image_uri:
        try:
            image_uri = image_uris.image_uri(region, instance_type, serverless=mode == "serverless")
        except RequestError as exc:
            raise RequestError(f"{kind}.{exc.field}", exc.detail) from exc
    return EndpointPlan(
        kind=kind,
        endpoint_name=endpoint_name,
        model_data_url=model_data_url,
        image_uri=image_uri,
        mode=mode,
        instance_type=instance_type,
        environment={
            **CONTAINER_ENVIRONMENT,
            "TRYON_ENDPOINT_KIND": kind,
            # the handlers refuse base64 answers over this mode's response limit
            "TRYON_ENDPOINT_MODE": mode,
            **options.pop("environment", {}),
        },
        **options,
    )


def describe_plan(plan: EndpointPlan) -> dict[str, Any]:
    """What ``--dry-run`` prints: the names and settings that would be created.

    Names of an artefact given by s3:// URI depend on its ETag, which a dry run does not read.
    """
    unread = "<named after the artefact's ETag, read when deploying>"
    return {
        "endpoint": plan.endpoint_name,
        "kind": plan.kind,
        "mode": plan.mode,
        "model": plan.model_name if plan.artifact_digest else unread,
        "endpoint_config": plan.config_name if plan.artifact_digest else unread,
        "model_data": plan.model_data_url,
        "artifact": plan.artifact_digest or None,
        "image": plan.image_uri,
        "instance": "serverless"
        if plan.mode == "serverless"
        else f"{plan.instance_count} x {plan.instance_type}",
        **(
            {
                "async_output": plan.async_output_path,
                "async_success_topic": plan.async_success_topic,
                "async_error_topic": plan.async_error_topic,
            }
            if plan.mode == "async"
            else {}
        ),
    }


def _production_variant(plan: EndpointPlan, shapes: Any) -> Any:
    if plan.mode == "serverless":
        return shapes.ProductionVariant(
            variant_name="AllTraffic",
            model_name=plan.model_name,
            serverless_config=shapes.ProductionVariantServerlessConfig(
                memory_size_in_mb=plan.serverless_memory_mb, max_concurrency=plan.serverless_max_concurrency
            ),
        )
    return shapes.ProductionVariant(
        variant_name="AllTraffic",
        model_name=plan.model_name,
        initial_instance_count=plan.instance_count,
        instance_type=plan.instance_type,
        initial_variant_weight=1.0,
    )


def _async_config(plan: EndpointPlan, shapes: Any) -> Any:
    notification = None
    if plan.async_success_topic or plan.async_error_topic:
        notification = shapes.AsyncInferenceNotificationConfig(
            success_topic=plan.async_success_topic, error_topic=plan.async_error_topic
        )
    return shapes.AsyncInferenceConfig(
        output_config=shapes.AsyncInferenceOutputConfig(
            s3_output_path=plan.async_output_path, notification_config=notification
        )
    )


def _fix_serverless_casing(params: dict[str, Any], **_: Any) -> None:
    """sagemaker-core 3.27 serialises ``memory_size_in_mb`` as ``MemorySizeInMb``; AWS wants ``...InMB``."""
    for variant in params.get("ProductionVariants", []):
        config = variant.get("ServerlessConfig")
        if config and "MemorySizeInMb" in config:
            config["MemorySizeInMB"] = config.pop("MemorySizeInMb")


def _exists(getter: Callable[..., Any], name: str, session: Any) -> Any | None:
    from botocore.exceptions import ClientError

    try:
        return getter(name, session=session)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"ValidationException", "ResourceNotFound"}:
            return None
        raise


def apply_plan(
    plan: EndpointPlan,
    *,
    role_arn: str,
    session: Any,
    wait: bool = True,
    on_status: Callable[[str], None] = lambda _msg: None,
) -> dict[str, str]:
    """Create the model and config if new, then create or update the endpoint; return what happened."""
    from sagemaker.core import shapes
    from sagemaker.core.resources import Endpoint, EndpointConfig, Model

    region = session.region_name
    session.events.unregister("provide-client-params.sagemaker.CreateEndpointConfig", _fix_serverless_casing)
    session.events.register("provide-client-params.sagemaker.CreateEndpointConfig", _fix_serverless_casing)
    if _exists(Model.get, plan.model_name, session) is None:
        on_status(f"creating model {plan.model_name}")
        Model.create(
            model_name=plan.model_name,
            primary_container=shapes.ContainerDefinition(
                image=plan.image_uri, model_data_url=plan.model_data_url, environment=plan.environment
            ),
            execution_role_arn=role_arn,
            session=session,
            region=region,
        )
    if _exists(EndpointConfig.get, plan.config_name, session) is None:
        on_status(f"creating endpoint config {plan.config_name}")
        kwargs: dict[str, Any] = {}
        if plan.mode == "async":
            kwargs["async_inference_config"] = _async_config(plan, shapes)
        EndpointConfig.create(
            endpoint_config_name=plan.config_name,
            production_variants=[_production_variant(plan, shapes)],
            session=session,
            region=region,
            **kwargs,
        )
    endpoint = _exists(Endpoint.get, plan.endpoint_name, session)
    if endpoint is None:
        on_status(f"creating endpoint {plan.endpoint_name}")
        endpoint = Endpoint.create(
            endpoint_name=plan.endpoint_name,
            endpoint_config_name=plan.config_name,
            session=session,
            region=region,
        )
        action = "created"
    elif endpoint.endpoint_config_name != plan.config_name:
        on_status(f"updating endpoint {plan.endpoint_name} to {plan.config_name}")
        endpoint.endpoint_config_name = plan.config_name
        endpoint.update()
        action = "updated"
    else:
        action = "unchanged"
    if wait and action != "unchanged":
        on_status(f"waiting for {plan.endpoint_name} to be InService")
        endpoint.wait_for_status("InService", poll=10, timeout=3600)
    endpoint.refresh()
    return {"endpoint": plan.endpoint_name, "action": action, "status": str(endpoint.endpoint_status)}


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artifact_key(prefix: str, kind: str, sha256: str) -> str:
    """The content-addressed key of an archive: a new archive never lands on a used key."""
    return f"{prefix.strip('/')}/{kind}/{sha256}/model.tar.gz"


def upload_artifact(
    path: Path,
    bucket: str,
    key: str,
    sha256: str,
    session: Any,
    progress: Callable[[int], None] | None = None,
) -> bool:
    """Upload a local archive to its content-addressed ``key`` unless it is there; True if uploaded.

    The key carries the archive's sha256, so an object already under it holds the same bytes
    (its ``sha256`` metadata is checked too) and is left alone: an artefact a live model uses is
    never overwritten. ``progress`` is called with each chunk's byte count as it is sent.
    """
    from botocore.exceptions import ClientError

    s3 = session.client("s3")
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in {"404", "NoSuchKey", "NotFound"}:
            raise
    else:
        stored = head.get("Metadata", {}).get("sha256")
        if stored not in (None, sha256):
            raise RequestError("artifact", f"s3://{bucket}/{key} holds sha256 {stored}, not {sha256}")
        return False
    s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {"sha256": sha256}}, Callback=progress)
    return True


def s3_artifact_digest(url: str, session: Any, *, field: str) -> str:
    """``etag:<etag>`` of an artefact given as an s3:// URI; RequestError when it does not exist."""
    from botocore.exceptions import ClientError

    bucket, key = parse_s3_uri(url, field=field)
    try:
        head = session.client("s3").head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}:
            raise RequestError(field, f"{url} does not exist") from exc
        raise
    return f"etag:{head['ETag'].strip(chr(34))}"


def check_role_arn(role_arn: str) -> re.Match[str]:
    """``--role``'s shape (what a dry run checks, calling nothing): an IAM role ARN, else RequestError."""
    match = ROLE_ARN.match(role_arn)
    if not match:
        raise RequestError(
            "--role", f"must be an IAM role ARN (arn:aws:iam::<account>:role/<name>), got {role_arn!r}"
        )
    return match


def check_role(role_arn: str, session: Any) -> None:
    """Check ``--role`` before anything is uploaded: an IAM role ARN that exists and SageMaker may assume.

    RequestError names ``--role`` when the ARN is malformed, the role does not exist or its
    trust policy does not name ``sagemaker.amazonaws.com``. Without ``iam:GetRole`` permission
    only the ARN's shape is checked.
    """
    from botocore.exceptions import ClientError

    match = check_role_arn(role_arn)
    try:
        role = session.client("iam").get_role(RoleName=match.group(2))["Role"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code == "NoSuchEntity":
            raise RequestError("--role", f"{role_arn} does not exist") from exc
        if code in {"AccessDenied", "AccessDeniedException"}:
            return
        raise
    if role.get("Arn") and role["Arn"] != role_arn:
        raise RequestError("--role", f"{role_arn} names role {role['Arn']} (check the account and path)")
    trust = json.dumps(role.get("AssumeRolePolicyDocument", {}))
    if "sagemaker.amazonaws.com" not in trust:
        raise RequestError(
            "--role",
            f"{role_arn} cannot be assumed by SageMaker (trust policy lacks sagemaker.amazonaws.com)",
        )


def parse_assignments(values: list[str], option: str) -> Mapping[str, str]:
    """``["clipseg=a", "sd_inpaint=b"]`` -> dict; RequestError naming the option when malformed."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise RequestError(option, f"expects KIND=VALUE, got {value!r}")
        if name not in KINDS:
            raise RequestError(option, f"kind must be one of {', '.join(KINDS)}, got {name!r}")
        out[name] = rest
    return out


#: Endpoint states in which the endpoint may still move to another config: pruning waits.
_TRANSITIONAL = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "UpdateRollbackFailed"})


@dataclass(frozen=True)
class Leftovers:
    """Models and endpoint configs ``deploy-models`` made that no endpoint uses any more."""

    endpoint_configs: list[str]
    models: list[str]


def find_leftovers(sm: Any, endpoint_names: list[str]) -> Leftovers:
    """What :func:`delete_leftovers` would delete: our configs and models that no endpoint uses.

    Every endpoint in the region counts as a user (a config or model is kept if any endpoint
    uses it, whatever its name). While one of ``endpoint_names`` is being created or updated,
    nothing is pruned: RequestError.
    """
    used_configs: set[str] = set()
    for page in sm.get_paginator("list_endpoints").paginate():
        for summary in page["Endpoints"]:
            endpoint = sm.describe_endpoint(EndpointName=summary["EndpointName"])
            if endpoint["EndpointName"] in endpoint_names and endpoint["EndpointStatus"] in _TRANSITIONAL:
                raise RequestError(
                    "endpoint",
                    f"{endpoint['EndpointName']} is {endpoint['EndpointStatus']}; prune once it is InService",
                )
            used_configs.add(endpoint["EndpointConfigName"])
            pending = endpoint.get("PendingDeploymentSummary") or {}
            if pending.get("EndpointConfigName"):
                used_configs.add(pending["EndpointConfigName"])
    used_models: set[str] = set()
    for name in used_configs:
        config = sm.describe_endpoint_config(EndpointConfigName=name)
        for variant in config.get("ProductionVariants", []) + config.get("ShadowProductionVariants", []):
            used_models.add(variant["ModelName"])

    def ours(lister: str, key: str, name_field: str, used: set[str]) -> list[str]:
        found = [
            item[name_field]
            for page in sm.get_paginator(lister).paginate()
            for item in page[key]
            if item[name_field] not in used and any(made_for(item[name_field], e) for e in endpoint_names)
        ]
        return sorted(found)

    return Leftovers(
        endpoint_configs=ours("list_endpoint_configs", "EndpointConfigs", "EndpointConfigName", used_configs),
        models=ours("list_models", "Models", "ModelName", used_models),
    )


def delete_leftovers(
    sm: Any, leftovers: Leftovers, on_delete: Callable[[str], None] = lambda _m: None
) -> None:
    """Delete the configs, then the models (a config names its models)."""
    for name in leftovers.endpoint_configs:
        on_delete(f"deleting endpoint config {name}")
        sm.delete_endpoint_config(EndpointConfigName=name)
    for name in leftovers.models:
        on_delete(f"deleting model {name}")
        sm.delete_model(ModelName=name)


# ---------------------------------------------------------------- the shared layout
#: The scaling of every component on the shared endpoint (docs/deploy.md#one-gpu-endpoint-for-several-models):
#: target tracking on invocations per copy, and the scale-out path from zero that SageMaker
#: documents (a step-scaling policy, +1 copy, on an alarm over NoCapacityInvocationFailures).
COMPONENT_TARGET_INVOCATIONS_PER_COPY = 4
COMPONENT_SCALE_IN_COOLDOWN_S = 600
COMPONENT_SCALE_OUT_COOLDOWN_S = 60
NO_CAPACITY_METRIC = "NoCapacityInvocationFailures"


@dataclass(frozen=True)
class ComponentPlan:
    """One kind as an inference component of the shared endpoint."""

    kind: str
    component_name: str
    model_data_url: str
    image_uri: str
    artifact_digest: str = ""
    accelerators: int = 1
    cpu_cores: float = 1.0
    memory_mb: int = 1024
    copies: int = 1
    max_copies: int = 1
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """Short digest of what the component's model serves (its copies and limits change no model)."""
        served = {k: v for k, v in asdict(self).items() if k not in {"copies", "max_copies"}}
        return hashlib.sha256(json.dumps(served, sort_keys=True).encode()).hexdigest()[:10]

    @property
    def model_name(self) -> str:
        return f"{self.component_name[:52]}-{self.digest}"

    @property
    def resource_id(self) -> str:
        """Application Auto Scaling's name for the component."""
        return f"inference-component/{self.component_name}"


@dataclass(frozen=True)
class SharedEndpointPlan:
    """ONE real-time endpoint whose instances host the real-time kinds as inference components.

    The endpoint config names no model: its variant has an instance type and managed instance
    scaling from ``min_instances`` (0: the endpoint scales to zero when every component has no
    copy) to ``max_instances``; each component brings its model, resources and copies.
    """

    endpoint_name: str
    instance_type: str
    components: tuple[ComponentPlan, ...]
    min_instances: int = 0
    max_instances: int = 1

    @property
    def digest(self) -> str:
        blob = json.dumps(
            [self.endpoint_name, self.instance_type, self.min_instances, self.max_instances], sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    @property
    def config_name(self) -> str:
        return f"{self.endpoint_name[:50]}-c-{self.digest}"


def make_shared_plan(
    artifacts: Mapping[str, str],
    *,
    endpoint_name: str,
    region: str,
    instance_type: str = "",
    max_instances: int = 1,
    digests: Mapping[str, str] | None = None,
    image_uri: str | None = None,
) -> SharedEndpointPlan:
    """Validate the shared endpoint (its components must fit one instance); RequestError names the option."""
    from tryon.core import schema
    from tryon.core.kinds import COMPONENT_RESOURCES, SHARED_INSTANCE_TYPE, instance_fits

    instance_type = instance_type or SHARED_INSTANCE_TYPE
    if not artifacts:
        raise RequestError("--layout", "shared needs at least one real-time kind to host as a component")
    if max_instances < 1:
        raise RequestError("--max-instances", f"must be >= 1, got {max_instances}")
    # each instance holds one copy of every component; more instances, more copies
    problem = instance_fits(instance_type, dict.fromkeys(artifacts, 1))
    if problem:
        raise RequestError("--shared-instance-type", problem)
    components = []
    for kind, url in artifacts.items():
        if kind not in KINDS:
            raise RequestError("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
        if not url.startswith("s3://") or not url.endswith(".tar.gz"):
            raise RequestError(f"{kind}.model_data", f"must be an s3://.../model.tar.gz URI, got {url!r}")
        resources = COMPONENT_RESOURCES[kind]  # type: ignore[index]
        try:
            image = image_uri or image_uris.image_uri(
                region, instance_type if resources.accelerators else "ml.m5.xlarge"
            )
        except RequestError as exc:
            raise RequestError(f"{kind}.{exc.field}", exc.detail) from exc
        components.append(
            ComponentPlan(
                kind=kind,
                component_name=schema.kind(kind).component_name(endpoint_name),
                model_data_url=url,
                image_uri=image,
                artifact_digest=(digests or {}).get(kind, ""),
                accelerators=resources.accelerators,
                cpu_cores=resources.cpu_cores,
                memory_mb=resources.memory_mb,
                copies=1,
                max_copies=max_instances,
                environment={
                    **CONTAINER_ENVIRONMENT,
                    "TRYON_ENDPOINT_KIND": kind,
                    "TRYON_ENDPOINT_MODE": "realtime",
                },
            )
        )
    return SharedEndpointPlan(endpoint_name, instance_type, tuple(components), 0, max_instances)


def describe_shared_plan(plan: SharedEndpointPlan) -> dict[str, Any]:
    """What ``--dry-run`` prints for the shared endpoint: instances, components, their scaling."""
    unread = "<named after the artefact's ETag, read when deploying>"
    return {
        "endpoint": plan.endpoint_name,
        "layout": "shared",
        "mode": "realtime",
        "endpoint_config": plan.config_name,
        "instance": plan.instance_type,
        "managed_instance_scaling": {
            "min_instances": plan.min_instances,
            "max_instances": plan.max_instances,
        },
        "components": [
            {
                "component": c.component_name,
                "kind": c.kind,
                "model": c.model_name if c.artifact_digest else unread,
                "model_data": c.model_data_url,
                "artifact": c.artifact_digest or None,
                "image": c.image_uri,
                "accelerators": c.accelerators,
                "cpu_cores": c.cpu_cores,
                "memory_mb": c.memory_mb,
                "copies": {"initial": c.copies, "min": 0, "max": c.max_copies},
                "scaling": {
                    "target_tracking": {
                        "metric": "SageMakerInferenceComponentInvocationsPerCopy",
                        "target": COMPONENT_TARGET_INVOCATIONS_PER_COPY,
                    },
                    "scale_out_from_zero": {
                        "alarm": f"{c.component_name}-no-capacity",
                        "metric": f"AWS/SageMaker {NO_CAPACITY_METRIC}",
                        "step": "+1 copy",
                    },
                },
            }
            for c in plan.components
        ],
    }


def _create_if_missing(call: Callable[..., Any], **kwargs: Any) -> bool:
    """Call a Create* API; False if the resource already exists (same content-addressed name)."""
    from botocore.exceptions import ClientError

    try:
        call(**kwargs)
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "")
        if "already exist" in message or "Cannot create already existing" in message:
            return False
        raise
    return True


def _component_exists(sm: Any, name: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        return sm.describe_inference_component(InferenceComponentName=name)
    except ClientError as exc:
        if "Could not find inference component" in exc.response.get("Error", {}).get("Message", ""):
            return None
        raise


def _component_request(plan: SharedEndpointPlan, c: ComponentPlan) -> dict[str, Any]:
    requirements: dict[str, Any] = {
        "NumberOfCpuCoresRequired": c.cpu_cores,
        "MinMemoryRequiredInMb": c.memory_mb,
    }
    if c.accelerators:
        requirements["NumberOfAcceleratorDevicesRequired"] = c.accelerators
    return {
        "InferenceComponentName": c.component_name,
        "Specification": {"ModelName": c.model_name, "ComputeResourceRequirements": requirements},
    }


def apply_shared_plan(
    plan: SharedEndpointPlan,
    *,
    role_arn: str,
    session: Any,
    wait: bool = True,
    on_status: Callable[[str], None] = lambda _msg: None,
) -> list[dict[str, str]]:
    """Create or update the shared endpoint, its components and their scaling; what happened to each."""
    sm = session.client("sagemaker")
    scaling = session.client("application-autoscaling")
    cloudwatch = session.client("cloudwatch")
    for c in plan.components:
        if _create_if_missing(
            sm.create_model,
            ModelName=c.model_name,
            ExecutionRoleArn=role_arn,
            PrimaryContainer={
                "Image": c.image_uri,
                "ModelDataUrl": c.model_data_url,
                "Environment": c.environment,
            },
        ):
            on_status(f"created model {c.model_name}")
    if _create_if_missing(
        sm.create_endpoint_config,
        EndpointConfigName=plan.config_name,
        ExecutionRoleArn=role_arn,  # an endpoint that hosts inference components needs its own role
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "InstanceType": plan.instance_type,
                "InitialInstanceCount": 1,
                "ManagedInstanceScaling": {
                    "Status": "ENABLED",
                    "MinInstanceCount": plan.min_instances,
                    "MaxInstanceCount": plan.max_instances,
                },
                "RoutingConfig": {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"},
            }
        ],
    ):
        on_status(f"created endpoint config {plan.config_name}")
    from botocore.exceptions import ClientError

    try:
        current = sm.describe_endpoint(EndpointName=plan.endpoint_name)
    except ClientError as exc:
        if "Could not find endpoint" not in exc.response.get("Error", {}).get("Message", ""):
            raise
        current = None
    if current is None:
        sm.create_endpoint(EndpointName=plan.endpoint_name, EndpointConfigName=plan.config_name)
        action = "created"
    elif current["EndpointConfigName"] != plan.config_name:
        sm.update_endpoint(EndpointName=plan.endpoint_name, EndpointConfigName=plan.config_name)
        action = "updated"
    else:
        action = "unchanged"
    results = [{"endpoint": plan.endpoint_name, "action": action}]
    if wait and action != "unchanged":
        on_status(f"waiting for {plan.endpoint_name} to be InService")
        sm.get_waiter("endpoint_in_service").wait(EndpointName=plan.endpoint_name)
    for c in plan.components:
        existing = _component_exists(sm, c.component_name)
        request = _component_request(plan, c)
        if existing is None:
            sm.create_inference_component(
                EndpointName=plan.endpoint_name,
                VariantName="AllTraffic",
                RuntimeConfig={"CopyCount": c.copies},
                **request,
            )
            component_action = "created"
        elif existing.get("Specification", {}).get("ModelName") != c.model_name:
            sm.update_inference_component(**request)  # copies are the scaling policies' business
            component_action = "updated"
        else:
            component_action = "unchanged"
        on_status(f"{component_action} component {c.component_name}")
        results.append({"component": c.component_name, "action": component_action})
    if wait:
        for c in plan.components:
            on_status(f"waiting for component {c.component_name} to be InService")
            _wait_for_component(sm, c.component_name)
    for c in plan.components:
        _scale_component(scaling, cloudwatch, c)
    return results


def _wait_for_component(sm: Any, name: str, *, poll: float = 10.0, timeout: float = 3600.0) -> None:
    """Poll until the component is InService (botocore has no waiter for it); RuntimeError if it fails."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        described = sm.describe_inference_component(InferenceComponentName=name)
        status = described.get("InferenceComponentStatus")
        if status == "InService":
            return
        if status == "Failed" or time.monotonic() > deadline:
            reason = described.get("FailureReason") or f"still {status} after {timeout:g} s"
            raise RuntimeError(f"inference component {name}: {reason}")
        time.sleep(poll)


def _scale_component(scaling: Any, cloudwatch: Any, c: ComponentPlan) -> None:
    """Scale to zero and back for one component, as SageMaker documents it."""
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": c.resource_id,
        "ScalableDimension": "sagemaker:inference-component:DesiredCopyCount",
    }
    scaling.register_scalable_target(**target, MinCapacity=0, MaxCapacity=c.max_copies)
    scaling.put_scaling_policy(
        **target,
        PolicyName=f"{c.component_name}-invocations",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerInferenceComponentInvocationsPerCopy"
            },
            "TargetValue": COMPONENT_TARGET_INVOCATIONS_PER_COPY,
            "ScaleInCooldown": COMPONENT_SCALE_IN_COOLDOWN_S,
            "ScaleOutCooldown": COMPONENT_SCALE_OUT_COOLDOWN_S,
        },
    )
    step = scaling.put_scaling_policy(
        **target,
        PolicyName=f"{c.component_name}-from-zero",
        PolicyType="StepScaling",
        StepScalingPolicyConfiguration={
            "AdjustmentType": "ChangeInCapacity",
            "MetricAggregationType": "Maximum",
            "Cooldown": COMPONENT_SCALE_OUT_COOLDOWN_S,
            "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
        },
    )
    cloudwatch.put_metric_alarm(
        AlarmName=f"{c.component_name}-no-capacity",
        AlarmDescription=f"Calls reached {c.component_name} while it had no copy: start one.",
        Namespace="AWS/SageMaker",
        MetricName=NO_CAPACITY_METRIC,
        Dimensions=[{"Name": "InferenceComponentName", "Value": c.component_name}],
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        DatapointsToAlarm=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
        AlarmActions=[step["PolicyARN"]],
    )
