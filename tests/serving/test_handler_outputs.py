"""Endpoints write their images to S3 themselves, read the object version a request names, and
classify S3 faults: the client's are 400s naming the URI, S3's own are retryable."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from PIL import Image
from support.handlers import invoke
from support.images import box_mask, encode, noise_image

from tryon.core import imaging
from tryon.core.errors import RETRYABLE_MARKER, DependencyUnavailable, RequestError
from tryon.handlers import s3io

pytestmark = pytest.mark.slow

IN, OUT = "photos-in", "photos-out"


def _png(img: Image.Image) -> bytes:
    return encode(img, compress_level=1)


def _run(handler, model, request: dict) -> dict:
    return invoke(handler, model, request)


@pytest.fixture(scope="module")
def inpaint(inpaint_handler, inpaint_model):
    return inpaint_handler, inpaint_model


@pytest.fixture(scope="module")
def clipseg(clipseg_model):
    from tryon.handlers import clipseg

    return clipseg, clipseg_model


@pytest.fixture(scope="module")
def upscale(upscale_model):
    from tryon.handlers import sd_upscale

    return sd_upscale, upscale_model


@pytest.fixture
def s3(moto_s3):
    return moto_s3(IN, OUT, versioned=(IN,))


def _read_png(s3, uri: str) -> Image.Image:
    bucket, key = imaging.parse_s3_uri(uri, field="uri")
    img = Image.open(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    assert img.format == "PNG"
    img.load()
    return img


def test_inpaint_writes_large_results_to_s3_and_answers_small_json(inpaint, s3):
    handler, model = inpaint
    size, box = (1600, 1200), (500, 400, 900, 800)
    photo = noise_image(size, 1)
    s3.put_object(Bucket=IN, Key="inputs/p.png", Body=_png(photo))
    s3.put_object(Bucket=OUT, Key="results/p/job/mask.png", Body=_png(box_mask(size, box)))
    before = s3.get_object(Bucket=IN, Key="inputs/p.png")["Body"].read()
    request = {
        "image": f"s3://{IN}/inputs/p.png",
        "mask": f"s3://{OUT}/results/p/job/mask.png",
        "prompt": "a red skirt",
        "steps": 2,
        "seed": 7,
        "num_images": 3,
        "output": f"s3://{OUT}/results/p/job/",
    }
    body = handler.output_fn(
        handler.predict_fn(handler.input_fn(json.dumps(request), "application/json"), model),
        "application/json",
    )
    assert len(body) < 4096  # only keys and metadata travel, whatever the photo size
    answer = json.loads(body)
    assert "images" not in answer
    keys = [o["key"] for o in answer["outputs"]]
    assert keys == [f"results/p/job/inpainted-{i}.png" for i in range(3)]
    outside = np.ones((size[1], size[0]), dtype=bool)
    outside[box[1] : box[3], box[0] : box[2]] = False
    for out in answer["outputs"]:
        img = _read_png(s3, out["uri"])
        assert out["size"] == [1600, 1200] and img.size == size
        assert out["bytes"] == s3.head_object(Bucket=OUT, Key=out["key"])["ContentLength"]
        assert np.array_equal(np.asarray(img)[outside], np.asarray(photo)[outside])
    assert s3.get_object(Bucket=IN, Key="inputs/p.png")["Body"].read() == before


def test_each_endpoint_names_its_outputs(clipseg, upscale, s3):
    photo = noise_image((48, 40), 2)
    s3.put_object(Bucket=IN, Key="inputs/small.png", Body=_png(photo))
    handler, model = clipseg
    answer = _run(
        handler,
        model,
        {"image": f"s3://{IN}/inputs/small.png", "query": "a shirt", "output": f"s3://{OUT}/r/"},
    )
    assert [o["key"] for o in answer["outputs"]] == ["r/mask.png"] and "mask" not in answer
    assert _read_png(s3, answer["outputs"][0]["uri"]).mode == "L"
    handler, model = upscale
    answer = _run(
        handler,
        model,
        {
            "image": f"s3://{IN}/inputs/small.png",
            "steps": 1,
            "seed": 1,
            "output": f"s3://{OUT}/r/",
            "output_name": "upscaled-2",
        },
    )
    assert [o["key"] for o in answer["outputs"]] == ["r/upscaled-2.png"] and "image" not in answer
    assert _read_png(s3, answer["outputs"][0]["uri"]).size == (192, 160)


def test_endpoint_reads_the_version_the_request_names(clipseg, s3):
    """A new upload under the same key while a job runs must not change that job's inputs."""
    handler, model = clipseg
    first, second = noise_image((40, 40), 3), noise_image((56, 24), 4)
    v1 = s3.put_object(Bucket=IN, Key="inputs/p.png", Body=_png(first))["VersionId"]
    s3.put_object(Bucket=IN, Key="inputs/p.png", Body=_png(second))
    old = _run(handler, model, {"image": f"s3://{IN}/inputs/p.png?versionId={v1}", "query": "a shirt"})
    latest = _run(handler, model, {"image": f"s3://{IN}/inputs/p.png", "query": "a shirt"})
    assert old["size"] == [40, 40] and latest["size"] == [56, 24]
    with pytest.raises(RequestError, match=r"^image: s3://photos-in/inputs/p.png\?versionId=nope does not"):
        _run(handler, model, {"image": f"s3://{IN}/inputs/p.png?versionId=nope", "query": "a shirt"})


