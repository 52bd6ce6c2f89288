"""The Moderate step (tryon.workflow.moderate) and the Rekognition stand-in, on moto S3 (no models).

The stand-in (tryon.local.moderation_standin) is reached over HTTP by the step's unmodified boto3
``rekognition`` client, as the local stack reaches it.
"""

from __future__ import annotations

import io
import json

import pytest
from botocore.stub import Stubber
from PIL import Image

from tryon.core import content_policy
from tryon.core.content_policy import ModerationConfig
from tryon.core.errors import RequestError
from tryon.local.moderation_standin import ModerationStandIn, StandInError, pixel_digest, skin_fraction
from tryon.workflow import clients, moderate, prepare
from tryon.workflow.step_errors import ContentRefused, ModerationFailed, ModerationUnavailable

IN, OUT = "in-bucket", "out-bucket"
SKIN = (224, 172, 105)
GREY = (128, 128, 128)


def encode(size=(96, 128), colour=GREY, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, fmt)
    return buf.getvalue()


def opened(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@pytest.fixture(scope="module")
def standin():
    with ModerationStandIn() as server:
        yield server


@pytest.fixture
def s3(moto_s3, standin):
    standin.clear()
    env = {
        "TRYON_INPUT_BUCKET": IN,
        "TRYON_OUTPUT_BUCKET": OUT,
        "TRYON_CLIPSEG_ENDPOINT": "seg",
        "TRYON_INPAINT_ENDPOINT": "inp",
        "TRYON_REKOGNITION_URL": standin.url,
    }
    return moto_s3(IN, OUT, versioned=(IN,), env=env)


def job_for(s3, photo: bytes, *, enabled=True, garment: bytes | None = None) -> dict:
    """A job as Prepare builds it (moderation settings recorded), for the photo uploaded as inputs/p.png."""
    s3.put_object(Bucket=IN, Key="inputs/p.png", Body=photo)
    console = {"image": f"s3://{IN}/inputs/p.png"}
    if garment is not None:
        put = s3.put_object(Bucket=IN, Key="garments/g.png", Body=garment)
        console["garment_image"] = f"s3://{IN}/garments/g.png?versionId={put['VersionId']}"
    job = prepare.prepare(console)["job"]
    if not enabled:
        job["moderation"] = ModerationConfig(enabled=False, off_reason="test").as_dict()
    return job


def refusal_of(exc: ContentRefused) -> tuple[str, dict]:
    text, details = content_policy.parse_error_message(str(exc))
    assert details is not None
    return text, details


# ---------------------------------------------------------------------------- what is sent


def test_jpeg_and_png_within_rekognitions_limits_go_as_they_are():
    data = encode((96, 128))
    sent, info = moderate.rekognition_image(data, field="image", max_bytes=len(data))
    assert sent == data and not info.converted


@pytest.mark.parametrize(
    ("size", "fmt", "expected"),
    [
        ((48, 64), "PNG", (80, 107)),  # too small: scaled up to 80 px on the short side
        ((96, 128), "WEBP", (96, 128)),  # WebP: Rekognition takes JPEG and PNG only
        ((12000, 100), "PNG", (9600, 80)),  # a side over 10,000 px, and the short side kept at 80
        ((1500, 1500), "NOISE", (1500, 1500)),  # over 5 MB as PNG: re-encoded as JPEG
    ],
)
def test_other_images_are_converted_to_a_jpeg_rekognition_takes(size, fmt, expected):
    if fmt == "NOISE":
        from tryon.core.imaging import encode_png
        from tryon.local.samples import noise_image

        data = encode_png(noise_image(size))
        assert len(data) > moderate.MAX_BYTES
    else:
        data = encode(size, fmt=fmt)
    sent, info = moderate.rekognition_image(data, field="image", max_bytes=len(data))
    img = opened(sent)
    assert (img.format, img.size) == ("JPEG", expected) and info.converted and info.bytes == len(sent)


def test_an_image_no_scaling_fits_is_refused_naming_the_field():
    data = encode((9000, 60))
    with pytest.raises(RequestError, match=r"^garment_image: is 9000x60 px"):
        moderate.rekognition_image(data, field="garment_image", max_bytes=len(data))


# ---------------------------------------------------------------------------- the stand-in


def test_the_stand_in_classifier_reads_skin_coloured_pixels():
    assert skin_fraction(opened(encode(colour=SKIN))) == 1.0
    assert skin_fraction(opened(encode(colour=GREY))) == 0.0


def test_the_stand_in_refuses_what_rekognition_refuses(standin):
    import base64

    def answer(data: bytes, **extra):
        return standin.answer({"Image": {"Bytes": base64.b64encode(data).decode()}, **extra})

    with pytest.raises(StandInError) as caught:
        answer(encode((96, 128), fmt="WEBP"))
    assert caught.value.code == "InvalidImageFormatException"
    with pytest.raises(StandInError) as caught:
        answer(encode((60, 60)))
    assert caught.value.code == "InvalidParameterException"  # under 80 px a side
    with pytest.raises(StandInError) as caught:
        answer(encode(), MinConfidence=120)
    assert caught.value.code == "InvalidParameterException"
    with pytest.raises(StandInError) as caught:
        standin.answer({"Image": {"Bytes": base64.b64encode(b"0" * (5 * 1024 * 1024 + 1)).decode()}})
    assert caught.value.code == "ImageTooLargeException"
    skin = answer(encode(colour=SKIN))["ModerationLabels"]
    assert {label["Name"] for label in skin} == {
        "Explicit",
        "Explicit Nudity",
        "Non-Explicit Nudity of Intimate parts and Kissing",
        "Non-Explicit Nudity",
    }
    assert answer(encode(colour=SKIN), MinConfidence=100)["ModerationLabels"] == []


def test_rekognition_errors_are_transient_or_permanent(s3):
    with pytest.raises(ModerationFailed, match="InvalidParameterException"):
        moderate.detect(encode((60, 60)), 50.0)  # through HTTP to the stand-in: what AWS would answer
    client = clients.client("rekognition")
    with Stubber(client) as stub:
        stub.add_client_error("detect_moderation_labels", "ThrottlingException", http_status_code=400)
        with pytest.raises(
            ModerationUnavailable, match="ThrottlingException"
        ):  # the state machine retries it
            moderate.detect(encode(), 50.0)
        stub.add_client_error("detect_moderation_labels", "AccessDeniedException", http_status_code=403)
        with pytest.raises(ModerationFailed, match="AccessDeniedException"):
            moderate.detect(encode(), 50.0)


# ---------------------------------------------------------------------------- inputs


def test_a_safe_photo_and_packshot_pass_with_their_labels_recorded(s3, standin):
    job = job_for(s3, encode(), garment=encode((100, 100), colour=(20, 40, 200)))
    done = moderate.moderate({"stage": "input", "job": job})
    assert done["enabled"] and done["calls"] == 2 and done["results"] is None
    assert [c["field"] for c in done["inputs"]] == ["image", "garment_image"]
    assert all(c["labels"] == [] and c["blocked"] == [] for c in done["inputs"])
    assert done["model_version"] == "local-stand-in-1" and len(standin.calls) == 2


def test_an_unsafe_photo_is_refused_with_its_labels_and_the_policy_version(s3, standin):
    job = job_for(s3, encode(colour=SKIN))
    with pytest.raises(ContentRefused) as caught:
        moderate.moderate({"stage": "input", "job": job})
    text, details = refusal_of(caught.value)
    assert (
        text.startswith("image: the photo s3://in-bucket/inputs/p.png shows Explicit")
        and "no model ran" in text
    )
    assert details["stage"] == "input" and details["field"] == "image"
    assert details["policy_version"] == content_policy.POLICY_VERSION
    assert {c["name"] for c in details["categories"]} >= {"Explicit Nudity", "Non-Explicit Nudity"}
    assert all(c["confidence"] == 100.0 or c["confidence"] >= 99 for c in details["categories"])


def test_an_unsafe_packshot_is_refused_naming_garment_image(s3, standin):
    packshot = encode((120, 120), colour=(30, 30, 30))
    standin.flag(packshot, {"Nazi Party": 91.0})
    job = job_for(s3, encode(), garment=packshot)
    with pytest.raises(ContentRefused) as caught:
        moderate.moderate({"stage": "input", "job": job})
    text, details = refusal_of(caught.value)
    assert text.startswith("garment_image: the garment image") and details["field"] == "garment_image"
    assert {c["name"] for c in details["categories"]} == {"Nazi Party", "Hate Symbols"}


def test_the_settings_recorded_in_the_job_apply(s3, standin):
    job = job_for(s3, encode(colour=SKIN))
    job["moderation"]["min_confidence"] = 100.0  # the stand-in's confidence is 99.9 at most
    assert moderate.moderate({"stage": "input", "job": job})["inputs"][0]["blocked"] == []
    job["moderation"] |= {"min_confidence": 50.0, "allowed_labels": ["Non-Explicit Nudity"]}
    with pytest.raises(ContentRefused):  # the "Explicit" branch still blocks
        moderate.moderate({"stage": "input", "job": job})
    job["moderation"]["allowed_labels"] = ["Explicit Nudity", "Non-Explicit Nudity"]  # and their parents
    assert moderate.moderate({"stage": "input", "job": job})["inputs"][0]["blocked"] == []


def test_moderation_off_calls_nothing(s3, standin):
    job = job_for(s3, encode(colour=SKIN), enabled=False)
    done = moderate.moderate({"stage": "input", "job": job})
    assert done == {
        "enabled": False,
        "model_version": None,
        "calls": 0,
        "inputs": None,
        "results": None,
        "elapsed_ms": {},
    }
    state = {"job": job, "moderation": done, "inpaint": {"keys": ["pending/x/inpainted-0.png"]}}
    assert moderate.moderate({"stage": "output", "state": state})["results"] is None
    assert standin.calls == []


# ---------------------------------------------------------------------------- results


def _results(s3, job, images: dict[str, bytes]) -> dict:
    """The state after the endpoints wrote ``images`` (file name -> PNG) under the job's pending prefix."""
    pending = job["output"]["pending_prefix"]
    for name, data in images.items():
        s3.put_object(Bucket=OUT, Key=pending + name, Body=data, ContentType="image/png")
    inputs = moderate.moderate({"stage": "input", "job": job})
    return {
        "job": job,
        "moderation": inputs,
        "segment": {"mask_key": pending + "mask.png"},
        "inpaint": {"keys": [pending + n for n in images if n.startswith("inpainted")]},
        "upscale": {"keys": [pending + n for n in images if n.startswith("upscaled")]},
    }


def test_results_that_pass_stay_pending_for_finalize_to_publish(s3, standin):
    job = job_for(s3, encode())
    state = _results(s3, job, {"mask.png": encode(), "inpainted-0.png": encode(colour=(10, 90, 10))})
    done = moderate.moderate({"stage": "output", "state": state})
    assert done["calls"] == 2 and [c["field"] for c in done["results"]] == ["inpainted-0.png"]
    assert set(done["elapsed_ms"]) == {"inputs", "results"}
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=OUT).get("Contents", [])]
    assert sorted(keys) == sorted(
        job["output"]["pending_prefix"] + n for n in ("mask.png", "inpainted-0.png")
    )


