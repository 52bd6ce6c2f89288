"""CompleteAsync on moto (DynamoDB, S3), callbacks recorded: idempotent completion, and what it ignores.

Issue 17 items 6 and 7: a completion that died between recording the last answer and calling
back calls back when it is retried; an unknown request index and malformed SNS messages are
ignored with one log line, never raise and never change a record.
"""

from __future__ import annotations

import json
import logging

import boto3
import pytest

from tryon.workflow import async_completion, async_tokens
from tryon.workflow.settings import Settings

TABLE, OUT = "tokens", "out-bucket"
PREFIX = "results/photo/job-1/"
PENDING = "pending/job-1/"  # the endpoints write here; Finalize publishes to PREFIX
JOB = {
    "job_id": "job-1",
    "endpoints": {"clipseg": "tryon-clipseg", "sd_inpaint": "tryon-sd-inpaint", "sd_upscale": None},
    "output": {"bucket": OUT, "prefix": PREFIX, "pending_prefix": PENDING},
    "params": {"min_coverage": 0.001},
    # a job that is no outfit: one garment whose mask CLIPSeg makes (what Prepare plans)
    "garments": [{"name": "", "segment": {"role": "garment"}, "params": {"min_coverage": 0.001}}],
    "compose_masks": False,
}


@pytest.fixture
def stack(moto_s3):
    s3 = moto_s3(OUT, env={"TRYON_TOKEN_TABLE": TABLE, "TRYON_OUTPUT_BUCKET": OUT})
    ddb = boto3.client("dynamodb")
    ddb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": async_tokens.KEY, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": async_tokens.KEY, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    answer = {"outputs": [{"key": PENDING + "mask.png"}], "coverage": 0.5, "model": "tiny"}
    s3.put_object(Bucket=OUT, Key="async/outputs/a.out", Body=json.dumps(answer).encode())
    async_tokens.put(
        TABLE, "job-1-segment-t1", token="tok-1", step="segment", state={"job": JOB}, parts=1, timeout_s=60
    )
    return s3, ddb


@pytest.fixture
def callbacks(monkeypatch):
    """Every Step Functions callback CompleteAsync makes, as (action, kwargs); none reaches moto."""
    calls: list[tuple[str, dict]] = []

    def send(action, **kwargs):
        calls.append((action, kwargs))
        return True

    monkeypatch.setattr(async_completion, "_send", send)
    return calls


def note(inference_id: str = "job-1-segment-t1.0", status: str = "Completed") -> dict:
    return {
        "inferenceId": inference_id,
        "invocationStatus": status,
        "requestParameters": {"endpointName": "tryon-clipseg"},
        "responseParameters": {"outputLocation": f"s3://{OUT}/async/outputs/a.out"},
    }


def sns(*messages: str) -> dict:
    return {"Records": [{"Sns": {"Message": m}} for m in messages]}


def items(ddb) -> list[dict]:
    return ddb.scan(TableName=TABLE)["Items"]


def test_a_completion_that_died_before_calling_back_calls_back_when_retried(stack, callbacks, monkeypatch):
    _, ddb = stack
    settings = Settings.from_env()

    def die(action, **kwargs):
        raise RuntimeError("the function timed out before SendTaskSuccess")

    monkeypatch.setattr(async_completion, "_send", die)
    with pytest.raises(RuntimeError):
        async_completion.handle(settings, note())
    assert items(ddb)[0]["results"]  # the answer was recorded before it died
    monkeypatch.setattr(
        async_completion, "_send", lambda action, **kw: callbacks.append((action, kw)) or True
    )

    outcome = async_completion.handle(settings, note())  # Lambda's retry of the same notification
    assert outcome["outcome"] == "succeeded", outcome
    [(action, kwargs)] = callbacks
    assert action == "send_task_success" and kwargs["taskToken"] == "tok-1"
    assert json.loads(kwargs["output"])["mask_key"] == PENDING + "mask.png"
    assert items(ddb) == []  # finished: the record is gone


def test_an_index_the_task_never_issued_is_ignored_and_changes_nothing(stack, callbacks):
    _, ddb = stack
    before = items(ddb)
    outcome = async_completion.handle(Settings.from_env(), note("job-1-segment-t1.7"))
    assert outcome["outcome"] == "ignored" and "request 7 was never issued" in outcome["detail"]
    assert callbacks == [] and items(ddb) == before
    # the record still completes with the real answer
    assert async_completion.handle(Settings.from_env(), note())["outcome"] == "succeeded"


def test_the_store_refuses_an_index_the_task_never_issued(stack):
    assert async_tokens.add_result(TABLE, "job-1-segment-t1", 3, {"x": 1}) is None


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (sns("not json at all"), "the SNS message is not JSON"),
        (sns("[1, 2]"), "a JSON list, not an object"),
        (sns("{}"), "has no inferenceId"),
        (sns(json.dumps({"inferenceId": 42})), "has no inferenceId"),
        (sns(json.dumps({"inferenceId": "someone-elses"})), "not an inference id of ours"),
        (sns(json.dumps({"inferenceId": "job-1-segment-t1.0"})), "invocationStatus None"),
        (sns(json.dumps({"inferenceId": "job-1-segment-t1.0", "invocationStatus": "Done"})), "'Done'"),
        ({"Records": [{"no": "sns"}]}, "carries no SNS message"),
        ({"Records": [{"Sns": {"Message": 7}}]}, "carries no SNS message"),
    ],
)
def test_malformed_notifications_are_ignored_with_the_reason(stack, callbacks, event, reason, caplog):
    _, ddb = stack
    before = items(ddb)
    with caplog.at_level(logging.INFO):
        [outcome] = async_completion.complete(event)["outcomes"]
    assert outcome["outcome"] == "ignored" and reason in outcome["detail"]
    assert callbacks == [] and items(ddb) == before
    [line] = [r for r in caplog.records if r.getMessage() == "asynchronous notification ignored"]
    assert reason in line.reason  # one log line, saying why


def test_an_event_that_is_no_sns_event_is_ignored(stack, callbacks):
    assert async_completion.complete({"Records": "nope"}) == {"outcomes": []}
    assert async_completion.complete({}) == {"outcomes": []}
