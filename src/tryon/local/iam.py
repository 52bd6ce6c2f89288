"""IAM on the local stack: every AWS call a Lambda function makes, authorised as AWS would.

moto does not enforce IAM, so on its own the local mode forgives a missing permission that
fails the first real deploy, and answers 404 for a missing object where S3 answers 403 to a
caller that may not list its prefix. :class:`Enforcer` closes both gaps. Hooked into the boto3
session the functions' clients come from, it turns each call a function makes (the function is
the one whose environment the calling thread runs in, :mod:`tryon.local.lambda_env`) into the
IAM requests AWS evaluates (:func:`requests_for`: action, resource ARN, condition keys), decides
them against that function's policy in the template (:func:`template_policies`), and

- answers a denied call ``AccessDenied`` (403) before it is sent, with AWS's own message;
- answers a ``GetObject``/``HeadObject`` of a missing key 403 instead of 404 unless the policy
  allows the implicit ``s3:ListBucket`` on the key's prefix (:func:`missing_object_request`);
- records every call (:class:`Call`) for the listeners in :data:`LISTENERS`: the test suite's
  permission check evaluates them again against the policy as SAM translates the template.

The policy language covered is what the template uses: ``Allow``/``Deny`` statements with
``Action``/``Resource`` wildcards and ``String*``/``Arn*``/``Bool`` conditions (``...IfExists``
too); anything else raises, so nothing is allowed by accident.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tryon.local.template import SamTemplate

#: botocore service name -> IAM action prefix
SERVICE_PREFIXES = {
    "s3": "s3",
    "dynamodb": "dynamodb",
    "stepfunctions": "states",
    "sns": "sns",
    "events": "events",
    "sagemaker-runtime": "sagemaker",
    "sqs": "sqs",
    "rekognition": "rekognition",
    "ssm": "ssm",
}
#: S3 errors that mean "no such key" (the implicit s3:ListBucket then decides 404 against 403).
MISSING_KEY_CODES = {"NoSuchKey", "404", "NotFound", "NoSuchVersion"}
#: SAM policy templates the template uses, expanded as samtranslator's policy_templates.json does.
POLICY_TEMPLATES: dict[str, Callable[[Mapping[str, Any]], list[dict[str, Any]]]] = {
    "SNSPublishMessagePolicy": lambda args: [
        {
            "Effect": "Allow",
            "Action": ["sns:Publish"],
            "Resource": {
                "Fn::Sub": [
                    "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:${topicName}",
                    {"topicName": args["TopicName"]},
                ]
            },
        }
    ],
}


@dataclass(frozen=True)
class Request:
    """One authorisation request: what AWS evaluates a policy against."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()
    #: decided by S3 itself for a missing key (s3:ListBucket), not by the API call's own action
    implicit: bool = False

    def describe(self) -> str:
        where = ", ".join(f"{k}={v}" for k, v in self.context)
        return f"{self.action} on {self.resource}" + (f" ({where})" if where else "")


@dataclass(frozen=True)
class Decision:
    """Whether a request is allowed, and by (or despite) which statement."""

    allowed: bool
    statement: str | None = None


@dataclass
class Call:
    """One AWS call made by a Lambda function, and the requests it needed."""

    function: str  # logical id
    service: str
    operation: str
    requests: list[Request] | None  # None: no mapping to IAM yet (tryon.local.iam must learn it)
    decisions: list[Decision] = field(default_factory=list)
    template: SamTemplate | None = None

    @property
    def allowed(self) -> bool:
        return self.requests is not None and all(d.allowed for d in self.decisions)

    def describe(self) -> str:
        return f"{self.function} {self.service}.{self.operation}"


#: Called with every recorded call (the test suite's permission check listens here).
LISTENERS: list[Callable[[Call], None]] = []


# ------------------------------------------------------------------ calls -> requests
def _arn(partition: str, service: str, region: str, account: str, resource: str) -> str:
    return f"arn:{partition}:{service}:{region}:{account}:{resource}"


