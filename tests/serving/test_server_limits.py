"""The local server enforces SageMaker's per-mode limits and survives misbehaving clients.

A small real handler module (defined here) stands in for the models: it can hold a request
for a while (checking the cancellation token as a diffusers step callback would), pad its
response to a given size, and report what happened to abandoned work.
"""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time

import httpx
import pytest
from botocore.exceptions import ClientError

from tryon.core.errors import RequestError
from tryon.core.kinds import MODE_LIMITS
from tryon.handlers import cancellation
from tryon.handlers.common import MAX_JSON_DEPTH, parse_json_request
from tryon.server import TIMEOUT_MESSAGE, EndpointConfig, LocalEndpointServer, create_app, runtime_client

PROBE_MODULE = "tryon_test_limits_probe"
HTTP_TIMEOUT = 60
REALTIME = MODE_LIMITS["realtime"].max_request_bytes
SERVERLESS = MODE_LIMITS["serverless"].max_request_bytes


def _model_fn(model_dir, context=None):
    return {"started": threading.Event(), "stopped": [], "finished": [], "lock": threading.Lock()}


def _input_fn(data, content_type):
    return parse_json_request(data, content_type)


def _predict_fn(data, model):
    hold = float(data.get("hold", 0))
    if hold:
        model["started"].set()
        deadline = time.monotonic() + hold
        try:
            while time.monotonic() < deadline:
                cancellation.raise_if_cancelled()  # what the pipelines' step callbacks do
                time.sleep(0.01)
        except cancellation.Cancelled as exc:
            with model["lock"]:
                model["stopped"].append(str(exc))
            raise
        with model["lock"]:
            model["finished"].append(hold)
    return {"pad": "x" * int(data.get("pad", 0))}


@pytest.fixture(scope="module", autouse=True)
def _register_probe(probe_handler):
    with probe_handler(
        "limits_probe", PROBE_MODULE, model_fn=_model_fn, input_fn=_input_fn, predict_fn=_predict_fn
    ):
        yield


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("limits-probe")
    endpoints = [
        EndpointConfig("rt", "limits_probe", str(root / "rt"), max_invocation_seconds=1.0),
        EndpointConfig("slow", "limits_probe", str(root / "slow")),
        EndpointConfig("sl", "limits_probe", str(root / "sl"), mode="serverless"),
    ]
    with LocalEndpointServer(endpoints, body_read_timeout=1.0) as srv:
        yield srv


def model(server, name: str) -> dict:
    return server.registry.endpoints[name].model


def runtime(url: str):
    return runtime_client(url, read_timeout=HTTP_TIMEOUT)


def invoke(client, name: str, payload) -> dict:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    resp = client.invoke_endpoint(EndpointName=name, Body=body, ContentType="application/json")
    return json.loads(resp["Body"].read())


def post(url: str, payload=None, content: bytes | None = None) -> httpx.Response:
    if content is None:
        content = json.dumps(payload).encode()
    headers = {"content-type": "application/json"}
    return httpx.post(f"{url}/invocations", content=content, headers=headers, timeout=HTTP_TIMEOUT)


def padded(size: int) -> bytes:
    """A JSON body of exactly ``size`` bytes."""
    head = b'{"filler": "'
    return head + b"x" * (size - len(head) - 2) + b'"}'


def assert_healthy(url: str) -> None:
    resp = httpx.get(f"{url}/ping", timeout=HTTP_TIMEOUT)
    assert resp.status_code == 200 and resp.json()["status"] == "ready", resp.text


# --------------------------------------------------------------------------------------
# Request size
# --------------------------------------------------------------------------------------
def test_realtime_request_over_6_mib_is_refused_as_sagemaker_does(server):
    client = runtime(server.url)
    assert invoke(client, "slow", padded(REALTIME)) == {"pad": ""}  # exactly at the limit: fine
    with pytest.raises(ClientError) as info:
        invoke(client, "slow", padded(REALTIME + 1))
    err = info.value.response
    # SageMaker's front end answers a bare 413 itself; botocore names the error by the status
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 413 and err["Error"]["Code"] == "413"
    assert err["Error"]["Message"].startswith(f"HTTP content length exceeded {REALTIME} bytes.")
    assert f"is {REALTIME + 1} bytes" in err["Error"]["Message"]
    # the container contract: 413 naming the field and the limit
    resp = post(server.url, content=padded(REALTIME + 1))
    assert resp.status_code == 413 and resp.json()["field"] == "body"
    assert f"the limit is {REALTIME} bytes for realtime endpoints" in resp.json()["error"]
    assert_healthy(server.url)


