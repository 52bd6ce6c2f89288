"""Prepare and the light workflow helpers, on moto S3 (no models, no state machine)."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError
from support.images import flat_png

from tryon.core.errors import RequestError
from tryon.workflow import clients, endpoints, job, layout, params, prepare, steps
from tryon.workflow.step_errors import (
    EndpointNotFound,
    EndpointThrottled,
    EndpointUnavailable,
    InvalidInput,
    ModelError,
    ModelNotReady,
)

IN, OUT = "in-bucket", "out-bucket"


@pytest.fixture
def s3(moto_s3):
    env = {
        "TRYON_INPUT_BUCKET": IN,
        "TRYON_OUTPUT_BUCKET": OUT,
        "TRYON_CLIPSEG_ENDPOINT": "seg",
        "TRYON_INPAINT_ENDPOINT": "inp",
        "TRYON_UPSCALE_ENDPOINT": "up",
        "TRYON_DEFAULT_STEPS": "12",
        "TRYON_DEFAULT_NEGATIVE_QUERIES": "face, hands",
        "TRYON_PRESETS": json.dumps({"catalogue": {"num_images": 3, "prompt": "studio"}}),
    }
    return moto_s3(IN, OUT, versioned=(IN,), env=env)


def event_for(client, key, bucket=IN):
    head = client.head_object(Bucket=bucket, Key=key)
    return {
        "version": "0",
        "id": "e1",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-11-22T00:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {
                "key": key,
                "size": head["ContentLength"],
                "etag": head["ETag"].strip('"'),
                "version-id": head.get("VersionId"),
            },
            "reason": "PutObject",
        },
    }


def test_event_and_console_input_give_the_same_job(s3):
    s3.put_object(Bucket=IN, Key="inputs/a.png", Body=flat_png())
    from_event = prepare.prepare(event_for(s3, "inputs/a.png"))
    from_console = prepare.prepare({"image": f"s3://{IN}/inputs/a.png"})
    assert from_event["job"]["job_id"] == from_console["job"]["job_id"]
    j = from_event["job"]
    assert from_event["complete"] is False
    assert j["source"] == "s3-event" and from_console["job"]["source"] == "console"
    header = {"format": "PNG", "width": 40, "height": 30, "mode": "RGB", "orientation": 1}
    assert j["input"]["image"] == header
    assert j["params"]["steps"] == 12 and j["params"]["negative_queries"] == ["face", "hands"]
    assert isinstance(j["params"]["seed"], int)
    assert j["output"] == {
        "bucket": OUT,
        "prefix": f"results/a/{j['job_id']}/",
        "pending_prefix": f"pending/{j['job_id']}/",  # the endpoints write here; Finalize publishes
    }
    assert j["upscale"] is False and j["endpoints"]["sd_upscale"] is None
    assert len(json.dumps(from_event)) < 4096  # only small JSON travels through the states


def test_layers_metadata_preset_console(s3):
    s3.put_object(
        Bucket=IN,
        Key="inputs/b.jpg",
        Body=flat_png(),
        Metadata={"preset": "catalogue", "steps": "40", "num-images": "2", "adapter": "dress-a", "tool": "x"},
    )
    j = prepare.prepare({"image": f"s3://{IN}/inputs/b.jpg", "steps": 7, "upscale": True})["job"]
    p = j["params"]
    assert p["steps"] == 7  # console beats metadata
    assert p["num_images"] == 2  # metadata beats preset
    assert p["prompt"] == "studio"  # preset beats template default
    assert p["adapter"] == "dress-a"
    assert j["preset"] == "catalogue" and j["ignored_metadata"] == ["tool"]
    assert j["upscale"] is True and j["endpoints"]["sd_upscale"] == "up"


def test_job_id_depends_on_version_and_parameters(s3):
    s3.put_object(Bucket=IN, Key="inputs/c.png", Body=flat_png())
    a = prepare.prepare({"image": f"s3://{IN}/inputs/c.png"})["job"]["job_id"]
    assert prepare.prepare({"image": f"s3://{IN}/inputs/c.png"})["job"]["job_id"] == a
    assert prepare.prepare({"image": f"s3://{IN}/inputs/c.png", "steps": 5})["job"]["job_id"] != a
    s3.put_object(Bucket=IN, Key="inputs/c.png", Body=flat_png((41, 30)))
    assert prepare.prepare({"image": f"s3://{IN}/inputs/c.png"})["job"]["job_id"] != a


def test_existing_complete_manifest_is_reported(s3):
    s3.put_object(Bucket=IN, Key="inputs/d.png", Body=flat_png())
    first = prepare.prepare({"image": f"s3://{IN}/inputs/d.png"})
    key = first["job"]["output"]["prefix"] + layout.MANIFEST
    s3.put_object(Bucket=OUT, Key=key, Body=json.dumps({"status": "succeeded"}).encode())
    again = prepare.prepare({"image": f"s3://{IN}/inputs/d.png"})
    assert again["complete"] is True and again["manifest"] == f"s3://{OUT}/{key}"


@pytest.mark.parametrize(
    ("body", "key", "extra", "needle"),
    [
        (b"not an image at all", "inputs/e.png", {}, "image: is not a decodable PNG, JPEG or WebP image"),
        (None, "inputs/missing.png", {}, "does not exist"),
        (None, "other/e.png", {}, "is not under the input prefix inputs/"),
        (None, "inputs/e.gif", {}, "must end with one of"),
        (None, "inputs/e.png", {"steps": 1000}, "steps: must be <= 150, got 1000"),
        (None, "inputs/e.png", {"prompt": "x" * 2001}, "prompt: is 2001 characters; the limit is 2000"),
        (None, "inputs/e.png", {"stpes": 3}, "unknown field(s) stpes"),
        (None, "inputs/e.png", {"preset": "nope"}, "unknown preset 'nope'"),
        (None, "inputs/e.png", {"adapter": "../etc"}, "adapter: '../etc' is not a valid adapter name"),
    ],
)
def test_prepare_refuses_bad_input_with_a_clear_message(s3, body, key, extra, needle):
    if key != "inputs/missing.png":
        s3.put_object(Bucket=IN, Key=key, Body=body if body is not None else flat_png())
    with pytest.raises(InvalidInput) as info:
        prepare.prepare({"image": f"s3://{IN}/{key}", **extra})
    assert needle in str(info.value)


def test_truncated_and_huge_images_fail_fast(s3, monkeypatch):
    full = flat_png((64, 64))
    s3.put_object(Bucket=IN, Key="inputs/t.png", Body=full[: len(full) // 2])
    with pytest.raises(InvalidInput, match=r"truncated|could not be decoded|not a decodable"):
        prepare.prepare({"image": f"s3://{IN}/inputs/t.png"})
    monkeypatch.setenv("TRYON_MAX_INPUT_PIXELS", "1000")
    s3.put_object(Bucket=IN, Key="inputs/h.png", Body=flat_png((64, 64)))
    with pytest.raises(InvalidInput, match="64x64 = 4096 pixels; the limit is 1000 pixels"):
        prepare.prepare({"image": f"s3://{IN}/inputs/h.png"})
    monkeypatch.setenv("TRYON_MAX_INPUT_BYTES", "100")
    with pytest.raises(InvalidInput, match="the limit is 100 bytes"):
        prepare.prepare({"image": f"s3://{IN}/inputs/h.png"})


def test_metadata_values_are_typed_and_named():
    values, preset, ignored = params.metadata_overrides({"steps": "20", "upscale": "yes", "threshold": "0.5"})
    assert values == {"steps": 20, "upscale": True, "threshold": 0.5} and preset is None and ignored == []
    with pytest.raises(RequestError, match=r"steps \(from metadata\): must be an integer, got 'many'"):
        params.metadata_overrides({"steps": "many"})
    with pytest.raises(RequestError, match=r"guidance_scale \(from metadata\): must be <= 50.0"):
        params.metadata_overrides({"guidance-scale": "99"})


def test_trigger_shapes():
    with pytest.raises(RequestError, match="must be an EventBridge S3"):
        job.parse_trigger({"hello": 1})
    with pytest.raises(RequestError, match="input: must be a JSON object"):
        job.parse_trigger([1])
    with pytest.raises(RequestError, match="image: must be an s3://bucket/key URI"):
        job.parse_trigger({"image": "http://x/y.png"})


def test_layout_names():
    assert layout.result_name("inputs/shop/a b.JPG", "inputs/") == "shop/a_b"
    assert layout.result_name("inputs/../x.png", "inputs/") == "_/x"
    assert layout.failure_key("failures/", "abc") == "failures/abc.json"


def _client_error(code, status, **extra):
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}, **extra},
        "InvokeEndpoint",
    )


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (_client_error("ThrottlingException", 400), EndpointThrottled),
        (_client_error("ModelNotReadyException", 429), ModelNotReady),
        (_client_error("ServiceUnavailable", 503), EndpointUnavailable),
        (
            _client_error("ModelError", 424, OriginalStatusCode=400, OriginalMessage="prompt: too long"),
            ModelError,
        ),
        (
            _client_error("ModelError", 424, OriginalStatusCode=500, OriginalMessage="boom"),
            EndpointUnavailable,
        ),
        (_client_error("ValidationError", 400), EndpointNotFound),
    ],
)
def test_endpoint_errors_are_classified(exc, expected):
    err = endpoints.classify_client_error("ep", exc)
    assert type(err) is expected
    assert err.transient == (expected in (EndpointThrottled, ModelNotReady, EndpointUnavailable))


def test_failed_step_and_failure_record(s3):
    state = {
        "detail": {"x": 1},
        "error": {"Error": "InvalidInput", "Cause": json.dumps({"errorMessage": "image: bad"})},
    }
    assert steps.failed_step(state) == "prepare"
    out = steps.record_failure({"state": state, "execution": "arn:x"})
    record = json.loads(s3.get_object(Bucket=OUT, Key=out["failure"].split(f"{OUT}/")[1])["Body"].read())
    assert (
        record["step"] == "prepare" and record["error"] == "InvalidInput" and record["cause"] == "image: bad"
    )
    assert record["job_id"].startswith("invalid-") and record["execution"] == "arn:x"
    checked = {"moderation": {"enabled": True, "inputs": [], "results": None}}
    found = {"empty": False, "garments": [], "composed": False}
    every_pass = {"keys": [], "passes": [], "done": True}
    assert (
        steps.failed_step({"job": {"upscale": True}, "segment": found, "inpaint": every_pass, **checked})
        == "upscale"
    )
    assert (
        steps.failed_step({"job": {"upscale": False}, "segment": {**found, "empty": True}, **checked})
        == "finalize"
    )
    assert steps.failed_step({"job": {"upscale": False}, "segment": found, **checked}) == "inpaint"


def test_empty_upscaler_name_turns_upscaling_off(s3, monkeypatch):
    monkeypatch.setenv("TRYON_UPSCALE_ENDPOINT", "")
    s3.put_object(Bucket=IN, Key="inputs/u.png", Body=flat_png())
    j = prepare.prepare({"image": f"s3://{IN}/inputs/u.png", "upscale": True})["job"]
    assert j["params"]["upscale"] is True and j["upscale"] is False and j["endpoints"]["sd_upscale"] is None


def test_a_model_call_past_the_read_timeout_is_permanent(monkeypatch):
    """A timed-out invocation is not retried: the endpoint is still busy with the same work."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from botocore.config import Config

    from tryon.workflow.step_errors import EndpointTimeout

    release = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            release.wait(10)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("TRYON_SAGEMAKER_RUNTIME_URL", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setattr(clients, "RUNTIME_CONFIG", clients.RUNTIME_CONFIG.merge(Config(read_timeout=1)))
    clients.reset_clients()
    try:
        with pytest.raises(EndpointTimeout, match="did not answer within 1 s") as info:
            endpoints.invoke_json("slow-endpoint", {"x": 1})
        assert not info.value.transient
    finally:
        release.set()
        server.shutdown()
        clients.reset_clients()


def test_job_parameters_take_the_endpoints_limits():
    """One contract: what Prepare accepts is exactly what the endpoint it is sent to accepts."""
    from tryon.core import contract
    from tryon.workflow import params

    sent = {
        "query": contract.CLIPSEG["query"],
        "threshold": contract.CLIPSEG["threshold"],
        "dilate": contract.CLIPSEG["dilate"],
        "feather": contract.CLIPSEG["feather"],
        "prompt": contract.SD_INPAINT["prompt"],
        "guidance_scale": contract.SD_INPAINT["guidance_scale"],
        "steps": contract.SD_INPAINT["steps"],
        "num_images": contract.SD_INPAINT["num_images"],
        "upscale_steps": contract.SD_UPSCALE["steps"],
        "noise_level": contract.SD_UPSCALE["noise_level"],
    }
    by_name = {p.name: p for p in params.PARAMS}
    for name, endpoint_field in sent.items():
        assert dict(by_name[name].limits) == dict(endpoint_field.limits), name
    # the two disagreements that used to exist: guidance 30 vs 50, dilate 64 vs 256
    assert params.validate_layer({"guidance_scale": 50.0, "dilate": 256}, "input") == {
        "guidance_scale": 50.0,
        "dilate": 256,
    }
    with pytest.raises(RequestError, match=r"guidance_scale: must be <= 50\.0"):
        params.validate_layer({"guidance_scale": 50.5}, "input")


def test_a_retryable_fault_behind_the_toolkits_400_is_retried():
    """The serving toolkit answers every handler exception with 400; the marker keeps throttling transient."""
    from tryon.core.errors import DependencyUnavailable

    def model_error(message: str) -> ClientError:
        return ClientError(
            {
                "Error": {"Code": "ModelError", "Message": "Received client error (400) from primary"},
                "OriginalStatusCode": 400,
                "OriginalMessage": message,
                "ResponseMetadata": {"HTTPStatusCode": 424},
            },
            "InvokeEndpoint",
        )

    throttled = str(DependencyUnavailable("S3 failed while the image s3://b/k was read (SlowDown)"))
    assert (
        type(endpoints.classify_client_error("ep", model_error(throttled))).__name__ == "EndpointUnavailable"
    )
    refused = "image: s3://b/k does not exist (or the version is gone)"
    assert type(endpoints.classify_client_error("ep", model_error(refused))).__name__ == "ModelError"


def test_sagemaker_limit_errors_are_permanent_and_named():
    """A 60 s time-out and an oversize body are not retried: the same request would fail again."""

    def error(code: str, message: str, status: int, **extra) -> ClientError:
        body = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
        return ClientError({**body, **extra}, "InvokeEndpoint")

    timed_out = error(
        "ModelError",
        'Received server error (0) from primary with message "Your invocation timed out while waiting for a '
        'response from container primary. Review the latency metrics"',
        424,
        OriginalStatusCode=0,
    )
    assert type(endpoints.classify_client_error("ep", timed_out)).__name__ == "EndpointTimeout"
    oversize = error("ValidationError", "Request 1234 has oversize body.", 400)
    assert type(endpoints.classify_client_error("ep", oversize)).__name__ == "ModelError"
    missing = error("ValidationError", "Endpoint ep of account 1 not found.", 400)
    assert type(endpoints.classify_client_error("ep", missing)).__name__ == "EndpointNotFound"


@pytest.mark.parametrize(
    ("env", "adapter", "refused"),
    [
        ({}, f"s3://{OUT}/adapters/skirt/", False),  # default: the output bucket's adapters/
        ({}, "s3://someone-elses-bucket/adapters/skirt/", True),
        ({}, f"s3://{OUT}/results/skirt/", True),
        (
            {"TRYON_ADAPTER_BUCKET": "lora-bucket", "TRYON_ADAPTER_PREFIX": "loras"},
            "s3://lora-bucket/loras/a/",
            False,
        ),
        (
            {"TRYON_ADAPTER_BUCKET": "lora-bucket", "TRYON_ADAPTER_PREFIX": "loras"},
            f"s3://{OUT}/adapters/a/",
            True,
        ),
        ({}, "skirt", False),  # a name inside the model folder: nothing to check here
    ],
)
def test_s3_adapters_outside_the_adapter_location_are_refused_before_any_model_runs(
    s3, monkeypatch, env, adapter, refused
):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s3.put_object(Bucket=IN, Key="inputs/ad.png", Body=flat_png())
    if not refused:
        assert (
            prepare.prepare({"image": f"s3://{IN}/inputs/ad.png", "adapter": adapter})["job"]["params"][
                "adapter"
            ]
            == adapter
        )
        return
    with pytest.raises(InvalidInput) as info:
        prepare.prepare({"image": f"s3://{IN}/inputs/ad.png", "adapter": adapter})
    message = str(info.value)
    assert message.startswith("adapter: ") and "is outside s3://" in message and "AdapterPrefix" in message


def test_a_console_input_may_pin_the_photo_version(s3):
    first = s3.put_object(Bucket=IN, Key="inputs/v.png", Body=flat_png((40, 30)))["VersionId"]
    s3.put_object(Bucket=IN, Key="inputs/v.png", Body=flat_png((50, 30)))  # replaced since
    pinned = prepare.prepare({"image": f"s3://{IN}/inputs/v.png?versionId={first}"})["job"]
    latest = prepare.prepare({"image": f"s3://{IN}/inputs/v.png"})["job"]
    assert pinned["input"]["version_id"] == first and pinned["input"]["image"]["width"] == 40
    assert latest["input"]["image"]["width"] == 50 and latest["job_id"] != pinned["job_id"]
    with pytest.raises(InvalidInput, match="does not exist"):
        prepare.prepare({"image": f"s3://{IN}/inputs/v.png?versionId=no-such-version"})


def test_padding_is_a_job_parameter_sent_only_when_set(s3):
    """One schema row: metadata, console input and template default reach the inpainting request."""
    from tryon.workflow.steps import STEP_CALLS

    s3.put_object(Bucket=IN, Key="inputs/pad.png", Body=flat_png(), Metadata={"padding": "96"})

    def request(**console):
        prepared = prepare.prepare({"image": f"s3://{IN}/inputs/pad.png", **console})
        built = prepared["job"]
        mask = {
            "name": "",
            "mask_key": built["output"]["prefix"] + "mask.png",
            "coverage": 0.5,
            "empty": False,
        }
        segment = {**mask, "garments": [mask]}
        [sent] = STEP_CALLS["inpaint"].requests(
            {"job": built, "segment": segment, "inpaint": prepared["inpaint"]}
        )
        return built, sent

    built, sent = request()
    assert built["params"]["padding"] == 96 and sent["padding"] == 96  # from x-amz-meta-padding
    assert request(padding=0)[1]["padding"] == 0
    with pytest.raises(InvalidInput, match=r"^padding: must be <= 2048, got 4096"):
        request(padding=4096)
    s3.put_object(Bucket=IN, Key="inputs/pad.png", Body=flat_png())
    built, sent = request()
    assert built["params"]["padding"] is None and "padding" not in sent  # unset: the endpoint's 32


def test_prepare_plans_an_upscale_and_refuses_one_its_endpoint_cannot_finish(s3, monkeypatch):
    """The upscaler's time budget (tryon.core.upscale_budget) is held against the endpoint's mode."""
    s3.put_object(Bucket=IN, Key="inputs/small.png", Body=flat_png((256, 192)))
    s3.put_object(Bucket=IN, Key="inputs/large.png", Body=flat_png((900, 1200)))
    j = prepare.prepare({"image": f"s3://{IN}/inputs/small.png", "upscale": True, "upscale_steps": 20})["job"]
    assert j["upscale_plan"] == {
        "mode": "realtime",
        "tiles": 1,
        "tile": [256, 192],
        "steps": 20,
        "estimated_seconds": 11.7,  # 0.1875 of a 512 px tile x (20 + 5) x 2.5 s
        "limit_seconds": 60.0,
        "tile_step_seconds": 2.5,
    }
    without = prepare.prepare({"image": f"s3://{IN}/inputs/large.png"})["job"]
    assert without["upscale"] is False and without["upscale_plan"] is None
    with pytest.raises(InvalidInput) as refused:
        prepare.prepare({"image": f"s3://{IN}/inputs/large.png", "upscale": True})
    assert str(refused.value).startswith(
        "upscale: the photo is 900x1200: the x4 upscaler cuts it into 6 tiles of 512 px and would take about "
        "375 s"
    )
    assert "tryon run: --mode sd_upscale=async" in str(refused.value)
    monkeypatch.setenv("TRYON_UPSCALE_MODE", "async")  # the stack's UpscaleMode: the same job fits
    plan = prepare.prepare({"image": f"s3://{IN}/inputs/large.png", "upscale": True})["job"]["upscale_plan"]
    assert (plan["mode"], plan["tiles"], plan["limit_seconds"]) == ("async", 6, 900)
    monkeypatch.setenv("TRYON_UPSCALE_MODE", "realtime")
    monkeypatch.setenv("TRYON_UPSCALE_TILE_STEP_SECONDS", "0.25")  # an operator's faster instance
    plan = prepare.prepare({"image": f"s3://{IN}/inputs/large.png", "upscale": True})["job"]["upscale_plan"]
    assert (plan["estimated_seconds"], plan["tile_step_seconds"]) == (37.5, 0.25)


def test_the_stacks_presets_are_read_from_their_ssm_parameter(moto_s3):
    """Presets live in an SSM parameter (Lambda's 4 KB environment cannot hold 4 KB of them)."""
    from tryon.workflow import clients

    moto_s3(IN, OUT)
    clients.reset_clients()
    ssm = clients.client("ssm")
    ssm.put_parameter(Name="/tryon/presets", Value='{"studio": {"steps": 44}}', Type="String")
    env = {params.PRESETS_PARAMETER_VARIABLE: "/tryon/presets"}
    assert params.presets(env)["studio"] == {"steps": 44}
    ssm.put_parameter(Name="/tryon/presets", Value='{"studio": {"steps": 45}}', Type="String", Overwrite=True)
    assert params.presets(env)["studio"] == {"steps": 44}  # a warm function reads it once a minute
    clients.reset_clients()
    assert params.presets(env)["studio"] == {"steps": 45}
    with pytest.raises(RequestError, match=r"^Presets \(SSM parameter /tryon/other\): could not be read"):
        params.presets({params.PRESETS_PARAMETER_VARIABLE: "/tryon/other"})
    ssm.put_parameter(Name="/tryon/bad", Value="{not json", Type="String")
    with pytest.raises(RequestError, match=r"^Presets \(SSM parameter /tryon/bad\): is not valid JSON"):
        params.presets({params.PRESETS_PARAMETER_VARIABLE: "/tryon/bad"})
    clients.reset_clients()