def requests_for(
    service: str, operation: str, params: Mapping[str, Any], *, partition: str, region: str, account: str
) -> list[Request] | None:
    """The IAM requests AWS evaluates for one API call, or None for a call not mapped yet."""
    prefix = SERVICE_PREFIXES.get(service)
    if prefix is None:
        return None
    if service == "s3":
        bucket, key = params.get("Bucket", ""), params.get("Key")
        versioned = bool(params.get("VersionId"))
        obj = f"arn:{partition}:s3:::{bucket}/{key}"
        actions = {
            "GetObject": "s3:GetObjectVersion" if versioned else "s3:GetObject",
            "HeadObject": "s3:GetObjectVersion" if versioned else "s3:GetObject",
            "PutObject": "s3:PutObject",
            "DeleteObject": "s3:DeleteObjectVersion" if versioned else "s3:DeleteObject",
        }
        if operation in actions:
            return [Request(actions[operation], obj)]
        if operation == "CopyObject":  # read the source, write the destination
            return [_copy_source_request(params.get("CopySource"), partition), Request("s3:PutObject", obj)]
        if operation in ("ListObjectsV2", "ListObjects"):
            return [
                Request(
                    "s3:ListBucket",
                    f"arn:{partition}:s3:::{bucket}",
                    (("s3:prefix", params.get("Prefix", "")),),
                )
            ]
        return None
    if service == "dynamodb":
        table = params.get("TableName", "")
        if operation in ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan"):
            return [
                Request(
                    f"dynamodb:{operation}", _arn(partition, "dynamodb", region, account, f"table/{table}")
                )
            ]
        return None
    if service == "stepfunctions":
        if operation in ("SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat"):
            return [Request(f"states:{operation}", "*")]  # task tokens have no resource type
        if operation in ("DescribeExecution", "StopExecution"):
            return [Request(f"states:{operation}", params.get("executionArn", ""))]
        if operation == "StartExecution":
            return [Request("states:StartExecution", params.get("stateMachineArn", ""))]
        return None
    if service == "sns" and operation == "Publish":
        return [Request("sns:Publish", params.get("TopicArn") or params.get("TargetArn", ""))]
    if service == "events" and operation == "PutEvents":
        buses = {entry.get("EventBusName") or "default" for entry in params.get("Entries", [])}
        return [
            Request(
                "events:PutEvents",
                bus
                if bus.startswith("arn:")
                else _arn(partition, "events", region, account, f"event-bus/{bus}"),
            )
            for bus in sorted(buses)
        ]
    if service == "sagemaker-runtime" and operation in ("InvokeEndpoint", "InvokeEndpointAsync"):
        name = str(params.get("EndpointName", "")).lower()  # endpoint ARNs are lower case
        return [
            Request(
                f"sagemaker:{operation}", _arn(partition, "sagemaker", region, account, f"endpoint/{name}")
            )
        ]
    if service == "ssm" and operation in ("GetParameter", "GetParameters", "GetParametersByPath"):
        # a parameter's ARN is its name after "parameter" (a hierarchy's leading slash is the separator)
        names = params.get("Names") or [params.get("Name") or params.get("Path", "")]
        return [
            Request(f"ssm:{operation}", _arn(partition, "ssm", region, account, "parameter/" + n.strip("/")))
            for n in names
        ]
    if service == "rekognition" and operation == "DetectModerationLabels":
        # no resource type; an image named by S3Object is read with the caller's permissions
        requests = [Request("rekognition:DetectModerationLabels", "*")]
        s3_object = (params.get("Image") or {}).get("S3Object")
        if s3_object:
            source = {"Bucket": s3_object.get("Bucket", ""), "Key": s3_object.get("Name", "")}
            requests.append(_copy_source_request(source | {"VersionId": s3_object.get("Version")}, partition))
        return requests
    if service == "sqs" and operation == "SendMessage":
        url = str(params.get("QueueUrl", ""))
        name = url.rstrip("/").rsplit("/", 1)[-1]
        return [Request("sqs:SendMessage", _arn(partition, "sqs", region, account, name))]
    return None


def _copy_source_request(source: Any, partition: str) -> Request:
    """Reading a ``CopySource`` (``{"Bucket", "Key", "VersionId"}`` or ``"bucket/key?versionId=v"``)."""
    if isinstance(source, str):
        path, _, query = source.lstrip("/").partition("?versionId=")
        bucket, _, key = path.partition("/")
        source = {"Bucket": bucket, "Key": key, "VersionId": query or None}
    source = source or {}
    action = "s3:GetObjectVersion" if source.get("VersionId") else "s3:GetObject"
    return Request(action, f"arn:{partition}:s3:::{source.get('Bucket', '')}/{source.get('Key', '')}")


