"""``LocalWorkflow``: the deployed stack's workflow, run on one machine.

What is real: ``template.yaml`` (parameters, function environments, the state machine's
``DefinitionSubstitutions``, bucket settings), the ASL in ``statemachine/`` executed by moto's
Step Functions interpreter, the Lambda handlers in ``functions/`` (run in-process by patching
moto's Lambda invoke, each with its template environment), and the model handlers behind
:class:`tryon.server.LocalEndpointServer`, reached by an unmodified boto3 ``sagemaker-runtime``
client. What is simulated: AWS itself (moto).

Example::

    with LocalWorkflow({"clipseg": ..., "sd_inpaint": ..., "sd_upscale": ...}) as wf:
        key = wf.upload(Path("photo.jpg"))["key"]
        result = wf.wait(wf.start_from_s3_event(key), on_event=print)
        wf.download_results(result.output["manifest"], Path("out"))
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import threading
import time
import traceback
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import boto3

from tryon.executions import ExecutionResult, StateEvent, follow_execution
from tryon.local.template import SamTemplate
from tryon.workflow import aws

#: template parameter holding each endpoint kind's name
ENDPOINT_PARAMETERS = {
    "clipseg": "ClipSegEndpointName",
    "sd_inpaint": "InpaintEndpointName",
    "sd_upscale": "UpscaleEndpointName",
}
STATE_MACHINE_ID = "TryOnStateMachine"
UPLOAD_EVENT_ID = "ImageUploaded"
INPUT_BUCKET_ID = "InputBucket"
OUTPUT_BUCKET_ID = "OutputBucket"
LOCAL_ROLE = "tryon-local-execution-role"
#: Step Functions caps each state's input and output (and an execution's input) at 256 KiB.
STATE_LIMIT_BYTES = 256 * 1024


def default_template_path() -> Path:
    """``$TRYON_TEMPLATE``, else the repository's ``template.yaml``, else ``./template.yaml``."""
    if os.environ.get("TRYON_TEMPLATE"):
        return Path(os.environ["TRYON_TEMPLATE"])
    repo = Path(__file__).resolve().parents[3] / "template.yaml"
    return repo if repo.exists() else Path("template.yaml")


@dataclass(frozen=True)
class _Function:
    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    timeout_s: int
    memory_mb: int


@dataclass
class _LambdaContext:
    """The parts of the Lambda context object that powertools and handlers read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_s: int
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "local"
    _deadline: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self._deadline = time.monotonic() + self.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


class StateTooLarge(Exception):
    """A state's input or output is over Step Functions' 256 KiB (``States.DataLimitExceeded`` on AWS)."""


def _check_state_size(document: Any, what: str) -> None:
    """Fail as AWS would when a Task's input or result is over :data:`STATE_LIMIT_BYTES`."""
    size = len(json.dumps(document, default=str).encode())
    if size > STATE_LIMIT_BYTES:
        raise StateTooLarge(f"{what} is {size} bytes; Step Functions allows {STATE_LIMIT_BYTES} per state")


