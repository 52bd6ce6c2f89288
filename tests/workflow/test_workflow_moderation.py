"""Content moderation on the local stack: template.yaml, the real ASL and handlers, the tiny
checkpoints, and the Rekognition stand-in the harness serves (tryon.local.moderation_standin),
reached by the Moderate function's unmodified boto3 client.

The stand-in's classifier refuses a photo that is mostly skin-coloured; ``flag_when`` makes
it refuse a result (the tiny models paint noise). The same refusal and quarantine code runs
on AWS with Amazon Rekognition.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from PIL import Image

from tryon.core import content_policy
from tryon.local import LocalWorkflow
from tryon.local.batch_runner import LocalBatches, distributed_map_engine
from tryon.local.moderation_standin import pixel_digest
from tryon.local.samples import sample_photo
from tryon.workflow import batch_manifest, clients

pytestmark = pytest.mark.slow

FAST = {"DefaultSteps": 1, "DefaultThreshold": 0.0, "DefaultNegativeQueries": ""}
SKIN = (224, 172, 105)
DEADLINE = 180


def solid(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def digest_of(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as img:
        return pixel_digest(img)


@pytest.fixture(scope="module")
def stack(tiny_models, one_torch_thread):
    models = {"clipseg": tiny_models["clipseg"], "sd_inpaint": tiny_models["sd-inpaint"]}
    with (
        distributed_map_engine(),
        LocalWorkflow(models, parameters=FAST, upscale=False, stack_name="tryon-moderation") as wf,
    ):
        yield wf, LocalBatches(wf)


@pytest.fixture
def wf(stack):
    workflow, _ = stack
    workflow.moderation.clear()
    yield workflow
    workflow.moderation.clear()


def subscribe_notices(wf):
    """The failure topic's notifications (SNS envelopes: Subject, Message) as a queue's drain."""
    sqs = wf.client("sqs")
    url = sqs.create_queue(QueueName=f"notices-{len(wf.invocations)}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = wf.template.resources["NotificationTopic"]["Ref"]
    wf.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)

    def drain() -> list[dict]:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]

    return drain


def functions_called(wf, since: int) -> list[str]:
    return [name for name, _, _ in wf.invocations[since:]]


def refusal_record(wf, result) -> dict:
    """The refused execution ended as an outcome (not a failure), with its failure record."""
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert result.states()[-3:] == ["RecordFailure", "RefusedOrFailed", "Refused"]
    record = wf.failure_record(result.execution_arn)
    assert record is not None
    assert result.output == {
        "status": "refused",
        "job_id": record["job_id"],
        "step": record["step"],
        "error": "ContentRefused",
        "cause": f"{record['step']}: {record['cause']}",
        "failure": result.output["failure"],
    }
    assert record["status"] == "refused" and record["error"] == "ContentRefused"
    assert record["policy_version"] == content_policy.POLICY_VERSION
    return record


def test_an_unsafe_photo_is_refused_before_any_model_runs(wf):
    key = wf.upload(solid((96, 128), SKIN), "inputs/unsafe/photo.png")["key"]
    events, notices = wf.subscribe_job_events(), subscribe_notices(wf)
    before = len(wf.invocations)
    result = wf.run(key=key, timeout=DEADLINE)
    record = refusal_record(wf, result)
    assert result.states() == [
        "Receive", "Prepare", "AlreadyComplete", "ModerateInputs",
        "RecordFailure", "RefusedOrFailed", "Refused",
    ]  # fmt: skip
    assert functions_called(wf, before) == ["PrepareFunction", "ModerateFunction", "RecordFailureFunction"]
    assert (record["step"], record["stage"], record["field"]) == ("moderate-inputs", "input", "image")
    names = {c["name"]: c["confidence"] for c in record["categories"]}
    assert {"Explicit", "Explicit Nudity", "Non-Explicit Nudity"} <= set(names)
    assert all(confidence >= 99 for confidence in names.values())
    assert record["quarantine"] == []  # an input is the user's own object: never moved, never modified
    assert record["moderation"]["categories"] == list(content_policy.DEFAULT_CATEGORIES)
    assert "Bytes" not in json.dumps(record) and len(json.dumps(record)) < 8000  # labels, never the image
    assert wf.list_keys("results/unsafe/") == [] and wf.list_keys(f"pending/{record['job_id']}/") == []
    [event] = events()
    assert event["detail-type"] == "Try-on Job Refused"
    assert event["detail"]["stage"] == "input" and event["detail"]["categories"] == record["categories"]
    [notice] = notices()
    assert "refused by content moderation (input)" in notice["Subject"]
    assert "Explicit Nudity" in notice["Message"] and record["job_id"] in notice["Message"]
    [call] = wf.moderation.calls
    assert (call.width, call.height, call.format, call.min_confidence) == (96, 128, "PNG", 50.0)


def test_a_prompt_on_the_deny_list_is_refused_naming_the_field(wf):
    key = wf.upload(sample_photo((96, 128)), "inputs/prompted/photo.png")["key"]
    before = len(wf.invocations)
    result = wf.run({"image": f"s3://{wf.input_bucket}/{key}", "prompt": "a n u d e woman"}, timeout=DEADLINE)
    record = refusal_record(wf, result)
    assert result.states() == ["Receive", "Prepare", "RecordFailure", "RefusedOrFailed", "Refused"]
    assert functions_called(wf, before) == ["PrepareFunction", "RecordFailureFunction"]
    assert (record["step"], record["stage"], record["field"]) == ("prepare", "prompt", "prompt")
    assert record["cause"].startswith("prompt: 'nude' asks for nudity") and record["categories"] == []
    # a negative prompt set as object metadata, and a mask query aimed at skin
    for metadata, field in (
        ({"negative-prompt": "clothes, blurry"}, "negative_prompt"),
        ({"query": "skin"}, "query"),
    ):
        key = wf.upload(sample_photo((96, 128)), f"inputs/prompted/{field}.png", metadata=metadata)["key"]
        record = refusal_record(wf, wf.run(key=key, timeout=DEADLINE))
        assert record["field"] == field and record["cause"].startswith(f"{field}: ")
    assert wf.moderation.calls == []  # refused before any image was sent anywhere


def test_an_unsafe_result_is_quarantined_and_nothing_is_published(wf):
    photo = sample_photo((112, 144))
    photo_digest = digest_of(photo)
    wf.moderation.flag_when(
        lambda img: img.size == (112, 144) and pixel_digest(img) != photo_digest,
        {"Exposed Female Nipple": 93.4},
    )
    key = wf.upload(photo, "inputs/painted/photo.png")["key"]
    notices = subscribe_notices(wf)
    result = wf.run({"image": f"s3://{wf.input_bucket}/{key}", "seed": 11}, timeout=DEADLINE)
    record = refusal_record(wf, result)
    assert result.states()[-6:] == [
        "Inpaint", "UpscaleRequested", "ModerateResults", "RecordFailure", "RefusedOrFailed", "Refused",
    ]  # fmt: skip
    job_id = record["job_id"]
    assert (record["step"], record["stage"], record["field"]) == (
        "moderate-results",
        "output",
        "inpainted-0.png",
    )
    assert [(c["name"], c["confidence"]) for c in record["categories"]] == [
        ("Exposed Female Nipple", 93.4),
        ("Explicit Nudity", 93.4),
        ("Explicit", 93.4),
    ]
    quarantined = f"quarantine/{job_id}/inpainted-0.png"
    assert record["quarantine"] == [f"s3://{wf.output_bucket}/{quarantined}"]
    # nothing under the results, nothing left pending; the refused image only in quarantine
    assert wf.list_keys("results/painted/") == [] and wf.list_keys(f"pending/{job_id}/") == []
    assert wf.list_keys(f"quarantine/{job_id}/") == [quarantined]
    quarantined_image = Image.open(io.BytesIO(wf.read_bytes(quarantined)))
    assert quarantined_image.size == (112, 144) and pixel_digest(quarantined_image) != photo_digest
    [notice] = notices()
    assert f"s3://{wf.output_bucket}/{quarantined}" in notice["Message"] and "Explicit" in notice["Message"]
    assert [c.rule for c in wf.moderation.calls] == [False, True]  # the photo passed, the result did not


def test_a_safe_job_is_published_and_its_manifest_records_the_policy(wf):
    key = wf.upload(sample_photo((96, 128)), "inputs/safe/photo.png")["key"]
    result = wf.run({"image": f"s3://{wf.input_bucket}/{key}", "seed": 7, "num_images": 2}, timeout=DEADLINE)
    assert result.succeeded and result.output["status"] == "succeeded", (result.error, result.cause)
    assert "ModerateInputs" in result.states() and "ModerateResults" in result.states()
    manifest = wf.read_json(result.output["manifest"])
    moderation = manifest["moderation"]
    assert moderation["enabled"] is True and moderation["policy_version"] == content_policy.POLICY_VERSION
    assert moderation["categories"] == list(content_policy.DEFAULT_CATEGORIES)
    assert moderation["min_confidence"] == 50.0 and moderation["off_reason"] == ""
    assert moderation["model_version"] == "local-stand-in-1" and moderation["calls"] == 3
    assert [c["field"] for c in moderation["results"]] == ["inpainted-0.png", "inpainted-1.png"]
    assert all(c["blocked"] == [] for c in moderation["inputs"] + moderation["results"])
    prefix = f"results/safe/photo/{manifest['job_id']}/"
    assert sorted(wf.list_keys(prefix)) == sorted(
        prefix + name
        for name in ("mask.png", "inpainted-0.png", "inpainted-1.png", "preview.jpg", "manifest.json")
    )
    assert wf.list_keys(f"pending/{manifest['job_id']}/") == []


def test_a_batch_counts_refused_rows_apart_and_its_contact_sheet_shows_none(stack):
    wf, batches = stack
    wf.moderation.clear()
    unsafe_result_photo = sample_photo((120, 136))
    photo_digest = digest_of(unsafe_result_photo)
    wf.moderation.flag_when(
        lambda img: img.size == (120, 136) and pixel_digest(img) != photo_digest, {"Graphic Violence": 88.0}
    )
    for name, data in {
        "batch/safe.png": sample_photo((96, 128)),
        "batch/painted.png": unsafe_result_photo,
        "batch/skin.png": solid((96, 128), SKIN),
    }.items():
        wf.upload(data, f"inputs/{name}")
    rows = [
        {"image": "batch/safe.png", "seed": "1"},
        {"image": "batch/safe.png", "seed": "2", "prompt": "a topless model"},  # the prompt policy
        {"image": "batch/painted.png", "seed": "3"},  # its result is refused
        {"image": "batch/skin.png", "seed": "4"},  # its photo is refused
    ]
    read_keys: list[str] = []
    s3 = clients.client("s3")  # the functions' own client: see what SummarizeBatch reads
    s3.meta.events.register(
        "before-parameter-build.s3.GetObject", lambda params, **_: read_keys.append(params.get("Key", ""))
    )
    key = batches.upload_manifest(batch_manifest.write_manifest(rows, "csv"), "moderated.csv")["key"]
    outcome = batches.wait(batches.start({"batch": f"s3://{wf.input_bucket}/{key}"}), timeout=600)
    assert outcome.result.status == "SUCCEEDED", outcome.result.cause
    report = outcome.report
    assert report["status"] == "completed-with-refusals"
    assert [r["status"] for r in report["rows"]] == ["succeeded", "refused", "refused", "refused"]
    assert report["counts"] == {"rows": 4, "succeeded": 1, "refused": 3}  # refused apart from failed
    safe, prompted, painted, skin = report["rows"]
    assert safe["preview"] and len(safe["results"]) == 1 and safe["error"] is None
    assert prompted["cause"].startswith("prompt: prompt: 'topless' asks for nudity")
    assert painted["cause"].startswith("output: inpainted-0.png: the result shows Graphic Violence 88%")
    assert (
        "Graphic Violence 88.0%" in painted["cause"]
        and f"policy {content_policy.POLICY_VERSION}" in painted["cause"]
    )
    assert skin["cause"].startswith("input: image: the photo")
    for row in (prompted, painted, skin):
        assert row["error"] == "ContentRefused" and row["preview"] is None and row["results"] == []
    # the contact sheet: built from the previews, a placeholder for each refused row, and nothing
    # read from the quarantine (where the refused result is, for the operators only)
    assert report["contact_sheets"] and any(k.endswith("/preview.jpg") for k in read_keys)
    assert not [k for k in read_keys if k.startswith("quarantine/")] and wf.list_keys("quarantine/")
    report_csv = outcome.summary["report"].replace("report.json", "report.csv")
    table = list(csv.DictReader(io.StringIO(wf.read_bytes(report_csv).decode())))
    assert [r["status"] for r in table] == ["succeeded", "refused", "refused", "refused"]
    assert all(r["error"] == "ContentRefused" and not r["preview"] for r in table[1:])