def test_an_unsafe_result_is_quarantined_and_nothing_is_left_to_publish(s3, standin):
    photo = encode()
    job = job_for(s3, photo)
    unsafe = encode(colour=(200, 30, 30))
    state = _results(
        s3,
        job,
        {"mask.png": encode(), "inpainted-0.png": encode(colour=(10, 90, 10)), "upscaled-0.png": unsafe},
    )
    photo_digest = pixel_digest(opened(photo))
    standin.flag_when(
        lambda img: pixel_digest(img) != photo_digest and img.getpixel((0, 0))[0] == 200,
        {"Explicit Nudity": 98.5},
    )
    with pytest.raises(ContentRefused) as caught:
        moderate.moderate({"stage": "output", "state": state})
    text, details = refusal_of(caught.value)
    assert text.startswith("upscaled-0.png: the result shows Explicit Nudity 98.5% (under Explicit)")
    assert details["stage"] == "output"
    quarantined = f"quarantine/{job['job_id']}/upscaled-0.png"
    assert details["images"] == [
        {
            "name": "upscaled-0.png",
            "quarantine": f"s3://{OUT}/{quarantined}",
            "categories": [
                {"name": "Explicit Nudity", "parent": "Explicit", "confidence": 98.5, "level": 2},
                {"name": "Explicit", "parent": "", "confidence": 98.5, "level": 1},
            ],
        }
    ]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=OUT).get("Contents", [])]
    assert keys == [quarantined]  # the job's pending images (mask too) are gone; only the refused one is kept
    assert s3.get_object(Bucket=OUT, Key=quarantined)["Body"].read() == unsafe