def missing_object_request(bucket: str, key: str, *, partition: str) -> Request:
    """What decides 404 against 403 for a missing key: ``s3:ListBucket`` with ``s3:prefix`` the key."""
    return Request("s3:ListBucket", f"arn:{partition}:s3:::{bucket}", (("s3:prefix", key),), implicit=True)


# ------------------------------------------------------------------ policy evaluation
def _pattern(text: str, *, case: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)
    return re.compile(f"^{regex}$", 0 if case else re.IGNORECASE)


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches_any(patterns: Iterable[Any], value: str, *, case: bool) -> bool:
    return any(_pattern(str(p), case=case).match(value) for p in patterns)


_OPERATORS: dict[str, Callable[[str, list[Any]], bool]] = {
    "StringEquals": lambda v, want: v in [str(w) for w in want],
    "StringNotEquals": lambda v, want: v not in [str(w) for w in want],
    "StringLike": lambda v, want: _matches_any(want, v, case=True),
    "StringNotLike": lambda v, want: not _matches_any(want, v, case=True),
    "ArnEquals": lambda v, want: v in [str(w) for w in want],
    "ArnLike": lambda v, want: _matches_any(want, v, case=True),
    "Bool": lambda v, want: v.lower() in [str(w).lower() for w in want],
}


