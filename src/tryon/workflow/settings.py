"""Deployment settings of the workflow, read from the Lambda environment (set by template.yaml)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from tryon.core import content_policy, schema, timeouts, upscale_budget
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
    #: the queue keeping the notifications CompleteAsync could not handle (its on-failure destination)
    async_dead_letters: str = ""
    #: ``InvocationTimeoutSeconds`` of each asynchronous request (SageMaker allows up to 3600)
    async_invocation_seconds: int = timeouts.ASYNC_INVOCATION_DEFAULT_SECONDS
    #: besides the invocation itself, how long a callback may take (queueing, an instance starting from zero)
    async_grace_seconds: int = timeouts.ASYNC_GRACE_DEFAULT_SECONDS
    #: seconds a job claim holds (:mod:`tryon.workflow.claim`): at least the state machine's
    #: ``TimeoutSeconds``, so an expired claim belongs to an execution Step Functions has stopped
    claim_seconds: int = timeouts.CLAIM_SECONDS
    #: where requests may name LoRA adapters by s3:// URI (the endpoints' role reads only there)
    adapter_bucket: str = ""
    adapter_prefix: str = "adapters/"
    #: where the endpoints write a job's images until Finalize publishes them under ``results_prefix``
    #: (no one but the workflow reads it; lifecycle deletes what a failed job leaves)
    pending_prefix: str = "pending/"
    #: where refused result images go: only the operator role may read it (docs/responsible-use.md)
    quarantine_prefix: str = "quarantine/"
    #: the ``TRYON_MODERATION*`` variables as set (template parameters ContentModeration, ...)
    moderation_env: tuple[tuple[str, str], ...] = ()
    #: the SSM path (``/<stack>/moderation/``) of the settings too long for the environment
    moderation_parameters: str = ""

    def moderation(self) -> content_policy.ModerationConfig:
        """The stack's moderation settings, validated (RequestError naming the template parameter).

        On a stack, ModerationCategories, ModerationAllowedLabels and ContentModerationOffReason
        are SSM parameters under :attr:`moderation_parameters` (an absent one is empty).
        """
        stored = None
        if self.moderation_parameters:
            from tryon.workflow import clients

            stored = clients.ssm_parameters(
                self.moderation_parameters, max_age=content_policy.PARAMETERS_MAX_AGE_S
            )
        return content_policy.parse_config(dict(self.moderation_env), stored)

    #: seconds of one denoising step of one full upscaler tile on the upscaler's instance
    #: (template parameter ``UpscaleTileStepSeconds``): Prepare's estimate (tryon.core.upscale_budget)
    upscale_tile_step_seconds: float = upscale_budget.DEFAULT_TILE_STEP_SECONDS

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
            async_dead_letters=env.get("TRYON_ASYNC_DEAD_LETTERS", ""),
            async_invocation_seconds=int(
                env.get("TRYON_ASYNC_INVOCATION_SECONDS") or timeouts.ASYNC_INVOCATION_DEFAULT_SECONDS
            ),
            async_grace_seconds=int(
                env.get("TRYON_ASYNC_GRACE_SECONDS") or timeouts.ASYNC_GRACE_DEFAULT_SECONDS
            ),
            claim_seconds=int(env.get("TRYON_CLAIM_SECONDS") or timeouts.CLAIM_SECONDS),
            adapter_bucket=env.get("TRYON_ADAPTER_BUCKET", ""),
            adapter_prefix=_prefix(env.get("TRYON_ADAPTER_PREFIX", "adapters/")),
            pending_prefix=_prefix(env.get("TRYON_PENDING_PREFIX", "pending/")),
            quarantine_prefix=_prefix(env.get("TRYON_QUARANTINE_PREFIX", "quarantine/")),
            moderation_env=tuple(
                (var, env[var]) for var in content_policy.CONFIG_VARIABLES.values() if var in env
            ),
            moderation_parameters=env.get(content_policy.PARAMETERS_VARIABLE, ""),
            upscale_tile_step_seconds=upscale_budget.tile_step_seconds(env),
        )