def test_serverless_request_over_4_mib_is_a_validation_error(server):
    client = runtime(server.url)
    body = padded(SERVERLESS + 1)
    assert invoke(client, "slow", body) == {"pad": ""}  # a real-time endpoint takes it
    with pytest.raises(client.exceptions.ValidationError) as info:
        invoke(client, "sl", body)
    err = info.value.response
    request_id = err["ResponseMetadata"]["RequestId"]
    assert err["Error"]["Message"].startswith(f"Request {request_id} has oversize body.")
    assert f"the limit is {SERVERLESS} bytes for serverless endpoints" in err["Error"]["Message"]


def test_chunked_body_over_the_limit_is_counted(server):
    def chunks():
        for _ in range(7):
            yield b"x" * (1024 * 1024)

    resp = httpx.post(
        f"{server.url}/invocations",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=HTTP_TIMEOUT,
    )
    assert resp.status_code == 413 and f"is {7 * 1024 * 1024} bytes" in resp.json()["error"]


# --------------------------------------------------------------------------------------
# Response size
# --------------------------------------------------------------------------------------
def test_response_over_the_mode_limit_is_a_model_error(server):
    client = runtime(server.url)
    pad = SERVERLESS  # the JSON around it makes the response just over 4 MiB
    assert len(invoke(client, "slow", {"pad": pad})["pad"]) == pad  # real-time allows 6 MiB
    with pytest.raises(client.exceptions.ModelError) as info:
        invoke(client, "sl", {"pad": pad})
    err = info.value.response
    assert err["OriginalStatusCode"] == 500
    assert err["OriginalMessage"].startswith(
        f"response: is {pad + 11} bytes; the limit is {SERVERLESS} bytes"
    )
    assert "serverless" in err["OriginalMessage"]
    resp = post(server.url, {"pad": REALTIME})  # /invocations -> "rt", a real-time endpoint
    assert resp.status_code == 500 and f"the limit is {REALTIME} bytes" in resp.json()["error"]
    assert_healthy(server.url)