def _conditions_hold(conditions: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    for operator, tests in conditions.items():
        name = operator.removesuffix("IfExists")
        if name not in _OPERATORS:
            raise ValueError(f"condition operator {operator} is not modelled by tryon.local.iam")
        for key, wanted in tests.items():
            if key not in context:
                if operator.endswith("IfExists"):
                    continue
                return False
            if not _OPERATORS[name](context[key], _listed(wanted)):
                return False
    return True


def _applies(statement: Mapping[str, Any], request: Request) -> bool:
    unsupported = {"NotAction", "NotResource", "Principal", "NotPrincipal"} & set(statement)
    if unsupported:
        raise ValueError(f"statement {statement.get('Sid')}: {sorted(unsupported)} are not modelled")
    if not _matches_any(_listed(statement.get("Action", [])), request.action, case=False):
        return False
    if not _matches_any(_listed(statement.get("Resource", [])), request.resource, case=True):
        return False
    return _conditions_hold(statement.get("Condition", {}), dict(request.context))


def evaluate(statements: Iterable[Mapping[str, Any]], request: Request) -> Decision:
    """IAM's rule for one principal: an explicit Deny wins, else any Allow, else denied."""
    allowed_by: str | None = None
    for statement in statements:
        if not _applies(statement, request):
            continue
        sid = statement.get("Sid") or "(no Sid)"
        if statement.get("Effect") == "Deny":
            return Decision(False, sid)
        allowed_by = allowed_by or sid
    return Decision(allowed_by is not None, allowed_by)


# ------------------------------------------------------------------ the template's policies
def function_statements(t: SamTemplate, logical_id: str) -> list[dict[str, Any]]:
    """A function's policy statements as the template gives them (inline, SAM policy templates), resolved."""
    props = t.doc["Resources"][logical_id].get("Properties", {})
    policies = props.get("Policies", [])
    statements: list[dict[str, Any]] = []
    # SAM grants the role what an on-failure destination needs (the Lambda service sends it)
    destination = ((props.get("EventInvokeConfig") or {}).get("DestinationConfig") or {}).get(
        "OnFailure"
    ) or {}
    if destination.get("Type") == "SQS":
        statements.append(
            {"Action": "sqs:SendMessage", "Effect": "Allow", "Resource": destination["Destination"]}
        )
    for policy in _listed(policies):
        if isinstance(policy, str):
            raise ValueError(f"{logical_id}: managed policy {policy} is not modelled by tryon.local.iam")
        if "Statement" in policy:
            statements += _listed(policy["Statement"])
            continue
        for name, args in policy.items():
            if name not in POLICY_TEMPLATES:
                raise ValueError(
                    f"{logical_id}: SAM policy template {name} is not in tryon.local.iam.POLICY_TEMPLATES"
                )
            statements += POLICY_TEMPLATES[name](args)
    return [s for s in t.resolve(statements) if isinstance(s, dict)]


def template_policies(t: SamTemplate) -> dict[str, list[dict[str, Any]]]:
    """Logical id -> resolved statements, for every function of the template."""
    return {name: function_statements(t, name) for name in t.resources_of_type("AWS::Serverless::Function")}


# ------------------------------------------------------------------ enforcement
def _denied_response(url: str, call: Call, request: Request, head: bool) -> tuple[Any, dict[str, Any]]:
    from botocore.awsrequest import AWSResponse

    account = call.template.pseudo["AWS::AccountId"] if call.template else "123456789012"
    message = (
        f"User: arn:aws:sts::{account}:assumed-role/{call.function}Role/{call.function} is not authorized "
        f"to perform: {request.action} on resource: {request.resource} because no identity-based policy "
        f"allows the {request.action} action (local IAM, tryon.local.iam)"
    )
    code = "403" if head else "AccessDenied"
    parsed = {
        "Error": {"Code": code, "Message": "Forbidden" if head else message},
        "ResponseMetadata": {"HTTPStatusCode": 403, "HTTPHeaders": {}},
    }
    return AWSResponse(url, 403, {}, None), parsed


class Enforcer:
    """Authorises the calls the stack's functions make, on one boto3 session; see the module doc.

    ``function_of(name)`` gives the logical id of a function by its physical name (the
    ``AWS_LAMBDA_FUNCTION_NAME`` of the calling thread), or None for a caller that is no function.
    """

    def __init__(self, template: SamTemplate, function_of: Callable[[str], str | None]) -> None:
        self.template = template
        self.function_of = function_of
        self.policies = template_policies(template)
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._session: Any = None

    def _caller(self) -> str | None:
        name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        return self.function_of(name) if name else None

    def install(self, session: Any) -> None:
        """Hook into a boto3 session: clients made from it afterwards are authorised."""
        self._session = session
        events = session.events
        events.register("before-parameter-build", self._before_parameter_build, unique_id="tryon-iam-params")
        events.register("before-call", self._before_call, unique_id="tryon-iam-call")
        events.register("after-call", self._after_call, unique_id="tryon-iam-after")

    def uninstall(self) -> None:
        if self._session is None:
            return
        events = self._session.events
        events.unregister("before-parameter-build", unique_id="tryon-iam-params")
        events.unregister("before-call", unique_id="tryon-iam-call")
        events.unregister("after-call", unique_id="tryon-iam-after")
        self._session = None

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)
        for listener in list(LISTENERS):
            listener(call)

    def _before_parameter_build(self, params: Mapping[str, Any], model: Any, context: dict, **_: Any) -> None:
        function = self._caller()
        if function is None:
            return
        service = model.service_model.service_name
        pseudo = self.template.pseudo
        region = context.get("client_region") or pseudo["AWS::Region"]
        requests = requests_for(
            service,
            model.name,
            params,
            partition=pseudo["AWS::Partition"],
            region=region,
            account=pseudo["AWS::AccountId"],
        )
        statements = self.policies.get(function, [])
        call = Call(function, service, model.name, requests, template=self.template)
        call.decisions = [evaluate(statements, r) for r in requests or []]
        context["tryon_iam_call"] = call
        context["tryon_iam_params"] = {"Bucket": params.get("Bucket"), "Key": params.get("Key")}
        self._record(call)

    def _before_call(self, params: Mapping[str, Any], model: Any, context: dict, **_: Any) -> Any:
        call: Call | None = context.get("tryon_iam_call")
        if call is None or call.requests is None:
            return None  # an unmapped call is reported by the permission check, not refused here
        for request, decision in zip(call.requests, call.decisions, strict=True):
            if not decision.allowed:
                return _denied_response(params.get("url", ""), call, request, model.name == "HeadObject")
        return None

    def _after_call(self, parsed: dict, model: Any, context: dict, **_: Any) -> None:
        call: Call | None = context.get("tryon_iam_call")
        if call is None or call.service != "s3" or model.name not in ("GetObject", "HeadObject"):
            return
        if str(parsed.get("Error", {}).get("Code", "")) not in MISSING_KEY_CODES:
            return
        target = context.get("tryon_iam_params") or {}
        request = missing_object_request(
            str(target.get("Bucket")),
            str(target.get("Key")),
            partition=self.template.pseudo["AWS::Partition"],
        )
        decision = evaluate(self.policies.get(call.function, []), request)
        listing = Call(call.function, "s3", model.name, [request], [decision], template=self.template)
        self._record(listing)
        if not decision.allowed:  # S3's answer to a caller that may not list the prefix
            head = model.name == "HeadObject"
            parsed["Error"] = {
                "Code": "403" if head else "AccessDenied",
                "Message": "Forbidden" if head else "Access Denied",
            }
            parsed.setdefault("ResponseMetadata", {})["HTTPStatusCode"] = 403
