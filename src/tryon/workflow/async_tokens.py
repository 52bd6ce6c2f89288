"""Task tokens of the asynchronous path, kept in DynamoDB until the endpoint's notification (light).

A task token can be 2,048 characters long, more than ``CustomAttributes`` (1,024) carries
through SageMaker, so the step keeps it here, keyed by a task id of its own; each request of
the task is sent with the inference id ``<task-id>.<index>`` and the completion function
finds the task from the inference id in the notification. The item holds what is needed to
turn the endpoints' answers into the step's result (the step's input state, the number of
requests) and collects the answers one by one. A DynamoDB TTL on :data:`TTL_ATTRIBUTE` deletes
forgotten items; until DynamoDB gets to it, an item past its time counts as gone.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from tryon.workflow import clients

#: The table's partition key (a string) and its TTL attribute (epoch seconds).
KEY = "task_id"
TTL_ATTRIBUTE = "expires_at"
#: How long an item outlives the task's own time-out (DynamoDB deletes expired items within days).
KEEP_SECONDS = 24 * 3600


@dataclass(frozen=True)
class PendingTask:
    """One asynchronous step waiting for its endpoint: the token and the answers so far."""

    task_id: str
    token: str
    step: str
    state: dict[str, Any]
    parts: int
    submitted_at: float
    results: dict[int, dict[str, Any]]

    @property
    def complete(self) -> bool:
        """Every request of the task has its answer."""
        return len(self.results) >= self.parts

    def ordered_results(self) -> list[dict[str, Any]]:
        """The answers in request order."""
        return [self.results[i] for i in range(self.parts)]


def new_task_id(job_id: str, step: str) -> str:
    """A task id unique to this attempt (a retried step gets a new token and a new id)."""
    return f"{job_id[:16]}-{step}-{uuid.uuid4().hex[:16]}"


def inference_id(task_id: str, index: int) -> str:
    """The inference id of the task's ``index``-th request (SageMaker allows 64 characters)."""
    return f"{task_id}.{index}"


def parse_inference_id(value: str) -> tuple[str, int] | None:
    """(task id, index) of an inference id made by :func:`inference_id`, else None."""
    task_id, dot, index = value.rpartition(".")
    return (task_id, int(index)) if dot and task_id and index.isdigit() else None


def _table(name: str) -> Any:
    return clients.resource("dynamodb").Table(name)


def _from_item(item: dict[str, Any]) -> PendingTask:
    return PendingTask(
        task_id=item[KEY],
        token=item["token"],
        step=item["step"],
        state=json.loads(item["state"]),
        parts=int(item["parts"]),
        submitted_at=float(item["submitted_at"]),
        results={int(k): json.loads(v) for k, v in item.get("results", {}).items()},
    )


def put(table: str, task_id: str, *, token: str, step: str, state: Any, parts: int, timeout_s: int) -> None:
    """Store a new task (before any request is sent, so no notification can arrive first)."""
    now = time.time()
    _table(table).put_item(
        Item={
            KEY: task_id,
            "token": token,
            "step": step,
            "state": json.dumps(state),
            "parts": parts,
            "submitted_at": str(now),
            "results": {},
            TTL_ATTRIBUTE: int(now) + timeout_s + KEEP_SECONDS,
        },
        ConditionExpression="attribute_not_exists(#k)",
        ExpressionAttributeNames={"#k": KEY},
    )


def _live(item: dict[str, Any] | None) -> dict[str, Any] | None:
    if item is None or int(item.get(TTL_ATTRIBUTE, 0)) <= time.time():
        return None
    return item


def get(table: str, task_id: str) -> PendingTask | None:
    """The task, or None when it is unknown, finished or past its time to live."""
    item = _live(_table(table).get_item(Key={KEY: task_id}, ConsistentRead=True).get("Item"))
    return _from_item(item) if item else None


def add_result(table: str, task_id: str, index: int, result: dict[str, Any]) -> PendingTask | None:
    """Record the answer to one request and return the task; None if the task is gone.

    Idempotent: when that answer is already recorded (a redelivered notification, or a retry of
    a completion that died before it called back), the task is read again and returned as it is,
    so the caller can call back again. The update's condition also refuses an index the task
    never issued.
    """
    try:
        item = _table(table).update_item(
            Key={KEY: task_id},
            UpdateExpression="SET #r.#i = :v",
            ConditionExpression="attribute_exists(#k) AND attribute_not_exists(#r.#i) AND #p > :index",
            ExpressionAttributeNames={"#k": KEY, "#r": "results", "#i": str(index), "#p": "parts"},
            ExpressionAttributeValues={":v": json.dumps(result), ":index": index},
            ReturnValues="ALL_NEW",
        )["Attributes"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            task = get(table, task_id)
            return task if task is not None and index in task.results else None
        raise
    item = _live(item)
    return _from_item(item) if item else None


def delete(table: str, task_id: str) -> None:
    """Forget a finished task: later notifications for it are ignored."""
    _table(table).delete_item(Key={KEY: task_id})
