"""CompleteAsync: an asynchronous endpoint's SNS notification -> the waiting task succeeds or fails (light).

SageMaker publishes one message per request to the endpoint's success or error topic:
``inferenceId``, ``invocationStatus`` (``Completed`` / ``Failed``), ``requestParameters``
(``endpointName``, ``inputLocation``), ``responseParameters`` (``outputLocation``) and, on
failure, ``failureReason``. The inference id leads to the task (:mod:`tryon.workflow.async_tokens`).

- An answer is read from its output location and recorded; when every request of the task
  has its answer, the step's result is built exactly as the real-time path builds it
  (:data:`tryon.workflow.steps.STEP_CALLS`) and sent with ``SendTaskSuccess``; before that,
  each answer renews the task's heartbeat.
- An error becomes ``SendTaskFailure`` with the error name the real-time path would raise
  (:func:`tryon.workflow.endpoints.classify_model_error`): the state machine retries the
  transient ones and records the others, with the endpoint's message.
- A notification for a task that is finished, timed out or unknown (a duplicate, a late
  answer) changes nothing.
- Completion is idempotent: a notification whose answer is already recorded (SNS redelivered
  it, or Lambda retries an invocation that died before it called back) calls back again from
  the record, so a completion is never lost between recording the answer and ``SendTaskSuccess``.
- What is not a notification of ours is ignored with one log line that says why, and never
  raises or changes a record: a message that is not JSON or not an object, one without an
  ``inferenceId`` of the project's form or a known ``invocationStatus``, one whose request
  index the task never issued.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any, TypedDict

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes.sns_event import SNSEventRecord
from botocore.exceptions import ClientError

from tryon.core.errors import RequestError
from tryon.core.s3uri import parse_versioned_s3_uri
from tryon.workflow import async_tokens, clients, endpoints, storage
from tryon.workflow.settings import Settings
from tryon.workflow.step_errors import EndpointTimeout, EndpointUnavailable, WorkflowError
from tryon.workflow.steps import STEP_CALLS

#: Largest endpoint answer read back (the answers are small JSON: keys, seeds, timings).
MAX_ANSWER_BYTES = 1024 * 1024
#: Largest part of an error object read for the failure message.
MAX_ERROR_BYTES = 64 * 1024
#: Step Functions caps SendTaskFailure's ``cause`` at 32,768 characters.
MAX_CAUSE_CHARS = 32_768
#: What Step Functions answers when the token's task is over (finished, timed out, unknown).
TASK_OVER = {"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"}
_STATUS = re.compile(r"\((\d{3})\)")
#: ``invocationStatus`` of SageMaker's success and error notifications.
STATUSES = ("Completed", "Failed")

NO_TASK = "no waiting task (finished, timed out, expired or never submitted)"

logger = Logger(child=True)


class Outcome(TypedDict):
    """What became of one notification (logged; the function's answer lists them)."""

    inference_id: str
    outcome: str  # succeeded | failed | waiting | ignored
    detail: str


def _send(action: str, **kwargs: Any) -> bool:
    """Call a Step Functions callback API; False when the task is already over."""
    try:
        getattr(clients.client("stepfunctions"), action)(**kwargs)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in TASK_OVER:
            return False
        raise
    return True


def _read_error_detail(message: Mapping[str, Any]) -> str:
    """The endpoint's own error message: the error object's ``message``/``error``, else its text."""
    location = (message.get("responseParameters") or {}).get("failureLocation")
    if not location:
        return ""
    try:
        bucket, key, _ = parse_versioned_s3_uri(location, field="failureLocation")
        data = storage.get_bytes(bucket, key, max_bytes=MAX_ERROR_BYTES, field="failureLocation")
    except RequestError:
        return ""
    text = data.decode("utf-8", "replace").strip()
    try:
        body = json.loads(text)
    except ValueError:
        return text
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or text)
    return text


def classify_failure(endpoint: str, message: Mapping[str, Any]) -> WorkflowError:
    """An error notification as the workflow error the real-time path would raise for it."""
    reason = str(message.get("failureReason") or "the endpoint reported a failure without a reason")
    detail = _read_error_detail(message) or reason
    status = _STATUS.search(reason)
    if status:
        return endpoints.classify_model_error(endpoint, int(status.group(1)), detail)
    if "timed out" in reason.lower() or "timeout" in reason.lower():
        return EndpointTimeout(
            f"endpoint {endpoint} ran past its InvocationTimeoutSeconds (template parameter "
            f"AsyncInvocationTimeoutSeconds, at most 3600 s): {reason}"
        )
    return EndpointUnavailable(f"endpoint {endpoint} failed: {detail}")


