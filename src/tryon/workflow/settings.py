"""Deployment settings of the workflow, read from the Lambda environment (set by template.yaml)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from tryon.core import schema
from tryon.core.schema import ENDPOINT_KINDS

#: Image suffixes the EventBridge rule forwards and Prepare accepts.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
#: endpoint kind -> the environment variable holding its serving mode (template parameter ``<Kind>Mode``)
MODE_VARIABLES = {row.kind: row.mode_variable for row in ENDPOINT_KINDS}
#: endpoint kind -> the environment variable naming its inference component on the shared endpoint
#: (template parameter ``EndpointLayout=shared``); empty: the kind has an endpoint of its own
COMPONENT_VARIABLES = {row.kind: row.component_variable for row in ENDPOINT_KINDS}
#: endpoint kind -> the environment variable naming the instance type the stack configured for it
#: (template parameter ``<Kind>InstanceType``), which the manifest's ``cost`` records (docs/cost.md)
INSTANCE_TYPE_VARIABLES = {row.kind: row.instance_type_variable for row in ENDPOINT_KINDS}


def _prefix(value: str) -> str:
    """A key prefix normalised to end with ``/`` (empty stays empty)."""
    value = value.strip().lstrip("/")
    return value if not value or value.endswith("/") else value + "/"


def _limit(env: Mapping[str, str], name: str, default_name: str) -> int:
    """An input limit from the environment, else :mod:`tryon.core.imaging`'s default.

    The template always sets the limits, so the functions without the Pillow layer never
    import :mod:`tryon.core.imaging` (which needs Pillow) just for its defaults.
    """
    if env.get(name):
        return int(env[name])
    from tryon.core import imaging

    return int(getattr(imaging, default_name))


@dataclass(frozen=True)
class Settings:
    """Buckets, prefixes, endpoint names and limits of one deployment."""

    input_bucket: str
    output_bucket: str
    max_input_bytes: int
    max_input_pixels: int
    input_prefix: str = "inputs/"
    #: where garment reference images (``garment_image``) may live in the input bucket
    garment_prefix: str = "garments/"
    #: where painted masks (``mask_image``) may live in the input bucket
    mask_prefix: str = "masks/"
    results_prefix: str = "results/"
    failures_prefix: str = "failures/"
    #: endpoint names, one per kind (``tryon.core.schema.Kind.settings_attribute``)
    clipseg_endpoint: str = ""
    inpaint_endpoint: str = ""
    upscale_endpoint: str = ""
    notification_topic_arn: str = ""
    event_bus: str = ""
    #: endpoint kind -> serving mode (tryon.core.kinds.MODES); ``async`` takes the task-token path
    modes: tuple[tuple[str, str], ...] = ()
    #: endpoint kind -> inference component name (InferenceComponentName), for the shared layout
    components: tuple[tuple[str, str], ...] = ()
    instance_types: tuple[tuple[str, str], ...] = ()
    #: where asynchronous requests go (``<prefix>requests/``) and endpoints answer (``outputs/``, ``errors/``)
    async_prefix: str = "async/"
    #: the DynamoDB table holding task tokens by inference id (tryon.workflow.async_tokens)
    token_table: str = ""
    #: ``InvocationTimeoutSeconds`` of each asynchronous request (SageMaker allows up to 3600)
    async_invocation_seconds: int = 900
    #: besides the invocation itself, how long a callback may take (queueing, an instance starting from zero)
    async_grace_seconds: int = 600
    #: seconds a job claim holds (:mod:`tryon.workflow.claim`): at least the state machine's
    #: ``TimeoutSeconds``, so an expired claim belongs to an execution Step Functions has stopped
    claim_seconds: int = 108000
    #: where requests may name LoRA adapters by s3:// URI (the endpoints' role reads only there)
    adapter_bucket: str = ""
    adapter_prefix: str = "adapters/"

    def endpoint(self, kind: str) -> str:
        """The endpoint name of an endpoint kind (empty: none configured)."""
        return str(getattr(self, schema.kind(kind).settings_attribute))

    def component(self, kind: str) -> str | None:
        """The inference component serving a kind on the shared endpoint, or None (an endpoint of its own)."""
        return dict(self.components).get(kind) or None

    def mode(self, kind: str) -> str:
        """The serving mode of an endpoint kind (``realtime`` unless configured)."""
        return dict(self.modes).get(kind, "realtime")

    @property
    def upscaler_configured(self) -> bool:
        """An empty upscaler endpoint name turns upscaling off."""
        return bool(self.upscale_endpoint)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``TRYON_*`` environment variables."""
        env = os.environ if env is None else env
        return cls(
            input_bucket=env.get("TRYON_INPUT_BUCKET", ""),
            output_bucket=env.get("TRYON_OUTPUT_BUCKET", ""),
            input_prefix=_prefix(env.get("TRYON_INPUT_PREFIX", "inputs/")),
            results_prefix=_prefix(env.get("TRYON_RESULTS_PREFIX", "results/")),
            failures_prefix=_prefix(env.get("TRYON_FAILURES_PREFIX", "failures/")),
            **{row.settings_attribute: env.get(row.endpoint_variable, "") for row in ENDPOINT_KINDS},
            max_input_bytes=_limit(env, "TRYON_MAX_INPUT_BYTES", "DEFAULT_MAX_BYTES"),
            max_input_pixels=_limit(env, "TRYON_MAX_INPUT_PIXELS", "DEFAULT_MAX_PIXELS"),
            notification_topic_arn=env.get("TRYON_NOTIFICATION_TOPIC_ARN", ""),
            event_bus=env.get("TRYON_EVENT_BUS", ""),
            garment_prefix=_prefix(env.get("TRYON_GARMENT_PREFIX", "garments/")),
            mask_prefix=_prefix(env.get("TRYON_MASK_PREFIX", "masks/")),
            modes=tuple((kind, env.get(var) or "realtime") for kind, var in MODE_VARIABLES.items()),
            components=tuple((kind, env.get(var, "")) for kind, var in COMPONENT_VARIABLES.items()),
            instance_types=tuple((kind, env.get(var, "")) for kind, var in INSTANCE_TYPE_VARIABLES.items()),
            async_prefix=_prefix(env.get("TRYON_ASYNC_PREFIX", "async/")),
            token_table=env.get("TRYON_TOKEN_TABLE", ""),
            async_invocation_seconds=int(env.get("TRYON_ASYNC_INVOCATION_SECONDS") or 900),
            async_grace_seconds=int(env.get("TRYON_ASYNC_GRACE_SECONDS") or 600),
            claim_seconds=int(env.get("TRYON_CLAIM_SECONDS") or 108000),
            adapter_bucket=env.get("TRYON_ADAPTER_BUCKET", ""),
            adapter_prefix=_prefix(env.get("TRYON_ADAPTER_PREFIX", "adapters/")),
        )