def _zip_dir(path: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(path.rglob("*.py")):
            zf.write(file, file.relative_to(path).as_posix())
    return buf.getvalue()


def _split_s3(uri_or_key: str, default_bucket: str) -> tuple[str, str]:
    if uri_or_key.startswith("s3://"):
        bucket, _, key = uri_or_key[5:].partition("/")
        return bucket, key
    return default_bucket, uri_or_key


class LocalWorkflow:
    """The stack of ``template.yaml`` on moto, with the real handlers and model endpoints.

    ``model_dirs`` maps endpoint kind (``clipseg``, ``sd_inpaint``, ``sd_upscale``) to a model
    folder served by a :class:`~tryon.server.LocalEndpointServer` started on enter; pass
    ``endpoint_url`` instead to use a server that is already running (its endpoint names must
    match the template parameters). ``parameters`` override template parameters;
    ``upscale=False`` sets ``UpscaleEndpointName`` to empty (upscaling off).
    ``deliver_events=True`` creates the template's EventBridge rule and delivers its matches
    to the state machine, as AWS does (moto drops Step Functions targets): an upload alone
    then starts an execution. Off by default, so tests can start executions themselves.
    """

    def __init__(
        self,
        model_dirs: Mapping[str, str | os.PathLike[str]] | None = None,
        *,
        template: str | os.PathLike[str] | None = None,
        parameters: Mapping[str, Any] | None = None,
        upscale: bool = True,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        stack_name: str = "tryon-local",
        log_level: str | None = "WARNING",
        load_timeout: float = 900.0,
        deliver_events: bool = False,
    ) -> None:
        params = dict(parameters or {})
        if not upscale:
            params["UpscaleEndpointName"] = ""
        self.template = SamTemplate(
            template or default_template_path(), params, region=region, stack_name=stack_name
        )
        self.model_dirs = {k: str(v) for k, v in (model_dirs or {}).items()}
        self.region = region
        self.stack_name = stack_name
        self.log_level = log_level
        self.load_timeout = load_timeout
        self._endpoint_url = endpoint_url
        self._server: Any = None
        self._mock: Any = None
        self._patch: Any = None
        self._functions: dict[str, _Function] = {}
        self._modules: dict[str, ModuleType] = {}
        self._lock = threading.RLock()
        self.state_machine_arn = ""
        self.deliver_events = deliver_events
        self._events_patch: Any = None
        self.invocations: list[tuple[str, float, bool]] = []  # (function, seconds, errored)

    # ------------------------------------------------------------------ properties
    @property
    def endpoint_names(self) -> dict[str, str]:
        """Endpoint kind -> name, as the template parameters say (an empty upscaler is left out)."""
        names = {kind: self.template.parameters[param] for kind, param in ENDPOINT_PARAMETERS.items()}
        return {kind: name for kind, name in names.items() if name}

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
    def event_pattern(self) -> dict[str, Any]:
        """The EventBridge rule's pattern, resolved for this stack's buckets."""
        return self.template.event_pattern(STATE_MACHINE_ID, UPLOAD_EVENT_ID)

    def client(self, service: str) -> Any:
        """A boto3 client for the mocked account."""
        return boto3.client(service, region_name=self.region)

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> LocalWorkflow:
        from moto import mock_aws
        from moto.awslambda.models import LambdaFunction

        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start()
        try:
            harness = self

            def invoke(fn: Any, event: Any = None) -> tuple[str, bool, str]:
                return harness._invoke(fn.function_name, event)

            self._patch = mock.patch.object(LambdaFunction, "_invoke_lambda", invoke)
            self._patch.start()
            if self.deliver_events:
                self._events_patch = self._deliver_to_state_machines()
                self._events_patch.start()
            aws.reset_clients()
            if not self._endpoint_url:
                self._start_server()
            self._create_stack()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
            self._endpoint_url = None
        if self._patch is not None:
            self._patch.stop()
            self._patch = None
        if self._events_patch is not None:
            self._events_patch.stop()
            self._events_patch = None
        if self._mock is not None:
            self._mock.stop()
            self._mock = None
        aws.reset_clients()

    def _start_server(self) -> None:
        from tryon.server import EndpointConfig, LocalEndpointServer

        missing = sorted(set(self.endpoint_names) - set(self.model_dirs))
        if missing:
            raise ValueError(f"model_dirs lacks a model folder for endpoint kind(s): {', '.join(missing)}")
        configs = [
            EndpointConfig(name, kind, self.model_dirs[kind]) for kind, name in self.endpoint_names.items()
        ]
        self._server = LocalEndpointServer(configs, load_timeout=self.load_timeout).start()
        self._endpoint_url = self._server.url

    def _create_stack(self) -> None:
        t = self.template
        s3 = self.client("s3")
        for logical, res in t.resources_of_type("AWS::S3::Bucket").items():
            name = f"{self.stack_name}-{logical.removesuffix('Bucket').lower()}"
            s3.create_bucket(Bucket=name)
            t.resources[logical] = {"Ref": name, "Arn": f"arn:aws:s3:::{name}"}
            props = res.get("Properties", {})
            if props.get("VersioningConfiguration", {}).get("Status") == "Enabled":
                s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
            if "EventBridgeConfiguration" in props.get("NotificationConfiguration", {}):
                s3.put_bucket_notification_configuration(
                    Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
                )
        sns = self.client("sns")
        for logical in t.resources_of_type("AWS::SNS::Topic"):
            topic_name = f"{self.stack_name}-{logical}"
            arn = sns.create_topic(Name=topic_name)["TopicArn"]
            t.resources[logical] = {"Ref": arn, "TopicName": topic_name}
        role_arn = self.client("iam").create_role(
            RoleName=LOCAL_ROLE,
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )["Role"]["Arn"]
        self._create_functions(role_arn)
        sfn = self.client("stepfunctions")
        for logical, res in t.resources_of_type("AWS::Serverless::StateMachine").items():
            arn = sfn.create_state_machine(
                name=f"{self.stack_name}-{logical}",
                definition=t.state_machine_definition(logical),
                roleArn=role_arn,
                type=res["Properties"].get("Type", "STANDARD"),
            )["stateMachineArn"]
            t.resources[logical] = {"Ref": arn, "Name": f"{self.stack_name}-{logical}"}
        self.state_machine_arn = t.resources[STATE_MACHINE_ID]["Ref"]
        if self.deliver_events:
            events = self.client("events")
            rule = f"{self.stack_name}-{UPLOAD_EVENT_ID}"
            events.put_rule(Name=rule, EventPattern=json.dumps(self.event_pattern), State="ENABLED")
            events.put_targets(
                Rule=rule,
                Targets=[{"Id": STATE_MACHINE_ID, "Arn": self.state_machine_arn, "RoleArn": role_arn}],
            )

    def _create_functions(self, role_arn: str) -> None:
        t = self.template
        lam = self.client("lambda")
        for logical in t.resources_of_type("AWS::Serverless::Function"):
            name = f"{self.stack_name}-{logical}"
            code_dir = (t.root / t.function_property(logical, "CodeUri")).resolve()
            handler = t.function_property(logical, "Handler")
            env = t.function_environment(logical)
            timeout = int(t.function_property(logical, "Timeout", 3))
            memory = int(t.function_property(logical, "MemorySize", 128))
            arn = lam.create_function(
                FunctionName=name,
                Runtime=t.function_property(logical, "Runtime"),
                Role=role_arn,
                Handler=handler,
                Code={"ZipFile": _zip_dir(code_dir)},
                Timeout=timeout,
                MemorySize=memory,
                Environment={"Variables": env},
            )["FunctionArn"]
            t.resources[logical] = {"Ref": name, "Arn": arn}
            self._functions[name] = _Function(logical, name, arn, code_dir, handler, env, timeout, memory)

    # ------------------------------------------------------------------ Lambda emulation
    def _local_environment(self, fn: _Function) -> dict[str, str]:
        env = {
            **fn.environment,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_LAMBDA_FUNCTION_NAME": fn.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_mb),
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "TRYON_SAGEMAKER_RUNTIME_URL": self.endpoint_url,
        }
        if self.log_level:
            env["POWERTOOLS_LOG_LEVEL"] = self.log_level
        return env

    def _module(self, fn: _Function) -> ModuleType:
        if fn.name not in self._modules:
            module_name, _, _ = fn.handler.rpartition(".")
            path = fn.code_dir / (module_name.replace(".", "/") + ".py")
            spec = importlib.util.spec_from_file_location(f"_tryon_lambda_{fn.logical_id}_{id(self)}", path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {path}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            self._modules[fn.name] = module
        return self._modules[fn.name]

    def _invoke(self, function_name: str, event: Any) -> tuple[str, bool, str]:
        """Run a function's handler in-process, as the Lambda runtime would; (payload, errored, logs)."""
        fn = self._functions[function_name]
        if isinstance(event, str | bytes):
            try:
                event = json.loads(event or "{}")
            except ValueError:  # moto hands a string state over unencoded; Lambda gets that string
                event = event.decode() if isinstance(event, bytes) else event
        start = time.perf_counter()
        with self._lock, _environment(self._local_environment(fn)):
            try:
                handler = getattr(self._module(fn), fn.handler.rpartition(".")[2])
                context = _LambdaContext(fn.name, fn.arn, fn.memory_mb, fn.timeout_s)
                _check_state_size(event, f"the input of {fn.logical_id}")
                result = handler(event if event is not None else {}, context)
                payload, errored, logs = json.dumps(result, default=str), False, ""
                _check_state_size(result, f"the output of {fn.logical_id}")
            except Exception as exc:
                stack = traceback.format_exception(exc)
                error_type = (
                    "States.DataLimitExceeded" if isinstance(exc, StateTooLarge) else type(exc).__name__
                )
                payload = json.dumps(
                    {"errorType": error_type, "errorMessage": str(exc), "stackTrace": stack[-8:]}
                )
                errored, logs = True, "".join(stack)
        self.invocations.append((fn.logical_id, time.perf_counter() - start, errored))
        return payload, errored, logs

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

    def _deliver_to_state_machines(self) -> Any:
        """A patch of moto's rule dispatch that starts executions for Step Functions targets."""
        from moto.events.models import Rule

        original = Rule.send_to_targets
        harness = self

        def send_to_targets(rule: Any, event: Any, transform_input: bool = True) -> None:
            machines = [t for t in rule.targets if t["Arn"].startswith("arn:aws:states:")]
            if machines and rule.event_pattern.matches_event(event):
                for target in machines:
                    harness._start_from_delivered_event(target["Arn"], event)
            others = [t for t in rule.targets if t not in machines]
            if others:
                with harness._lock:
                    all_targets, rule.targets = rule.targets, others
                    try:
                        original(rule, event, transform_input)
                    finally:
                        rule.targets = all_targets

        return mock.patch.object(Rule, "send_to_targets", send_to_targets)

    def _start_from_delivered_event(self, state_machine_arn: str, event: Mapping[str, Any]) -> None:
        """Start an execution with the event as AWS delivers it (moto's S3 event differs in details)."""
        detail = event.get("detail", {})
        if event.get("source") == "aws.s3" and "object" in detail:
            payload = self.s3_event(detail["object"]["key"], detail["bucket"]["name"])
        else:
            payload = dict(event)
        self.client("stepfunctions").start_execution(
            stateMachineArn=state_machine_arn,
            name=f"event-{uuid.uuid4().hex[:20]}",
            input=json.dumps(payload),
        )

    def s3_event(self, key: str, bucket: str | None = None) -> dict[str, Any]:
        """The EventBridge "Object Created" event S3 sends for an existing object."""
        bucket = bucket or self.input_bucket
        head = self.client("s3").head_object(Bucket=bucket, Key=key)
        obj: dict[str, Any] = {
            "key": key,
            "size": head["ContentLength"],
            "etag": head["ETag"].strip('"'),
            "sequencer": f"{time.time_ns():X}",
        }
        if head.get("VersionId"):
            obj["version-id"] = head["VersionId"]
        account = self.template.pseudo["AWS::AccountId"]
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": account,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket},
                "object": obj,
                "request-id": uuid.uuid4().hex[:16].upper(),
                "requester": account,
                "source-ip-address": "127.0.0.1",
                "reason": "PutObject",
            },
        }

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
        bucket, key = _split_s3(uri_or_key, self.output_bucket)
        return self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()

    def read_json(self, uri_or_key: str) -> Any:
        """A JSON object's content (``s3://`` URI or output-bucket key)."""
        return json.loads(self.read_bytes(uri_or_key))

    def list_keys(self, prefix: str = "", bucket: str | None = None) -> list[str]:
        """Keys under a prefix (output bucket by default)."""
        paginator = self.client("s3").get_paginator("list_objects_v2")
        keys: list[str] = []
        for page in paginator.paginate(Bucket=bucket or self.output_bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys

    def download_results(self, prefix_or_manifest: str, out_dir: str | os.PathLike[str]) -> list[Path]:
        """Copy a result prefix (or the prefix of a manifest URI) from the output bucket to ``out_dir``."""
        bucket, prefix = _split_s3(prefix_or_manifest, self.output_bucket)
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

    def subscribe_job_events(self) -> Callable[[], list[dict[str, Any]]]:
        """Route the workflow's completion/failure events to a queue; returns a function draining it."""
        from tryon.workflow.steps import EVENT_SOURCE

        sqs, events = self.client("sqs"), self.client("events")
        name = f"{self.stack_name}-job-events-{uuid.uuid4().hex[:8]}"
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name=name, EventPattern=json.dumps({"source": [EVENT_SOURCE]}), State="ENABLED")
        events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": arn}])

        def drain() -> list[dict[str, Any]]:
            received = []
            while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                for message in messages:
                    received.append(json.loads(message["Body"]))
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            return received

        return drain

    # ------------------------------------------------------------------ fault injection
    def before_endpoint_call(self, kind: str, hook: Callable[[Mapping[str, Any]], Any]) -> None:
        """Call ``hook(request)`` before each workflow call to an endpoint, in the calling step.

        Whatever ``hook`` returns instead of None (an ``(AWSResponse, parsed)`` pair) is what
        botocore answers instead of sending the request, as botocore's ``before-call`` event does.
        """
        endpoint = self.endpoint_names[kind]
        with _environment({"TRYON_SAGEMAKER_RUNTIME_URL": self.endpoint_url}):
            client = aws.client("sagemaker-runtime")

        def before_call(params: Mapping[str, Any], **_: Any) -> Any:
            if params.get("url_path", "").find(f"/endpoints/{endpoint}/") < 0:
                return None
            return hook(params)

        client.meta.events.register("before-call.sagemaker-runtime.InvokeEndpoint", before_call)

    def fail_endpoint_calls(
        self,
        kind: str,
        *,
        code: str = "ThrottlingException",
        status: int = 400,
        times: int = 1,
        message: str = "Rate exceeded (injected by LocalWorkflow)",
    ) -> Callable[[], int]:
        """Make the next ``times`` calls to an endpoint fail with an AWS error (e.g. throttling).

        The error is answered by botocore itself, before the request leaves, so the handler
        sees exactly the ClientError that SageMaker would produce. Returns a function that
        reports how many calls were failed so far.
        """
        from botocore.awsrequest import AWSResponse

        endpoint = self.endpoint_names[kind]
        failed = [0]

        def fail(_: Mapping[str, Any]) -> Any:
            if failed[0] >= times:
                return None
            failed[0] += 1
            response = AWSResponse(f"{self.endpoint_url}/endpoints/{endpoint}/invocations", status, {}, None)
            parsed = {
                "Error": {"Code": code, "Message": message},
                "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}},
            }
            return response, parsed

        self.before_endpoint_call(kind, fail)
        return lambda: failed[0]