def _answer(endpoint: str, message: Mapping[str, Any]) -> dict[str, Any]:
    location = (message.get("responseParameters") or {}).get("outputLocation")
    if not location:
        raise EndpointUnavailable(f"endpoint {endpoint}: the success notification names no outputLocation")
    try:
        bucket, key, _ = parse_versioned_s3_uri(location, field="outputLocation")
        data = storage.get_bytes(bucket, key, max_bytes=MAX_ANSWER_BYTES, field="outputLocation")
    except RequestError as exc:
        raise EndpointUnavailable(f"endpoint {endpoint}: its answer could not be read: {exc}") from exc
    return endpoints.decode_answer(endpoint, data)


def _fail(table: str, task: async_tokens.PendingTask, exc: WorkflowError, inference_id: str) -> Outcome:
    sent = _send(
        "send_task_failure",
        taskToken=task.token,
        error=type(exc).__name__,
        cause=str(exc)[:MAX_CAUSE_CHARS],
    )
    async_tokens.delete(table, task.task_id)
    return {
        "inference_id": inference_id,
        "outcome": "failed" if sent else "ignored",
        "detail": f"{type(exc).__name__}: {exc}" if sent else "the task was already over",
    }


def _ignored(inference_id: str, why: str) -> Outcome:
    """A notification that changes nothing, with the one log line that says why."""
    logger.info("asynchronous notification ignored", extra={"inference_id": inference_id, "reason": why})
    return {"inference_id": inference_id, "outcome": "ignored", "detail": why}


def handle(settings: Settings, message: Any) -> Outcome:
    """Act on one notification from an asynchronous endpoint (never raises for a bad message)."""
    if not isinstance(message, Mapping):
        return _ignored("", f"the notification is a JSON {type(message).__name__}, not an object")
    inference_id = message.get("inferenceId")
    if not isinstance(inference_id, str) or not inference_id:
        return _ignored("", "the notification has no inferenceId")
    parsed = async_tokens.parse_inference_id(inference_id)
    if parsed is None:
        return _ignored(inference_id, "not an inference id of ours")
    status = message.get("invocationStatus")
    if status not in STATUSES:
        return _ignored(inference_id, f"invocationStatus {status!r} is neither {' nor '.join(STATUSES)}")
    task_id, index = parsed
    table = settings.token_table
    endpoint = str((message.get("requestParameters") or {}).get("endpointName") or "")
    task = async_tokens.get(table, task_id)
    if task is None:
        return _ignored(inference_id, NO_TASK)
    if index >= task.parts:
        return _ignored(inference_id, f"request {index} was never issued (the task sent {task.parts})")
    if status != "Completed":
        return _fail(table, task, classify_failure(endpoint, message), inference_id)
    try:
        answer = _answer(endpoint, message)
    except WorkflowError as exc:
        return _fail(table, task, exc, inference_id)
    task = async_tokens.add_result(table, task_id, index, answer)
    if task is None:
        return _ignored(inference_id, NO_TASK)
    if not task.complete:
        sent = _send("send_task_heartbeat", taskToken=task.token)
        detail = f"{len(task.results)} of {task.parts} answers"
        return {"inference_id": inference_id, "outcome": "waiting" if sent else "ignored", "detail": detail}
    elapsed_ms = round((time.time() - task.submitted_at) * 1000.0, 1)
    try:
        result = STEP_CALLS[task.step].result(task.state, task.ordered_results(), elapsed_ms)
    except WorkflowError as exc:
        return _fail(table, task, exc, inference_id)
    sent = _send("send_task_success", taskToken=task.token, output=json.dumps(result))
    async_tokens.delete(table, task_id)
    detail = f"{task.step} done" if sent else "the task was already over"
    return {"inference_id": inference_id, "outcome": "succeeded" if sent else "ignored", "detail": detail}


def _message(record: Any) -> tuple[Any, str | None]:
    """The decoded message of one SNS record (Powertools' record class), or why there is none."""
    try:
        text = SNSEventRecord(dict(record)).sns.message
    except (KeyError, TypeError, ValueError, AttributeError):
        text = None
    if not isinstance(text, str):
        return None, "the record carries no SNS message"
    try:
        return json.loads(text), None
    except ValueError:
        return None, "the SNS message is not JSON"


def complete(event: Mapping[str, Any]) -> dict[str, list[Outcome]]:
    """The CompleteAsync function: each SNS record's message handled in turn."""
    settings = Settings.from_env()
    outcomes = []
    records = event.get("Records") if isinstance(event, Mapping) else None
    for record in records if isinstance(records, list) else []:
        message, why = _message(record)
        outcomes.append(_ignored("", why) if why else handle(settings, message))
    return {"outcomes": outcomes}
