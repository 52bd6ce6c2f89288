"""``LocalWorkflow``: the deployed stack's workflow, run on one machine.

What is real: ``template.yaml`` (parameters, function environments, the state machine's
``DefinitionSubstitutions``, bucket settings, the token table, the SNS subscriptions), the ASL
in ``statemachine/`` executed by moto's Step Functions interpreter, the Lambda handlers in
``functions/`` (run in-process, :mod:`tryon.local.lambdas`), and the model handlers behind
:class:`tryon.server.LocalEndpointServer`, reached by an unmodified boto3 ``sagemaker-runtime``
client, asynchronous endpoints included (their SNS notifications reach the CompleteAsync
function). What is simulated: AWS itself (moto, with the patches of :mod:`tryon.local.moto_patches`),
and Amazon Rekognition's moderation, which moto lacks (:mod:`tryon.local.moderation_standin`,
reached by the Moderate function's unmodified ``rekognition`` client).

The harness is split by concern: :mod:`~tryon.local.provision` creates the resources,
:mod:`~tryon.local.lambdas` runs the functions, :mod:`~tryon.local.events` builds the S3
event, :mod:`~tryon.local.faults` injects endpoint faults; this class ties them together.

Example::

    with LocalWorkflow({"clipseg": ..., "sd_inpaint": ..., "sd_upscale": ...}) as wf:
        key = wf.upload(Path("photo.jpg"))["key"]
        result = wf.wait(wf.start_from_s3_event(key), on_event=print)
        wf.download_results(result.output["manifest"], Path("out"))
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import boto3

from tryon.aws.executions import ExecutionResult, StateEvent, follow_execution
from tryon.core.kinds import check_kind, check_layout, check_mode
from tryon.core.s3uri import bucket_and_key, s3_uri
from tryon.core.schema import ENDPOINT_KINDS
from tryon.local import faults, iam, lambda_env, moto_patches, provision
from tryon.local.events import s3_object_created
from tryon.local.lambdas import STATE_LIMIT_BYTES, LambdaRuntime
from tryon.local.moderation_standin import ModerationStandIn
from tryon.local.template import SamTemplate
from tryon.workflow import clients, layout
from tryon.workflow.settings import COMPONENT_VARIABLES

__all__ = ["STATE_LIMIT_BYTES", "LocalWorkflow", "default_template_path"]

#: template parameter holding each endpoint kind's name
ENDPOINT_PARAMETERS = {row.kind: row.endpoint_parameter for row in ENDPOINT_KINDS}
#: template parameter holding each endpoint kind's serving mode
MODE_PARAMETERS = {row.kind: row.mode_parameter for row in ENDPOINT_KINDS}
STATE_MACHINE_ID = "TryOnStateMachine"
UPLOAD_EVENT_ID = "ImageUploaded"
INPUT_BUCKET_ID = "InputBucket"
OUTPUT_BUCKET_ID = "OutputBucket"
#: the SNS topics every asynchronous endpoint of the stack notifies (its AsyncInferenceConfig)
ASYNC_SUCCESS_TOPIC_ID = "AsyncSuccessTopic"
ASYNC_ERROR_TOPIC_ID = "AsyncErrorTopic"
TOKEN_TABLE_ID = "AsyncTokenTable"


def default_template_path() -> Path:
    """``$TRYON_TEMPLATE``, else the repository's ``template.yaml``, else ``./template.yaml``."""
    if os.environ.get("TRYON_TEMPLATE"):
        return Path(os.environ["TRYON_TEMPLATE"])
    repo = Path(__file__).resolve().parents[3] / "template.yaml"
    return repo if repo.exists() else Path("template.yaml")


