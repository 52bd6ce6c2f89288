"""InvokeEndpointAsync against the local server: input from S3, answer or error to S3, SNS notification."""

from __future__ import annotations

import io
import json
import time

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from PIL import Image

from tryon.core import imaging
from tryon.server import EndpointConfig, LocalEndpointServer
from tryon.server.async_api import AsyncOutput

BUCKET = "async-test"
PHOTO = Image.radial_gradient("L").resize((64, 48)).convert("RGB")


@pytest.fixture(scope="module")
def served(tiny_models, one_torch_thread):
    with mock_aws():
        s3, sns, sqs = (boto3.client(s, region_name="us-east-1") for s in ("s3", "sns", "sqs"))
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="in/photo.png", Body=imaging.encode_png(PHOTO))
        topics = {name: sns.create_topic(Name=name)["TopicArn"] for name in ("ok", "err")}
        url = sqs.create_queue(QueueName="notes")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for topic in topics.values():
            sns.subscribe(
                TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
            )
        output = AsyncOutput(f"s3://{BUCKET}/out/", f"s3://{BUCKET}/err/", topics["ok"], topics["err"])
        configs = [
            EndpointConfig("seg-async", "clipseg", str(tiny_models["clipseg"]), "async", async_output=output),
            EndpointConfig("seg-rt", "clipseg", str(tiny_models["clipseg"])),
        ]
        with LocalEndpointServer(configs) as server:
            runtime = boto3.client("sagemaker-runtime", endpoint_url=server.url, region_name="us-east-1")
            yield runtime, s3, sqs, url, topics


def _request(s3, key: str, body: dict) -> str:
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(body).encode())
    return f"s3://{BUCKET}/{key}"


def _notification(sqs, url: str, inference_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            body = json.loads(message["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            if body["inferenceId"] == inference_id:
                return body
        time.sleep(0.05)
    raise AssertionError(f"no notification for {inference_id}")


def test_answer_goes_to_s3_and_the_success_topic(served) -> None:
    runtime, s3, sqs, url, _ = served
    uri = _request(
        s3,
        "req/ok.json",
        {"image": f"s3://{BUCKET}/in/photo.png", "query": "a shirt", "output": f"s3://{BUCKET}/res/"},
    )
    answer = runtime.invoke_endpoint_async(
        EndpointName="seg-async", InputLocation=uri, InferenceId="job-1.0", ContentType="application/json"
    )
    assert answer["InferenceId"] == "job-1.0"
    assert answer["OutputLocation"] == f"s3://{BUCKET}/out/job-1.0.out"
    note = _notification(sqs, url, "job-1.0")
    assert note["invocationStatus"] == "Completed"
    assert note["requestParameters"] == {
        "contentType": "application/json",
        "endpointName": "seg-async",
        "inputLocation": uri,
    }
    assert note["responseParameters"]["outputLocation"] == answer["OutputLocation"]
    result = json.loads(s3.get_object(Bucket=BUCKET, Key="out/job-1.0.out")["Body"].read())
    [written] = result["outputs"]
    mask = s3.get_object(Bucket=BUCKET, Key=written["key"])["Body"].read()
    assert Image.open(io.BytesIO(mask)).size == PHOTO.size


def test_a_refused_request_goes_to_the_error_topic_with_the_field(served) -> None:
    runtime, s3, sqs, url, _ = served
    uri = _request(s3, "req/bad.json", {"image": f"s3://{BUCKET}/in/photo.png", "query": "x", "threshold": 5})
    answer = runtime.invoke_endpoint_async(EndpointName="seg-async", InputLocation=uri, InferenceId="job-2.0")
    note = _notification(sqs, url, "job-2.0")
    assert note["invocationStatus"] == "Failed"
    assert "(400)" in note["failureReason"] and "threshold" in note["failureReason"]
    assert note["responseParameters"]["failureLocation"] == answer["FailureLocation"]
    error = json.loads(s3.get_object(Bucket=BUCKET, Key="err/job-2.0-error.out")["Body"].read())
    assert "threshold" in error["message"] and error["status"] == 400
    assert not s3.list_objects_v2(Bucket=BUCKET, Prefix="out/job-2.0").get("KeyCount")


def test_a_missing_input_is_an_error_notification(served) -> None:
    runtime, _, sqs, url, _ = served
    runtime.invoke_endpoint_async(
        EndpointName="seg-async", InputLocation=f"s3://{BUCKET}/req/none.json", InferenceId="job-3.0"
    )
    assert _notification(sqs, url, "job-3.0")["invocationStatus"] == "Failed"


@pytest.mark.parametrize(
    ("endpoint", "extra", "named"),
    [
        ("seg-rt", {}, "not an asynchronous endpoint"),
        ("seg-async", {"InvocationTimeoutSeconds": 3601}, "InvocationTimeoutSeconds"),
        ("nope", {}, "not found"),
    ],
)
def test_invalid_calls_are_validation_errors(served, endpoint: str, extra: dict, named: str) -> None:
    runtime = served[0]
    with pytest.raises(ClientError) as info:
        runtime.invoke_endpoint_async(
            EndpointName=endpoint, InputLocation=f"s3://{BUCKET}/req/ok.json", **extra
        )
    assert info.value.response["Error"]["Code"] == "ValidationError"
    assert named in info.value.response["Error"]["Message"]


def test_serve_options_give_async_endpoints_their_output_and_topics() -> None:
    from tryon.cli.serve import apply_async_output

    configs = [EndpointConfig("a", "clipseg", "/m", "async"), EndpointConfig("r", "clipseg", "/m")]
    with pytest.raises(ValueError, match="--async-output: endpoint\\(s\\) a are async"):
        apply_async_output(configs, "", "", "", "")
    with pytest.raises(ValueError, match="--async-output"):
        apply_async_output(configs, "bucket/prefix/", "", "", "")
    served = apply_async_output(configs, "s3://b/out/", "", "arn:ok", "arn:err")
    assert served[0].async_output == AsyncOutput("s3://b/out/", "s3://b/out/", "arn:ok", "arn:err")
    assert served[1].async_output is None
