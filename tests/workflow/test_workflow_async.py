"""Asynchronous endpoints end to end on moto: InvokeEndpointAsync to the local server, its SNS
notification to CompleteAsync, the task token back to the waiting state, with the real handlers."""

from __future__ import annotations

import io
import json
import time

import pytest
from PIL import Image
from support.workflow import (
    ASYNC_FAST,
    DEADLINE_S,
    MIXED_MODES,
    all_models,
    check_permanent_model_error,
    upload,
)

from tryon.local import LocalWorkflow
from tryon.workflow import async_completion, async_tokens
from tryon.workflow.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wf(tiny_models, one_torch_thread):
    with LocalWorkflow(all_models(tiny_models), parameters=ASYNC_FAST, modes=MIXED_MODES) as stack:
        yield stack


def test_mixed_modes_run_end_to_end_with_the_same_results(wf):
    topic, drain = wf.template.resources["AsyncSuccessTopic"]["Ref"], wf.subscribe_topic("AsyncSuccessTopic")
    key = upload(wf, "mixed.png", metadata={"num-images": "2", "upscale": "true"})
    result = wf.wait(wf.start_from_s3_event(key), timeout=DEADLINE_S)
    assert result.succeeded, (result.error, result.cause)
    states = result.states()
    assert "Segment" in states and "SegmentAsync" not in states  # serverless: InvokeEndpoint
    assert {"InpaintAsync", "UpscaleAsync"} <= set(states) and "Inpaint" not in states
    manifest = wf.read_json(result.output["manifest"])
    assert manifest["status"] == "succeeded" and len(manifest["outputs"]["inpainted"]) == 2
    for uri in manifest["outputs"]["upscaled"]:
        assert Image.open(io.BytesIO(wf.read_bytes(uri))).size == (4 * 48, 4 * 64)
    assert len(manifest["seeds"]) == 2
    # one request per inpainting call and per upscaled image went through S3 and SNS
    requests = wf.list_keys(wf.template.parameters["AsyncPrefix"] + "requests/")
    assert len(requests) == 3
    notes = drain()
    assert len(notes) == 3 and {n["invocationStatus"] for n in notes} == {"Completed"}
    # the task records are gone once their task finished
    assert wf.client("dynamodb").scan(TableName=wf.token_table)["Count"] == 0

    # a duplicate (or late) notification for the finished task changes nothing
    before = len(wf.invocations)
    for note in notes:
        wf.client("sns").publish(TopicArn=topic, Message=json.dumps(note))
    calls = wf.invocations[before:]
    assert [name for name, _, errored in calls] == ["CompleteAsyncFunction"] * 3
    assert not any(errored for _, _, errored in calls)
    assert (
        wf.client("stepfunctions").describe_execution(executionArn=result.execution_arn)["status"]
        == "SUCCEEDED"
    )


def test_endpoint_error_notification_becomes_the_failure_record(wf):
    calls = check_permanent_model_error(wf, "SubmitAsyncFunction")
    assert "CompleteAsyncFunction" in calls  # the error notification completed the task


def test_the_token_table_expires_records_and_ignores_expired_ones(wf):
    ttl = wf.client("dynamodb").describe_time_to_live(TableName=wf.token_table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": async_tokens.TTL_ATTRIBUTE}
    env = {"TRYON_TOKEN_TABLE": wf.token_table, "TRYON_OUTPUT_BUCKET": wf.output_bucket}
    settings = Settings.from_env(env)
    async_tokens.put(wf.token_table, "t-old", token="tok", step="inpaint", state={}, parts=1, timeout_s=1)
    table = wf.client("dynamodb")
    table.update_item(
        TableName=wf.token_table,
        Key={"task_id": {"S": "t-old"}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )
    outcome = async_completion.handle(settings, {"inferenceId": "t-old.0", "invocationStatus": "Completed"})
    assert outcome["outcome"] == "ignored"
    item = table.get_item(TableName=wf.token_table, Key={"task_id": {"S": "t-old"}})["Item"]
    assert int(item["expires_at"]["N"]) < time.time()  # left for DynamoDB's TTL to delete
