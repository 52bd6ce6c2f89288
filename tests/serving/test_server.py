"""Local endpoint server: SageMaker container contract and sagemaker-runtime API through boto3.

Server mechanics are tested with a small, real handler module defined here (it decodes an
image field with ``load_image``); the real handlers are tested at the end on tiny checkpoints.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import httpx
import pytest
from PIL import Image
from starlette.testclient import TestClient
from support.images import b64, encode
from support.processes import ctrl_c_reaches_it

from tryon.core import imaging
from tryon.handlers.common import load_image, parse_json_request
from tryon.server import (
    EndpointConfig,
    EndpointLoadError,
    LocalEndpointServer,
    create_app,
    runtime_client,
)

# --------------------------------------------------------------------------------------
# A real handler module for server mechanics.
# --------------------------------------------------------------------------------------
PROBE_MODULE = "tryon_test_probe_handler"
#: model_dir -> Event that model_fn waits for (to observe the "loading" state)
LOAD_GATES: dict[str, threading.Event] = {}
#: two endpoints meet here to prove they run concurrently
BARRIER = threading.Barrier(2, timeout=10)
ENTERED = threading.Event()
#: generous: the machine is shared, and a loaded CPU must not fail a contract test
HTTP_TIMEOUT = 120
RELEASE = threading.Event()


def _model_fn(model_dir, context=None):
    gate = LOAD_GATES.get(str(model_dir))
    if gate is not None:
        gate.wait(30)
    if Path(model_dir).name.startswith("broken"):
        raise FileNotFoundError(f"no weights in {model_dir}")
    return {"model_dir": str(model_dir), "active": 0, "max_active": 0, "calls": 0, "lock": threading.Lock()}


def _input_fn(data, content_type):
    payload = parse_json_request(data, content_type)
    if "image" in payload:
        payload["_image"] = load_image(payload, "image")
    return payload


def _predict_fn(data, model):
    with model["lock"]:
        model["active"] += 1
        model["calls"] += 1
        model["max_active"] = max(model["max_active"], model["active"])
    try:
        time.sleep(float(data.get("sleep", 0)))
        if data.get("barrier"):
            BARRIER.wait()
        if data.get("block"):
            ENTERED.set()
            RELEASE.wait(60)
        if data.get("crash"):
            raise RuntimeError("the probe crashed on purpose")
        img = data.get("_image")
        return {
            "size": list(img.size) if img is not None else None,
            "mode": img.mode if img is not None else None,
            "model_dir": model["model_dir"],
            "max_active": model["max_active"],
        }
    finally:
        with model["lock"]:
            model["active"] -= 1


@pytest.fixture(scope="module", autouse=True)
def _register_probe(probe_handler):
    with probe_handler("probe", PROBE_MODULE, model_fn=_model_fn, input_fn=_input_fn, predict_fn=_predict_fn):
        yield


def http_post(url: str, **kwargs) -> httpx.Response:
    return httpx.post(url, timeout=HTTP_TIMEOUT, **kwargs)


def http_get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=HTTP_TIMEOUT)


def runtime(url: str):
    return runtime_client(url, read_timeout=HTTP_TIMEOUT)


def invoke(client, name: str, payload) -> dict:
    body = payload if isinstance(payload, bytes | str) else json.dumps(payload)
    resp = client.invoke_endpoint(
        EndpointName=name, Body=body, ContentType="application/json", Accept="application/json"
    )
    assert resp["ContentType"] == "application/json"
    assert resp["InvokedProductionVariant"] == "AllTraffic"
    return json.loads(resp["Body"].read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe-models")
    endpoints = [
        EndpointConfig("one", "probe", str(root / "one")),
        EndpointConfig("two", "probe", str(root / "two")),
    ]
    with LocalEndpointServer(endpoints, max_body_bytes=64 * 1024) as srv:
        yield srv


def assert_healthy(url: str) -> None:
    resp = http_get(f"{url}/ping")
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "ready"


# --------------------------------------------------------------------------------------
# Mechanics
# --------------------------------------------------------------------------------------
def test_ping_and_container_contract(server):
    assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"
    ping = http_get(f"{server.url}/ping").json()
    assert ping["status"] == "ready"
    assert set(ping["endpoints"]) == {"one", "two"}
    assert all(ep["state"] == "ready" for ep in ping["endpoints"].values())
    resp = http_post(f"{server.url}/invocations", json={"image": b64(Image.new("RGBA", (40, 30), 128))})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    # the default endpoint is the first one; the image went through load_image (RGBA kept)
    assert body["size"] == [40, 30] and body["mode"] == "RGBA"
    assert body["model_dir"].endswith("one")


def test_default_endpoint_can_be_chosen(tmp_path):
    endpoints = [
        EndpointConfig("a", "probe", str(tmp_path / "a")),
        EndpointConfig("b", "probe", str(tmp_path / "b")),
    ]
    with TestClient(create_app(endpoints, default="b")) as client:
        deadline = time.monotonic() + 10
        while client.get("/ping").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.post("/invocations", json={}).json()["model_dir"].endswith("b")


def test_boto3_runtime_round_trip(server):
    client = runtime(server.url)
    assert invoke(client, "two", {"image": b64(Image.new("RGB", (17, 9), 128))}) == {
        "size": [17, 9],
        "mode": "RGB",
        "model_dir": server.registry.endpoints["two"].config.model_dir,
        "max_active": 1,
    }


def test_request_error_is_400_on_container_route(server):
    resp = http_post(f"{server.url}/invocations", json={"image": "not base64 at all!"})
    assert resp.status_code == 400
    body = resp.json()
    assert body["field"] == "image" and body["error"].startswith("image:")
    resp = http_post(
        f"{server.url}/invocations", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 400 and resp.json()["field"] == "body"
    assert_healthy(server.url)


def test_request_error_is_model_error_through_boto3(server):
    client = runtime(server.url)
    with pytest.raises(client.exceptions.ModelError) as info:
        invoke(client, "one", {"image": "not base64 at all!"})
    err = info.value.response
    assert err["Error"]["Code"] == "ModelError"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert err["OriginalStatusCode"] == 400
    assert err["OriginalMessage"].startswith("image:")
    assert "image:" in err["Error"]["Message"] and "(400)" in err["Error"]["Message"]
    assert_healthy(server.url)


def test_handler_fault_is_500_without_traceback(server, caplog):
    caplog.set_level(logging.ERROR, logger="tryon.server")
    resp = http_post(f"{server.url}/invocations", json={"crash": True})
    assert resp.status_code == 500
    request_id = resp.json()["request_id"]
    assert resp.headers["x-amzn-requestid"] == request_id
    assert resp.json()["error"] == (
        f"the model handler failed unexpectedly; the server log has the details (request {request_id})"
    )
    # neither the traceback nor the exception's class or message reach the client
    assert "Traceback" not in resp.text and "RuntimeError" not in resp.text and "purpose" not in resp.text
    logged = [rec for rec in caplog.records if rec.exc_info and request_id in rec.getMessage()]
    assert logged and "crashed on purpose" in str(logged[0].exc_info[1])  # ... they go to the log
    client = runtime(server.url)
    with pytest.raises(client.exceptions.ModelError) as info:
        invoke(client, "two", {"crash": True})
    err = info.value.response
    assert err["OriginalStatusCode"] == 500
    assert err["OriginalMessage"].startswith("the model handler failed unexpectedly")
    assert err["ResponseMetadata"]["RequestId"] in err["OriginalMessage"]
    assert "RuntimeError" not in err["Error"]["Message"]
    assert_healthy(server.url)


def test_unknown_endpoint_is_validation_error(server):
    client = runtime(server.url)
    with pytest.raises(client.exceptions.ValidationError) as info:
        invoke(client, "nope", {})
    assert info.value.response["Error"]["Message"] == "Endpoint nope not found."
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert_healthy(server.url)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"[1, 2]", "body"),
        (b"\xff\xfe not utf8", "body"),
        ({"image": imaging.b64encode(b"GIF89a" + b"\0" * 64)}, "image"),
        ({"image": imaging.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)}, "image"),
        ({"image": "s3://bucket-only"}, "image"),
    ],
)
def test_bad_inputs_leave_server_healthy(server, payload, field):
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    resp = http_post(
        f"{server.url}/invocations", content=content, headers={"content-type": "application/json"}
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["field"] == field
    assert_healthy(server.url)


def test_content_type_and_accept_are_checked(server):
    resp = http_post(f"{server.url}/invocations", content=b"{}", headers={"content-type": "text/csv"})
    assert resp.status_code == 400 and resp.json()["field"] == "content_type"
    resp = http_post(f"{server.url}/invocations", json={}, headers={"accept": "image/png"})
    assert resp.status_code == 400 and resp.json()["field"] == "accept"
    assert_healthy(server.url)


def test_body_limit_from_content_length_and_stream(server):
    big = json.dumps({"pad": "x" * 100_000}).encode()
    resp = http_post(f"{server.url}/invocations", content=big, headers={"content-type": "application/json"})
    assert resp.status_code == 413
    assert resp.json()["error"] == f"body: is {len(big)} bytes; the limit is 65536 bytes"
    assert resp.json()["field"] == "body"

    def chunks():  # no Content-Length: chunked transfer, counted while reading
        for _ in range(10):
            yield b"x" * 10_000

    resp = http_post(
        f"{server.url}/invocations", content=chunks(), headers={"content-type": "application/json"}
    )
    assert resp.status_code == 413 and "the limit is 65536 bytes" in resp.json()["error"]

    client = runtime(server.url)
    with pytest.raises(client.exceptions.ModelError) as info:
        invoke(client, "one", big)
    assert info.value.response["OriginalStatusCode"] == 413
    assert "65536 bytes" in info.value.response["OriginalMessage"]
    assert_healthy(server.url)


def test_one_predict_at_a_time_per_endpoint(server):
    client = runtime(server.url)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: invoke(client, "one", {"sleep": 0.05}), range(8)))
    assert [r["max_active"] for r in results] and max(r["max_active"] for r in results) == 1
    assert server.registry.endpoints["one"].model["max_active"] == 1
    assert_healthy(server.url)


def test_different_endpoints_run_concurrently(server):
    client = runtime(server.url)
    with ThreadPoolExecutor(2) as pool:
        # each predict waits at a two-party barrier: it only passes if both run at once
        results = list(pool.map(lambda name: invoke(client, name, {"barrier": True}), ["one", "two"]))
    assert len(results) == 2


def test_event_loop_stays_responsive_during_predict(server):
    ENTERED.clear()
    RELEASE.clear()
    client = runtime(server.url)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(invoke, client, "two", {"block": True})
        assert ENTERED.wait(10)
        try:
            assert_healthy(server.url)
            assert not future.done()  # /ping was answered while the predict was still running
        finally:
            RELEASE.set()
        assert future.result(timeout=60)["size"] is None


def test_one_log_line_per_request(server, caplog):
    caplog.set_level(logging.INFO, logger="tryon.server")
    invoke(runtime(server.url), "one", {})
    lines = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "tryon.server"]
    assert len(lines) == 1
    assert lines[0]["endpoint"] == "one" and lines[0]["status"] == 200 and lines[0]["ms"] >= 0


# --------------------------------------------------------------------------------------
# Loading states and configuration errors
# --------------------------------------------------------------------------------------
def test_loading_state_is_503_and_model_not_ready(tmp_path):
    model_dir = str(tmp_path / "slow")
    gate = LOAD_GATES[model_dir] = threading.Event()
    try:
        with LocalEndpointServer([EndpointConfig("slow", "probe", model_dir)], wait_for_models=False) as srv:
            resp = http_get(f"{srv.url}/ping")
            assert resp.status_code == 503 and resp.json()["status"] == "loading"
            assert http_post(f"{srv.url}/invocations", json={}).status_code == 503
            client = runtime(srv.url)
            with pytest.raises(client.exceptions.ModelNotReadyException) as info:
                invoke(client, "slow", {})
            assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
            gate.set()
            assert srv.registry.loaded.wait(10)
            assert_healthy(srv.url)
            assert invoke(client, "slow", {})["model_dir"] == model_dir
    finally:
        gate.set()
        LOAD_GATES.pop(model_dir, None)


def test_failed_load_reports_errors_and_does_not_hang(tmp_path):
    endpoints = [
        EndpointConfig("good", "probe", str(tmp_path / "good")),
        EndpointConfig("bad", "probe", str(tmp_path / "broken")),
    ]
    with (
        pytest.raises(EndpointLoadError, match=r"endpoint bad failed to load: FileNotFoundError: no weights"),
        LocalEndpointServer(endpoints, load_timeout=30),
    ):
        pass
    with LocalEndpointServer(endpoints, wait_for_models=False) as srv:
        assert srv.registry.loaded.wait(10)
        ping = http_get(f"{srv.url}/ping")
        assert ping.status_code == 500
        assert ping.json()["status"] == "failed" and "no weights" in ping.json()["error"]
        resp = http_post(f"{srv.url}/endpoints/bad/invocations", json={})
        assert resp.status_code == 424 and resp.headers["x-amzn-errortype"] == "ModelError"
        client = runtime(srv.url)
        with pytest.raises(client.exceptions.ModelError) as info:
            invoke(client, "bad", {})
        assert info.value.response["OriginalStatusCode"] == 500
        assert "failed to load" in info.value.response["OriginalMessage"]
        assert invoke(client, "good", {})["model_dir"].endswith("good")  # the others still serve


def test_configuration_errors():
    with pytest.raises(ValueError, match="unknown kind 'nope'; known: clipseg"):
        create_app([EndpointConfig("x", "nope", "/tmp")])
    with pytest.raises(ValueError, match="used twice"):
        create_app([EndpointConfig("x", "probe", "/a"), EndpointConfig("x", "probe", "/b")])
    with pytest.raises(ValueError, match="default endpoint 'z'"):
        create_app([EndpointConfig("x", "probe", "/a")], default="z")
    with pytest.raises(ValueError, match="at least one"):
        create_app([])


# --------------------------------------------------------------------------------------
# Real handlers on the tiny checkpoints
# --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_clipseg_through_boto3_with_s3_input(tiny_models):
    from moto import mock_aws

    from tryon.handlers import clipseg

    photo = encode(Image.new("RGB", (50, 34), (180, 60, 60)), "JPEG")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="inputs")
        s3.put_object(Bucket="inputs", Key="inputs/look.jpg", Body=photo)
        request = {
            "image": "s3://inputs/inputs/look.jpg",
            "queries": ["shirt", "dress"],
            "negative_queries": ["face"],
        }
        with LocalEndpointServer([EndpointConfig("clipseg", "clipseg", str(tiny_models["clipseg"]))]) as srv:
            client = runtime(srv.url)
            with ThreadPoolExecutor(4) as pool:
                outs = list(pool.map(lambda _: invoke(client, "clipseg", request), range(4)))
            with pytest.raises(client.exceptions.ModelError) as info:
                invoke(client, "clipseg", {"image": request["image"], "query": "shirt", "threshold": 2})
            assert info.value.response["OriginalStatusCode"] == 400
            assert info.value.response["OriginalMessage"].startswith("threshold:")
            with pytest.raises(client.exceptions.ModelError) as info:
                invoke(client, "clipseg", {"image": "s3://inputs/missing.png", "query": "shirt"})
            assert info.value.response["OriginalMessage"].startswith("image:")
            assert_healthy(srv.url)
        # the same request in-process gives the same mask: the server adds nothing, loses nothing
        model = clipseg.model_fn(str(tiny_models["clipseg"]))
        direct = json.loads(
            clipseg.output_fn(
                clipseg.predict_fn(clipseg.input_fn(json.dumps(request), "application/json"), model),
                "application/json",
            )
        )
    first = outs[0]
    mask = imaging.decode_image(imaging.b64decode(first["mask"], field="mask"), field="mask")
    assert mask.mode == "L" and mask.size == (50, 34)
    assert 0.0 <= first["coverage"] <= 1.0
    assert set(first["scores"]) == {"shirt", "dress"} and set(first["negative_scores"]) == {"face"}
    assert all(o["mask"] == first["mask"] and o["scores"] == first["scores"] for o in outs)
    assert direct["mask"] == first["mask"] and direct["coverage"] == first["coverage"]


# --------------------------------------------------------------------------------------
# tryon serve
# --------------------------------------------------------------------------------------
def test_endpoint_spec_syntax(tiny_models):
    from tryon.cli.serve import parse_endpoint_spec

    clip = str(tiny_models["clipseg"])
    assert parse_endpoint_spec(f"clipseg={clip}") == EndpointConfig("clipseg", "clipseg", clip)
    up = str(tiny_models["sd-x4-upscaler"])
    assert parse_endpoint_spec(f"big=sd_upscale:{up}") == EndpointConfig("big", "sd_upscale", up)
    with pytest.raises(ValueError, match="cannot tell the kind of 'masks'; write masks=KIND:DIR"):
        parse_endpoint_spec(f"masks={clip}")
    with pytest.raises(ValueError, match="model folder /no/such/dir does not exist"):
        parse_endpoint_spec("clipseg=/no/such/dir")
    with pytest.raises(ValueError, match="expected NAME=KIND:DIR or NAME=DIR"):
        parse_endpoint_spec("clipseg")


def test_serve_cli_errors(tiny_models, capsys):
    from tryon.cli import run

    assert run(["serve"]) == 2
    assert "nothing to serve" in capsys.readouterr().err
    assert run(["serve", "-e", f"masks=segment:{tiny_models['clipseg']}"]) == 2
    err = capsys.readouterr().err
    assert "cannot tell the kind of 'masks'" in err and "Traceback" not in err
    assert run(["serve", "-e", f"clipseg={tiny_models['clipseg']}", "--default", "nope"]) == 2
    assert "default endpoint 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_cli_runs_until_interrupted(tiny_models, tmp_path):
    import signal
    import subprocess

    cmd = [
        sys.executable,
        "-c",
        "from tryon.cli import main; main()",
        "serve",
        "-e",
        f"clipseg={tiny_models['clipseg']}",
        "-e",
        f"up=sd_upscale:{tiny_models['sd-x4-upscaler']}",
        "--port",
        "0",
        "--default",
        "up",
    ]
    env = {**__import__("os").environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
        preexec_fn=ctrl_c_reaches_it,
    )
    lines: list[str] = []
    try:
        url = None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("serving on "):
                url = line.split()[2]
            if line.startswith("ready."):
                break
        assert url and url.startswith("http://127.0.0.1:"), "".join(lines)
        assert_healthy(url)
        out = invoke(
            runtime(url), "up", {"image": b64(Image.new("RGB", (12, 10), 128)), "steps": 2, "seed": 5}
        )
        assert out["seed"] == 5
        upscaled = imaging.decode_image(imaging.b64decode(out["image"], field="image"), field="image")
        assert upscaled.size == (48, 40)
        resp = http_post(
            f"{url}/invocations", json={"image": b64(Image.new("RGB", (12, 10), 128)), "steps": 2, "seed": 5}
        )
        assert resp.status_code == 200 and resp.json()["image"] == out["image"]  # --default up
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        lines.append(proc.stdout.read())  # not communicate(): it would skip what the loop buffered
        assert proc.returncode == 0, "".join(lines)
        text = "".join(lines)
        assert 'EndpointName="clipseg"' in text and "stopping" in text
        assert '"endpoint": "up", "status": 200' in text  # the request log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