# --------------------------------------------------------------------------------------
# Invocation time
# --------------------------------------------------------------------------------------
def test_invocation_time_limit_answers_like_sagemaker_and_stops_the_work(server):
    client = runtime(server.url)
    rt = model(server, "rt")
    start = time.monotonic()
    with pytest.raises(client.exceptions.ModelError) as info:
        invoke(client, "rt", {"hold": 30})
    assert time.monotonic() - start < 15
    err = info.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert err["OriginalStatusCode"] == 0
    assert err["Error"]["Message"].startswith(
        f'Received server error (0) from primary with message "{TIMEOUT_MESSAGE}'
    )
    assert "The limit is 1 s for realtime endpoints." in err["OriginalMessage"]
    # the abandoned predict stopped at its next step check, and the endpoint serves again at once
    deadline = time.monotonic() + 10
    while not rt["stopped"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rt["stopped"] == ["the invocation time limit passed"]
    start = time.monotonic()
    assert invoke(client, "rt", {}) == {"pad": ""}
    assert time.monotonic() - start < 5
    # the container route: 504 with the same message
    resp = post(server.url, {"hold": 30})
    assert resp.status_code == 504 and resp.json()["error"].startswith(TIMEOUT_MESSAGE)


def test_default_time_limit_is_the_modes(tmp_path):
    cfg = EndpointConfig("x", "limits_probe", str(tmp_path))
    assert cfg.mode == "realtime" and cfg.limits.max_invocation_seconds == 60.0
    assert EndpointConfig("x", "limits_probe", str(tmp_path), mode="async").limits == MODE_LIMITS["async"]
    tight = EndpointConfig("x", "limits_probe", str(tmp_path), mode="serverless", max_invocation_seconds=2)
    assert tight.limits.max_invocation_seconds == 2 and tight.limits.max_request_bytes == SERVERLESS
    with pytest.raises(ValueError, match="endpoint 'x': unknown endpoint mode 'batch'"):
        create_app([EndpointConfig("x", "limits_probe", "/a", mode="batch")])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_invocation_seconds must be > 0"):
        create_app([EndpointConfig("x", "limits_probe", "/a", max_invocation_seconds=0)])


def test_ping_reports_each_endpoints_mode(server):
    endpoints = httpx.get(f"{server.url}/ping", timeout=HTTP_TIMEOUT).json()["endpoints"]
    assert {name: ep["mode"] for name, ep in endpoints.items()} == {
        "rt": "realtime",
        "slow": "realtime",
        "sl": "serverless",
    }


# --------------------------------------------------------------------------------------
# Misbehaving clients
# --------------------------------------------------------------------------------------
def raw_request(server, path: str, body: bytes, content_length: int | None = None) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=10)
    length = len(body) if content_length is None else content_length
    head = (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def test_short_body_times_out_instead_of_hanging(server):
    sock = raw_request(server, "/invocations", b'{"pad"', content_length=100)
    try:
        start = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = sock.recv(65536)  # a hang raises socket.timeout after 10 s
            if not data:
                break
            answer += data
        assert time.monotonic() - start < 8
    finally:
        sock.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in head.lower()
    error = json.loads(body)
    assert error["field"] == "body"
    assert error["error"] == (
        "body: 6 bytes of the 100 bytes its Content-Length announced arrived in 1 s, "
        "the time limit for sending a body"
    )
    assert_healthy(server.url)


def test_work_of_a_client_that_disconnects_is_abandoned(server):
    slow = model(server, "slow")
    slow["started"].clear()
    sock = raw_request(server, "/endpoints/slow/invocations", json.dumps({"hold": 30}).encode())
    try:
        assert slow["started"].wait(10)
    finally:
        sock.close()
    deadline = time.monotonic() + 10
    while not slow["stopped"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert slow["stopped"] == ["the client disconnected"]
    start = time.monotonic()
    assert invoke(runtime(server.url), "slow", {}) == {"pad": ""}  # not queued behind 30 s of work
    assert time.monotonic() - start < 5
    assert slow["finished"] == []


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (b'{"query": "\\ud800"}', "query", "is not valid Unicode text (lone surrogate '\\ud800' at index 0)"),
        (b'{"queries": ["a shirt", "x\\udfff"]}', "queries[1]", "lone surrogate '\\udfff' at index 1"),
        (b'{"\\ud800": 1}', "body", "has a key that is not valid Unicode text"),
        (b'{"queries": ' + b"[" * 1000 + b"]" * 1000 + b"}", "body", f"nests deeper than {MAX_JSON_DEPTH}"),
        (b'{"adapter": ' + b"[" * 100 + b"]" * 100 + b"}", "adapter", f"nests deeper than {MAX_JSON_DEPTH}"),
    ],
)
def test_malformed_text_and_deep_json_are_client_errors(server, body, field, message):
    resp = post(server.url, content=body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["field"] == field and message in resp.json()["error"]
    assert "Error" not in resp.text  # no RecursionError / UnicodeEncodeError / TypeError
    client = runtime(server.url)
    with pytest.raises(client.exceptions.ModelError) as info:
        invoke(client, "slow", body)
    assert info.value.response["OriginalStatusCode"] == 400
    assert info.value.response["OriginalMessage"].startswith(f"{field}:")
    assert_healthy(server.url)


def test_parse_json_request_checks_mappings_too():
    assert parse_json_request({"prompt": "café"}, None) == {"prompt": "café"}
    with pytest.raises(RequestError) as info:
        parse_json_request({"prompt": "\ud800"}, None)
    assert info.value.field == "prompt"
    deep: object = 0
    for _ in range(MAX_JSON_DEPTH - 1):  # with the request object itself: MAX_JSON_DEPTH levels
        deep = [deep]
    parse_json_request({"mask": deep}, None)  # exactly at the limit
    with pytest.raises(RequestError, match="mask: nests deeper"):
        parse_json_request({"mask": [deep]}, None)


@pytest.mark.parametrize("kind", ["clipseg", "sd_inpaint", "sd_upscale"])
def test_real_handlers_refuse_surrogates_before_their_models(kind):
    import importlib

    module = importlib.import_module(f"tryon.handlers.{kind}")
    text_field = "queries" if kind == "clipseg" else "prompt"
    body = json.dumps({text_field: "\ud800"}).encode()  # json.dumps writes the \\ud800 escape
    with pytest.raises(RequestError) as info:
        module.input_fn(body, "application/json")
    assert info.value.field == text_field


def test_keep_alive_requests_do_not_wait_for_delayed_acks(server):
    # With TCP_NODELAY off, each request after the first waited ~40 ms (Nagle + delayed ACK).
    times = []
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as client:
        for _ in range(21):
            start = time.perf_counter()
            resp = client.post("/invocations", content=b"{}", headers={"content-type": "application/json"})
            times.append(time.perf_counter() - start)
            assert resp.status_code == 200
    assert statistics.median(times[1:]) < 0.02, [round(t * 1000, 1) for t in times]


# --------------------------------------------------------------------------------------
# tryon serve --mode
# --------------------------------------------------------------------------------------
def test_serve_mode_option(tiny_models, capsys):
    from tryon.cli import run
    from tryon.cli.serve import apply_modes

    configs = [EndpointConfig("a", "limits_probe", "/a"), EndpointConfig("b", "limits_probe", "/b")]
    assert [c.mode for c in apply_modes(configs, [])] == ["realtime", "realtime"]
    assert [c.mode for c in apply_modes(configs, ["serverless"])] == ["serverless", "serverless"]
    assert [c.mode for c in apply_modes(configs, ["async", "b=serverless"])] == ["async", "serverless"]
    with pytest.raises(ValueError, match="--mode 'c=serverless': no endpoint is named 'c'; served: a, b"):
        apply_modes(configs, ["c=serverless"])
    with pytest.raises(ValueError, match="--mode 'a=batch': unknown endpoint mode 'batch'; known: realtime"):
        apply_modes(configs, ["a=batch"])
    assert run(["serve", "-e", f"clipseg={tiny_models['clipseg']}", "--mode", "clipseg=fast"]) == 2
    err = capsys.readouterr().err
    assert "unknown endpoint mode 'fast'" in err and "Traceback" not in err


# --------------------------------------------------------------------------------------
# The real pipelines stop at the next step once their invocation is abandoned
# --------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "folder", "body"),
    [
        ("sd_inpaint", "sd-inpaint", {"prompt": "a shirt", "steps": 3, "seed": 1, "mask": "box"}),
        ("sd_upscale", "sd-x4-upscaler", {"prompt": "a shirt", "steps": 3, "seed": 1}),
    ],
)
def test_pipelines_consult_the_cancellation_token(tiny_models, kind, folder, body):
    import importlib

    from PIL import Image

    from tryon.core import imaging

    module = importlib.import_module(f"tryon.handlers.{kind}")
    loaded = module.model_fn(str(tiny_models[folder]))
    body = {**body, "image": imaging.b64encode(imaging.encode_png(Image.new("RGB", (32, 32), (200, 40, 40))))}
    if body.get("mask") == "box":
        mask = Image.new("L", (32, 32), 0)
        mask.paste(255, (8, 8, 24, 24))
        body["mask"] = imaging.b64encode(imaging.encode_png(mask))
    data = module.input_fn(json.dumps(body).encode(), "application/json")
    token = cancellation.CancelToken()
    token.cancel("the client disconnected")
    with cancellation.bound(token), pytest.raises(cancellation.Cancelled, match="the client disconnected"):
        module.predict_fn(data, loaded)
    assert module.predict_fn(data, loaded)  # with no token bound, the same request runs to the end
