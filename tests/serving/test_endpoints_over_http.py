"""All three real handlers behind one local server, called with an unmodified boto3 client."""

from __future__ import annotations

import importlib
import io
import json

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from PIL import Image
from support.handlers import invoke
from support.images import b64, box_mask, gradient_photo

from tryon.core import imaging
from tryon.handlers import HANDLER_MODULES
from tryon.server import EndpointConfig, LocalEndpointServer

PHOTO = gradient_photo((96, 72))
MASK = box_mask((96, 72), (20, 10, 70, 60))

REQUESTS = {
    "clipseg": {"image": b64(PHOTO), "queries": ["a shirt", "a skirt"], "negative_queries": ["face"]},
    "sd_inpaint": {
        "image": b64(PHOTO),
        "mask": b64(MASK),
        "prompt": "a denim jacket",
        "steps": 2,
        "seed": 7,
    },
    "sd_upscale": {"image": b64(PHOTO.resize((24, 18))), "prompt": "sharp", "steps": 2, "seed": 7},
}
BAD = {
    "clipseg": ({"image": b64(PHOTO), "query": "a shirt", "threshold": 2}, "threshold"),
    "sd_inpaint": ({"image": b64(PHOTO), "mask": b64(MASK), "prompt": "x", "sampler": "Nope"}, "sampler"),
    "sd_upscale": ({"image": b64(PHOTO), "noise_level": 999}, "noise_level"),
}


FOLDERS = {"clipseg": "clipseg", "sd_inpaint": "sd-inpaint", "sd_upscale": "sd-x4-upscaler"}


@pytest.fixture(scope="module")
def served(tiny_models):
    configs = [EndpointConfig(kind, kind, str(tiny_models[folder])) for kind, folder in FOLDERS.items()]
    with LocalEndpointServer(configs) as server:
        yield server, boto3.client("sagemaker-runtime", endpoint_url=server.url, region_name="us-east-1")


#: endpoint kind -> the fixture of its tiny model loaded in this process (tests/serving/conftest.py)
MODELS = {"clipseg": "clipseg_model", "sd_inpaint": "inpaint_model", "sd_upscale": "upscale_model"}


@pytest.fixture
def in_process(request):
    """kind -> a function answering a request by calling the handler's four functions directly."""

    def answer(kind: str, body: dict) -> dict:
        module = importlib.import_module(HANDLER_MODULES[kind])
        return invoke(module, request.getfixturevalue(MODELS[kind]), body)

    return answer


@pytest.mark.parametrize("kind", sorted(REQUESTS))
def test_boto3_answer_equals_the_in_process_answer(served, in_process, kind):
    _server, runtime = served
    response = runtime.invoke_endpoint(
        EndpointName=kind,
        Body=json.dumps(REQUESTS[kind]),
        ContentType="application/json",
        Accept="application/json",
    )
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    over_http = json.loads(response["Body"].read())
    direct = in_process(kind, REQUESTS[kind])
    image_fields = {"clipseg": ["mask"], "sd_inpaint": ["images"], "sd_upscale": ["image"]}[kind]
    for field in image_fields:
        assert over_http[field] == direct[field], f"{kind}.{field} differs over HTTP"
    first = over_http[image_fields[0]]
    first = first[0] if isinstance(first, list) else first
    with Image.open(io.BytesIO(imaging.b64decode(first, field="x"))) as img:
        assert img.size == (96, 72)  # the photo's size; the upscaler's 24x18 input times 4


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_input_is_a_model_error_naming_the_field_and_the_server_stays_healthy(served, kind):
    server, runtime = served
    payload, field = BAD[kind]
    with pytest.raises(ClientError) as info:
        runtime.invoke_endpoint(EndpointName=kind, Body=json.dumps(payload), ContentType="application/json")
    error = info.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["OriginalStatusCode"] == 400
    assert error["OriginalMessage"].startswith(f"{field}:")
    assert httpx.get(f"{server.url}/ping").status_code == 200
    again = runtime.invoke_endpoint(
        EndpointName=kind, Body=json.dumps(REQUESTS[kind]), ContentType="application/json"
    )
    assert again["Body"].read()