def _failing_client(monkeypatch, error: Exception) -> None:
    """Every S3 call the handlers make raises ``error`` (as botocore would)."""
    real = s3io.s3_client

    def client():
        c = real()

        def boom(**_):
            raise error

        c.meta.events.register("before-call.s3", boom)
        return c

    monkeypatch.setattr(s3io, "s3_client", client)


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (_client_error("SlowDown", 503), True),
        (_client_error("InternalError", 500), True),
        (ReadTimeoutError(endpoint_url="https://s3"), True),
        (_client_error("AccessDenied", 403), False),
        (_client_error("NoSuchKey", 404), False),
    ],
)
def test_s3_faults_are_classified(clipseg, s3, monkeypatch, error, transient):
    handler, model = clipseg
    _failing_client(monkeypatch, error)
    request = {"image": f"s3://{IN}/inputs/p.png", "query": "a shirt"}
    if transient:
        with pytest.raises(DependencyUnavailable) as caught:
            _run(handler, model, request)
        assert str(caught.value).startswith(RETRYABLE_MARKER) and "s3://photos-in/inputs/p.png" in str(
            caught.value
        )
    else:
        with pytest.raises(RequestError, match=r"^image: s3://photos-in/inputs/p.png (could not|does not)"):
            _run(handler, model, request)


def test_a_server_without_credentials_says_so_instead_of_retrying(clipseg, s3, monkeypatch):
    """A local server where boto3 finds no credentials: a 400 saying what to do, not a retryable 503."""
    from botocore.exceptions import NoCredentialsError

    handler, model = clipseg
    _failing_client(monkeypatch, NoCredentialsError())
    with pytest.raises(RequestError) as caught:
        _run(handler, model, {"image": f"s3://{IN}/inputs/p.png", "query": "a shirt"})
    assert str(caught.value) == (
        "image: s3://photos-in/inputs/p.png could not be read: the endpoint has no AWS credentials (a local "
        "server reads s3:// with the credentials and region of the shell that started it; send the image "
        "base64 instead)"
    )


def test_failed_output_write_is_classified(clipseg, s3, monkeypatch):
    handler, model = clipseg
    request = {
        "image": imaging.b64encode(_png(noise_image((32, 32)))),
        "query": "x",
        "output": "s3://nobucket/r/",
    }
    with pytest.raises(RequestError, match=r"^output: s3://nobucket/r/mask.png: the bucket does not exist"):
        _run(handler, model, request)
    _failing_client(monkeypatch, _client_error("SlowDown", 503))
    with pytest.raises(DependencyUnavailable, match=r"s3://photos-out/r/mask\.png"):
        _run(handler, model, {**request, "output": f"s3://{OUT}/r/"})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"output": "s3://b/no-slash"}, r"^output: must be s3://bucket/prefix/ \(ending with '/'\)"),
        ({"output": "http://b/p/"}, r"^output: must be an s3://bucket/prefix/ URI"),
        ({"output": "s3://b/p/", "output_name": "../x"}, r"^output_name: must be letters"),
        ({"output_name": "x"}, r"^output_name: needs output"),
    ],
)
def test_bad_output_fields(clipseg, fields, message):
    handler, _ = clipseg
    request = {"image": imaging.b64encode(_png(noise_image((32, 32)))), "query": "x", **fields}
    with pytest.raises(RequestError, match=message):
        handler.input_fn(json.dumps(request), "application/json")


def test_inline_answer_over_the_response_limit_is_refused(inpaint, monkeypatch):
    """Without ``output``, images come back base64 only when they fit SageMaker's response limit."""
    handler, model = inpaint
    size = (1000, 800)
    request = {
        "image": imaging.b64encode(_png(noise_image(size, 5))),
        "mask": imaging.b64encode(_png(box_mask(size, (100, 100, 300, 300)))),
        "prompt": "a skirt",
        "steps": 1,
        "seed": 1,
        "num_images": 4,
    }
    with pytest.raises(RequestError, match=r"^output: the image\(s\) would make a \d+-byte response; "):
        _run(handler, model, request)
    monkeypatch.setenv("TRYON_ENDPOINT_MODE", "async")
    assert len(_run(handler, model, request)["images"]) == 4