# ---------------------------------------------------------------------------- the prompt policy in Prepare


def test_prepare_refuses_a_deny_listed_prompt_naming_the_field(s3, standin):
    s3.put_object(Bucket=IN, Key="inputs/p.png", Body=encode())
    with pytest.raises(ContentRefused) as caught:
        prepare.prepare({"image": f"s3://{IN}/inputs/p.png", "prompt": "a topless woman"})
    text, details = refusal_of(caught.value)
    assert text.startswith("prompt: 'topless' asks for nudity")
    assert details == {
        "stage": "prompt",
        "field": "prompt",
        "policy_version": content_policy.POLICY_VERSION,
        "categories": [],
        "images": [],
    }
    s3.put_object(Bucket=IN, Key="inputs/q.png", Body=encode(), Metadata={"query": "skin"})
    with pytest.raises(ContentRefused, match=r"^query: 'skin' points the mask"):
        prepare.prepare({"image": f"s3://{IN}/inputs/q.png"})
    assert standin.calls == []


def test_prepare_records_the_stacks_moderation_settings_in_the_job(s3, monkeypatch):
    s3.put_object(Bucket=IN, Key="inputs/p.png", Body=encode())
    job = prepare.prepare({"image": f"s3://{IN}/inputs/p.png"})["job"]
    assert job["moderation"] == ModerationConfig().as_dict()
    monkeypatch.setenv("TRYON_MODERATION", "off")
    with pytest.raises(Exception, match="ContentModerationOffReason: is required") as caught:
        prepare.prepare({"image": f"s3://{IN}/inputs/p.png"})
    assert type(caught.value).__name__ == "InvalidInput"
    monkeypatch.setenv("TRYON_MODERATION_OFF_REASON", "internal studio photos")
    job = prepare.prepare({"image": f"s3://{IN}/inputs/p.png"})["job"]
    assert (
        job["moderation"]["enabled"] is False and job["moderation"]["off_reason"] == "internal studio photos"
    )
    assert json.dumps(job)  # small JSON, as every state