def stack_template(
    template: str | os.PathLike[str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    *,
    upscale: bool = True,
    modes: Mapping[str, str] | None = None,
    layout: str | None = None,
    region: str = "us-east-1",
    stack_name: str = "tryon-local",
) -> SamTemplate:
    """The template with the parameter values a :class:`LocalWorkflow` of these arguments uses.

    ``upscale=False`` empties ``UpscaleEndpointName``; ``modes`` set the ``<Kind>Mode``
    parameters; ``layout`` sets ``EndpointLayout`` unless ``parameters`` do. Every value is
    checked as CloudFormation checks it. ``tryon run`` reads the functions' environment from it
    to check a job before any model loads.
    """
    params = dict(parameters or {})
    params["EndpointLayout"] = check_layout(params.get("EndpointLayout", layout or "separate"))
    if not upscale:
        params[ENDPOINT_PARAMETERS["sd_upscale"]] = ""
    for kind, mode in (modes or {}).items():
        params[MODE_PARAMETERS[check_kind(kind)]] = check_mode(mode)
    return SamTemplate(template or default_template_path(), params, region=region, stack_name=stack_name)


class LocalWorkflow:
    """The stack of ``template.yaml`` on moto, with the real handlers and model endpoints.

    ``model_dirs`` maps endpoint kind (``clipseg``, ``sd_inpaint``, ``sd_upscale``) to a model
    folder served by a :class:`~tryon.server.LocalEndpointServer` started on enter; pass
    ``endpoint_url`` instead to use a server that is already running (its endpoint names must
    match the template parameters). ``parameters`` override template parameters;
    ``upscale=False`` sets ``UpscaleEndpointName`` to empty (upscaling off); ``modes`` maps
    endpoint kind to serving mode (``realtime``, ``serverless``, ``async``), setting the
    template's ``<Kind>Mode`` parameters: the server serves each endpoint in its mode and the
    state machine takes the matching path. ``deliver_events=True`` creates the template's
    EventBridge rule and delivers its matches to the state machine, as AWS does (moto drops
    Step Functions targets): an upload alone then starts an execution. Off by default, so
    tests can start executions themselves. ``layout="shared"`` (template parameter
    ``EndpointLayout``) serves the real-time kinds as inference components of one endpoint,
    which the workflow calls by component name; ``scale_from_zero_seconds`` emulates their
    scale-out path from zero (:meth:`scale_component` scales one to zero). :attr:`moderation` is
    the Rekognition stand-in the
    Moderate function calls (:meth:`~tryon.local.moderation_standin.ModerationStandIn.flag` sets
    labels for an image; the template's ``ContentModeration`` parameters apply as on AWS).
    """

    def __init__(
        self,
        model_dirs: Mapping[str, str | os.PathLike[str]] | None = None,
        *,
        template: str | os.PathLike[str] | None = None,
        parameters: Mapping[str, Any] | None = None,
        upscale: bool = True,
        modes: Mapping[str, str] | None = None,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        stack_name: str = "tryon-local",
        log_level: str | None = "WARNING",
        load_timeout: float = 900.0,
        deliver_events: bool = False,
        layout: str = "separate",
        scale_from_zero_seconds: float | None = None,
    ) -> None:
        self.template = stack_template(
            template,
            parameters,
            upscale=upscale,
            modes=modes,
            layout=layout,
            region=region,
            stack_name=stack_name,
        )
        self.model_dirs = {k: str(v) for k, v in (model_dirs or {}).items()}
        self.region = region
        self.stack_name = stack_name
        self.log_level = log_level
        self.load_timeout = load_timeout
        self._endpoint_url = endpoint_url
        self._server: Any = None
        self.moderation = ModerationStandIn()
        self._mock: Any = None
        self._patches: ExitStack | None = None
        self._hook_removers: list[Callable[[], None]] = []
        self._saved_region: tuple[str | None] | None = None  # (value before __enter__,)
        self.lambdas = LambdaRuntime(self.template, self._base_environment)
        self.state_machine_arn = ""
        self.deliver_events = deliver_events
        #: the emulated scale-out from zero of the shared layout's components (None: they stay at zero)
        self.scale_from_zero_seconds = scale_from_zero_seconds
        #: every AWS call the functions made, authorised against their policies (tryon.local.iam)
        self.iam: iam.Enforcer | None = None
        self._harness_session: Any = None

    # ------------------------------------------------------------------ properties
    @property
    def endpoint_names(self) -> dict[str, str]:
        """Endpoint kind -> name, as the template parameters say (an empty upscaler is left out)."""
        names = {kind: self.template.parameters[param] for kind, param in ENDPOINT_PARAMETERS.items()}
        return {kind: name for kind, name in names.items() if name}

    @property
    def components(self) -> dict[str, str]:
        """Endpoint kind -> its inference component on the shared endpoint (shared layout; else empty)."""
        env = self.template.function_environment("PrepareFunction")
        names = {kind: env.get(var, "") for kind, var in COMPONENT_VARIABLES.items()}
        return {kind: name for kind, name in names.items() if name and kind in self.endpoint_names}

    def scale_component(
        self, kind: str, copies: int, *, scale_from_zero_seconds: float | None = None
    ) -> None:
        """Set the running copies of a kind's component (0: scaled to zero), as its scaling policies
        would, and how long the emulated scale-out from zero takes (None: no copy ever starts)."""
        if self._server is None:
            raise RuntimeError("the local endpoint server is not running")
        self._server.registry.scale(
            self.components[check_kind(kind)], copies, scale_from_zero_seconds=scale_from_zero_seconds
        )

    @property
    def endpoint_modes(self) -> dict[str, str]:
        """Endpoint kind -> serving mode, as the template parameters say."""
        return {
            kind: self.template.parameters.get(param, "realtime") for kind, param in MODE_PARAMETERS.items()
        }

    @property
    def endpoint_url(self) -> str:
        """Where ``sagemaker-runtime`` calls go."""
        return self._endpoint_url or ""

    @property
    def input_bucket(self) -> str:
        return self.template.resources[INPUT_BUCKET_ID]["Ref"]

    @property
    def output_bucket(self) -> str:
        return self.template.resources[OUTPUT_BUCKET_ID]["Ref"]

    @property
    def input_prefix(self) -> str:
        return self.template.parameters["InputPrefix"]

    @property
    def token_table(self) -> str:
        """The DynamoDB table of the asynchronous path's task tokens."""
        return self.template.resources[TOKEN_TABLE_ID]["Ref"]

    @property
    def invocations(self) -> list[tuple[str, float, bool]]:
        """``(function logical id, seconds, errored)`` of every function invocation so far."""
        return self.lambdas.invocations

    @property
    def event_pattern(self) -> dict[str, Any]:
        """The EventBridge rule's pattern, resolved for this stack's buckets."""
        return self.template.event_pattern(STATE_MACHINE_ID, UPLOAD_EVENT_ID)

    def client(self, service: str) -> Any:
        """A boto3 client for the mocked account, acting as the world around the stack (a test, the CLI).

        Its calls are never a function's, even when made from a hook that runs inside one (a test
        re-uploading a photo while Segment calls its endpoint): they come from a session of their
        own, which :mod:`tryon.local.iam` does not authorise and :mod:`tryon.local.faults` does not fault.
        """
        if self._harness_session is None:
            self._harness_session = boto3.Session(region_name=self.region)
            self._harness_session.events.register_first("before-send", faults.mark_harness_request)
        return self._harness_session.client(service)

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> LocalWorkflow:
        from moto import mock_aws

        # Functions see their own environment through the overlay; boto3's default session is
        # made afresh so that it reads the overlay, not the os.environ an earlier session kept.
        lambda_env.install()
        boto3.DEFAULT_SESSION = None
        # The endpoints' containers (the server's threads) run in the stack's region, as on AWS.
        self._saved_region = (os.environ.get("AWS_DEFAULT_REGION"),)
        os.environ["AWS_DEFAULT_REGION"] = self.region
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start()
        try:
            self._patches = ExitStack()
            self._patches.enter_context(moto_patches.lambda_invoke(self.lambdas.invoke))
            self._patches.enter_context(moto_patches.send_task_failure_with_cause())
            self._patches.enter_context(moto_patches.heartbeat_timeout_error())
            self._patches.enter_context(moto_patches.sns_invokes_asynchronously(self.lambdas.invoke_async))
            self.lambdas.on_failure = self._send_to_destination
            if self.deliver_events:
                self._patches.enter_context(
                    moto_patches.deliver_to_state_machines(
                        self._start_from_delivered_event, self.lambdas.lock
                    )
                )
            clients.reset_clients()
            provision.create_stack(self.template, self.client, self.stack_name, self.lambdas)
            # The functions' clients (made later, from the default session) are authorised as on AWS.
            self.iam = iam.Enforcer(self.template, self._function_logical_id)
            self.iam.install(boto3._get_default_session())
            self.state_machine_arn = self.template.resources[STATE_MACHINE_ID]["Ref"]
            if self.deliver_events:
                self._create_upload_rule()
            if not self._endpoint_url:
                self._start_server()
            self.moderation.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._hook_removers.clear()  # the hooks go with the clients (clients.reset_clients below)
        self.moderation.stop()
        if self.iam is not None:
            self.iam.uninstall()
        if self._server is not None:
            self._server.stop()
            self._server = None
            self._endpoint_url = None
        if self._patches is not None:
            self._patches.close()
            self._patches = None
        if self._mock is not None:
            self._mock.stop()
            self._mock = None
        self._harness_session = None
        if self._saved_region is not None:
            (region,) = self._saved_region
            if region is None:
                os.environ.pop("AWS_DEFAULT_REGION", None)
            else:
                os.environ["AWS_DEFAULT_REGION"] = region
            self._saved_region = None
        clients.reset_clients()

    def _function_logical_id(self, name: str) -> str | None:
        spec = self.lambdas.functions.get(name)
        return spec.logical_id if spec else None

    def _send_to_destination(self, destination: str, record: Mapping[str, Any]) -> None:
        """An asynchronous invocation's on-failure record, sent where its EventInvokeConfig says."""
        queues = {
            res.get("Arn"): res["Ref"] for res in self.template.resources.values() if "QueueName" in res
        }
        if destination not in queues:
            raise ValueError(f"on-failure destination {destination} is not a queue of this stack")
        self.client("sqs").send_message(QueueUrl=queues[destination], MessageBody=json.dumps(record))

    def _base_environment(self) -> dict[str, str]:
        """What every function's environment has besides its template variables."""
        env = {
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "TRYON_SAGEMAKER_RUNTIME_URL": self.endpoint_url,
            "TRYON_REKOGNITION_URL": self.moderation.url,
        }
        if self.log_level:
            env["POWERTOOLS_LOG_LEVEL"] = self.log_level
        return env

    def _async_output(self) -> Any:
        """Where the asynchronous endpoints answer and whom they notify (their AsyncInferenceConfig)."""
        from tryon.server.async_api import AsyncOutput

        prefix = self.template.parameters["AsyncPrefix"]
        return AsyncOutput(
            output_path=s3_uri(self.output_bucket, prefix + layout.ASYNC_OUTPUTS),
            failure_path=s3_uri(self.output_bucket, prefix + layout.ASYNC_ERRORS),
            success_topic=self.template.resources[ASYNC_SUCCESS_TOPIC_ID]["Ref"],
            error_topic=self.template.resources[ASYNC_ERROR_TOPIC_ID]["Ref"],
        )

    def _start_server(self) -> None:
        from tryon.server import EndpointConfig, LocalEndpointServer

        missing = sorted(set(self.endpoint_names) - set(self.model_dirs))
        if missing:
            raise ValueError(f"model_dirs lacks a model folder for endpoint kind(s): {', '.join(missing)}")
        modes = self.endpoint_modes
        components = self.components
        shared = self.template.parameters["SharedEndpointName"]
        configs = [
            EndpointConfig(
                shared if kind in components else name,
                kind,
                self.model_dirs[kind],
                mode=modes[kind],  # type: ignore[arg-type]
                async_output=self._async_output() if modes[kind] == "async" else None,
                component=components.get(kind),
                scale_from_zero_seconds=self.scale_from_zero_seconds if kind in components else None,
            )
            for kind, name in self.endpoint_names.items()
        ]
        self._server = LocalEndpointServer(configs, load_timeout=self.load_timeout).start()
        self._endpoint_url = self._server.url

    def _create_upload_rule(self) -> None:
        events = self.client("events")
        rule = f"{self.stack_name}-{UPLOAD_EVENT_ID}"
        events.put_rule(Name=rule, EventPattern=json.dumps(self.event_pattern), State="ENABLED")
        role_arn = self.client("iam").get_role(RoleName=f"{self.stack_name}-{provision.LOCAL_ROLE}")["Role"][
            "Arn"
        ]
        events.put_targets(
            Rule=rule,
            Targets=[{"Id": STATE_MACHINE_ID, "Arn": self.state_machine_arn, "RoleArn": role_arn}],
        )

    # ------------------------------------------------------------------ inputs
    def upload(
        self,
        data: bytes | str | os.PathLike[str],
        key: str | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        """Put an image (bytes or a file) into the input bucket; returns bucket, key, version id, ETag."""
        if not isinstance(data, bytes):
            path = Path(data)
            key = key or f"{self.input_prefix}{path.name}"
            data = path.read_bytes()
        if key is None:
            raise ValueError("key is required when uploading bytes")
        kwargs: dict[str, Any] = {"Bucket": self.input_bucket, "Key": key, "Body": data}
        if metadata:
            kwargs["Metadata"] = dict(metadata)
        if content_type:
            kwargs["ContentType"] = content_type
        put = self.client("s3").put_object(**kwargs)
        return {
            "bucket": self.input_bucket,
            "key": key,
            "version_id": put.get("VersionId"),
            "etag": put["ETag"],
        }

    def _start_from_delivered_event(self, state_machine_arn: str, event: Mapping[str, Any]) -> None:
        """Start an execution with the event as AWS delivers it (moto's S3 event differs in details)."""
        from tryon.core import aws_events  # Powertools: not in the serving image, which imports tryon.local

        if aws_events.is_s3_event(event):
            created = aws_events.object_created(event)
            payload = self.s3_event(created.key, created.bucket)
        else:
            payload = dict(event)
        self.client("stepfunctions").start_execution(
            stateMachineArn=state_machine_arn,
            name=f"event-{uuid.uuid4().hex[:20]}",
            input=json.dumps(payload),
        )

    def s3_event(self, key: str, bucket: str | None = None) -> dict[str, Any]:
        """The EventBridge "Object Created" event S3 sends for an existing object."""
        return s3_object_created(
            self.client("s3"),
            bucket or self.input_bucket,
            key,
            account=self.template.pseudo["AWS::AccountId"],
            region=self.region,
        )

    def start(self, execution_input: Any, name: str | None = None) -> str:
        """Start an execution with any input (a console input or an event); returns its ARN."""
        return self.client("stepfunctions").start_execution(
            stateMachineArn=self.state_machine_arn,
            name=name or f"local-{uuid.uuid4().hex[:20]}",
            input=json.dumps(execution_input),
        )["executionArn"]

    def start_from_s3_event(self, key: str, bucket: str | None = None) -> str:
        """Start an execution the way the EventBridge rule does (moto does not deliver it)."""
        return self.start(self.s3_event(key, bucket))

    # ------------------------------------------------------------------ outcomes
    def wait(
        self,
        execution_arn: str,
        *,
        timeout: float = 300.0,
        poll_s: float = 0.05,
        on_event: Callable[[StateEvent], None] | None = None,
    ) -> ExecutionResult:
        """Poll until the execution ends, reporting states as they start, fail and end.

        Raises TimeoutError (after stopping the execution) if it runs past ``timeout`` seconds.
        """
        return follow_execution(
            self.client("stepfunctions"),
            execution_arn,
            timeout=timeout,
            poll_s=poll_s,
            on_event=on_event,
            stop_on_timeout=True,
        )

    def run(self, execution_input: Mapping[str, Any] | None = None, *, key: str | None = None, **wait: Any):
        """Start (from a console input, or from an S3 event for ``key``) and wait."""
        arn = self.start_from_s3_event(key) if key is not None else self.start(execution_input or {})
        return self.wait(arn, **wait)

    def read_bytes(self, uri_or_key: str) -> bytes:
        """An object's bytes (an ``s3://`` URI, or a key in the output bucket)."""
        bucket, key = bucket_and_key(uri_or_key, self.output_bucket)
        return self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()

    def read_json(self, uri_or_key: str) -> Any:
        """A JSON object's content (``s3://`` URI or output-bucket key)."""
        return json.loads(self.read_bytes(uri_or_key))

    def failure_record(self, execution_arn: str) -> dict[str, Any] | None:
        """The failure record (``failures/<job-id>.json``) RecordFailure wrote for an execution, if any."""
        failures_prefix = self.template.parameters.get("FailuresPrefix", "failures/")
        for key in self.list_keys(failures_prefix):
            record = self.read_json(key)
            if isinstance(record, dict) and record.get("execution") == execution_arn:
                return record
        return None

    def list_keys(self, prefix: str = "", bucket: str | None = None) -> list[str]:
        """Keys under a prefix (output bucket by default)."""
        paginator = self.client("s3").get_paginator("list_objects_v2")
        keys: list[str] = []
        for page in paginator.paginate(Bucket=bucket or self.output_bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys

    def download_results(self, prefix_or_manifest: str, out_dir: str | os.PathLike[str]) -> list[Path]:
        """Copy a result prefix (or the prefix of a manifest URI) from the output bucket to ``out_dir``."""
        bucket, prefix = bucket_and_key(prefix_or_manifest, self.output_bucket)
        if not prefix.endswith("/"):
            prefix = prefix.rpartition("/")[0] + "/"
        out = Path(out_dir)
        paths = []
        for key in self.list_keys(prefix, bucket):
            dest = out / key[len(prefix) :]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(self.read_bytes(f"s3://{bucket}/{key}"))
            paths.append(dest)
        return paths

    def _queue(self, purpose: str) -> tuple[str, str, Callable[[], list[dict[str, Any]]]]:
        """A new SQS queue: (URL, ARN, a function draining its messages as decoded JSON bodies)."""
        sqs = self.client("sqs")
        name = f"{self.stack_name}-{purpose}-{uuid.uuid4().hex[:8]}"
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

        def drain() -> list[dict[str, Any]]:
            received = []
            while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                for message in messages:
                    received.append(json.loads(message["Body"]))
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            return received

        return url, arn, drain

    def subscribe_job_events(self) -> Callable[[], list[dict[str, Any]]]:
        """Route the workflow's completion/failure events to a queue; returns a function draining it."""
        from tryon.workflow.steps import EVENT_SOURCE

        events = self.client("events")
        _, arn, drain = self._queue("job-events")
        rule = arn.rsplit(":", 1)[-1]
        events.put_rule(Name=rule, EventPattern=json.dumps({"source": [EVENT_SOURCE]}), State="ENABLED")
        events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": arn}])
        return drain

    def subscribe_topic(self, logical_id: str) -> Callable[[], list[dict[str, Any]]]:
        """Copy what is published to a template topic into a queue; returns a function draining it."""
        _, arn, drain = self._queue(logical_id.lower())
        self.client("sns").subscribe(
            TopicArn=self.template.resources[logical_id]["Ref"],
            Protocol="sqs",
            Endpoint=arn,
            Attributes={"RawMessageDelivery": "true"},
        )
        return drain

    # ------------------------------------------------------------------ fault injection
    def before_endpoint_call(
        self, kind: str, hook: Callable[[Mapping[str, Any]], Any], operation: str = "InvokeEndpoint"
    ) -> None:
        """Call ``hook(request)`` before each workflow call to an endpoint, in the calling step.

        Whatever ``hook`` returns instead of None (an ``(AWSResponse, parsed)`` pair) is what
        botocore answers instead of sending the request, as botocore's ``before-call`` event does.
        ``operation`` is ``InvokeEndpoint`` or ``InvokeEndpointAsync``. The hook stays until
        :meth:`remove_endpoint_hooks` (or the end of the stack).
        """
        remove = faults.before_endpoint_call(self.endpoint_url, self.endpoint_names[kind], hook, operation)
        self._hook_removers.append(remove)

    def remove_endpoint_hooks(self) -> None:
        """Remove every hook :meth:`before_endpoint_call` and :meth:`fail_endpoint_calls` added, so a
        stack shared by several tests starts each one without the faults of the one before."""
        while self._hook_removers:
            self._hook_removers.pop()()

    def fail_endpoint_calls(
        self,
        kind: str,
        *,
        code: str = "ThrottlingException",
        status: int = 400,
        times: int = 1,
        message: str = "Rate exceeded (injected by LocalWorkflow)",
        operation: str = "InvokeEndpoint",
    ) -> Callable[[], int]:
        """Make the next ``times`` calls to an endpoint fail with an AWS error (e.g. throttling).

        The error is answered by botocore itself, before the request leaves, so the handler
        sees exactly the ClientError that SageMaker would produce. Returns a function that
        reports how many calls were failed so far.
        """
        endpoint = self.endpoint_names[kind]
        hook, count = faults.error_answer(
            self.endpoint_url, endpoint, code=code, status=status, message=message, times=times
        )
        self.before_endpoint_call(kind, hook, operation)
        return count

    def inject_faults(self) -> faults.FaultInjector:
        """A :class:`~tryon.local.faults.FaultInjector` for this stack's functions (a context manager)."""
        return faults.FaultInjector(self._function_logical_id)

    def drop_async_notifications(self) -> None:
        """Unsubscribe everything from the asynchronous endpoints' topics: their notifications are lost."""
        sns = self.client("sns")
        for logical in (ASYNC_SUCCESS_TOPIC_ID, ASYNC_ERROR_TOPIC_ID):
            topic = self.template.resources[logical]["Ref"]
            for sub in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]:
                sns.unsubscribe(SubscriptionArn=sub["SubscriptionArn"])
