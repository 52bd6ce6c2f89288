"""The local server's inference components: one endpoint, several models, routed by boto3's
``InferenceComponentName`` and refused the way SageMaker refuses them (unknown component, a
missing or needless header, no copy running), each component with its own copies."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from tryon.server import EndpointConfig, LocalEndpointServer, runtime_client
from tryon.server.registry import NO_CAPACITY_MESSAGE, ModelRegistry

PROBE_MODULE = "tryon_test_component_probe"


def _model_fn(model_dir, context=None):
    return {"model_dir": str(model_dir), "active": 0, "max_active": 0, "lock": threading.Lock()}


def _input_fn(data, content_type):
    return json.loads(data)


#: model folder -> predicts running now / the most at once, over all the copies of that model
RUNNING: dict[str, int] = {}
PEAK: dict[str, int] = {}
RUNNING_LOCK = threading.Lock()


def _predict_fn(data, model):
    folder = model["model_dir"]
    with model["lock"], RUNNING_LOCK:
        model["active"] += 1
        model["max_active"] = max(model["max_active"], model["active"])
        RUNNING[folder] = RUNNING.get(folder, 0) + 1
        PEAK[folder] = max(PEAK.get(folder, 0), RUNNING[folder])
    try:
        time.sleep(float(data.get("sleep", 0)))
        return {"model_dir": folder, "echo": data.get("echo")}
    finally:
        with model["lock"], RUNNING_LOCK:
            model["active"] -= 1
            RUNNING[folder] -= 1


@pytest.fixture(scope="module", autouse=True)
def _register_probe(probe_handler):
    with probe_handler("probe", PROBE_MODULE, model_fn=_model_fn, input_fn=_input_fn, predict_fn=_predict_fn):
        yield


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("component-models")
    configs = [
        EndpointConfig("shared", "probe", str(root / "a"), component="shared-a"),
        EndpointConfig("shared", "probe", str(root / "b"), component="shared-b", copies=2),
        EndpointConfig("shared", "probe", str(root / "z"), component="shared-z", copies=0),
        EndpointConfig("alone", "probe", str(root / "alone")),
    ]
    with LocalEndpointServer(configs) as running:
        yield running


def _invoke(client, endpoint: str, component: str | None = None, **payload):
    kwargs = {"InferenceComponentName": component} if component else {}
    response = client.invoke_endpoint(
        EndpointName=endpoint, ContentType="application/json", Body=json.dumps(payload), **kwargs
    )
    return json.loads(response["Body"].read())


def _refusal(client, endpoint: str, component: str | None = None) -> ClientError:
    with pytest.raises(ClientError) as info:
        _invoke(client, endpoint, component)
    error = info.value.response
    assert error["Error"]["Code"] == "ValidationError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    return info.value


def test_components_are_routed_by_name(server):
    client = runtime_client(server.url)
    assert _invoke(client, "shared", "shared-a", echo=1) == {
        "model_dir": server.registry.endpoints["shared-a"].config.model_dir,
        "echo": 1,
    }
    assert _invoke(client, "shared", "shared-b", echo=2)["model_dir"].endswith("/b")
    assert _invoke(client, "alone", echo=3)["model_dir"].endswith("/alone")


def test_unknown_component_is_refused_naming_what_the_endpoint_hosts(server):
    client = runtime_client(server.url)
    message = str(_refusal(client, "shared", "shared-x"))
    assert "Inference component shared-x not found on endpoint shared" in message
    assert "shared-a, shared-b, shared-z" in message
    # a component of one endpoint is not reached through another, nor as an endpoint of its own
    assert "Endpoint shared-a not found" in str(_refusal(client, "shared-a"))
    assert "not allowed for endpoints to which you dont plan" in str(_refusal(client, "alone", "shared-a"))


def test_an_endpoint_with_components_needs_the_component_name(server):
    message = str(_refusal(runtime_client(server.url), "shared"))
    assert "Inference Component Name header is required" in message


def test_a_component_scaled_to_zero_answers_no_capacity(server):
    client = runtime_client(server.url)
    served = server.registry.endpoints["shared-z"]
    before = served.no_capacity_failures
    assert NO_CAPACITY_MESSAGE in str(_refusal(client, "shared", "shared-z"))
    assert served.no_capacity_failures == before + 1
    server.registry.scale("shared-z", 1)
    try:
        assert _invoke(client, "shared", "shared-z", echo="up")["echo"] == "up"
    finally:
        server.registry.scale("shared-z", 0)


def test_each_component_runs_as_many_requests_at_once_as_it_has_copies(server):
    client = runtime_client(server.url)
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda c: _invoke(client, "shared", c, sleep=0.3), ["shared-a", "shared-b"] * 3))
    a = server.registry.endpoints["shared-a"]
    b = server.registry.endpoints["shared-b"]
    assert max(m["max_active"] for m in a.models) == 1 and len(a.models) == 1
    assert len(b.models) == 2 and all(m["max_active"] == 1 for m in b.models)  # each copy one at a time


def test_a_component_runs_only_as_many_requests_at_once_as_copies_run(server):
    client = runtime_client(server.url)
    folder = server.registry.endpoints["shared-b"].config.model_dir

    def burst() -> int:
        PEAK[folder] = 0
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: _invoke(client, "shared", "shared-b", sleep=0.2), range(4)))
        return PEAK[folder]

    server.registry.scale("shared-b", 1)  # two copies loaded, one running
    try:
        assert burst() == 1
    finally:
        server.registry.scale("shared-b", 2)
    assert burst() <= 2


def test_scale_out_from_zero_follows_the_no_capacity_alarm(tmp_path):
    config = EndpointConfig(
        "wake", "probe", str(tmp_path / "w"), component="wake-up", copies=0, scale_from_zero_seconds=0.5
    )
    with LocalEndpointServer([config]) as running:
        client = runtime_client(running.url)
        assert NO_CAPACITY_MESSAGE in str(_refusal(client, "wake", "wake-up"))
        deadline = time.monotonic() + 30
        while running.registry.endpoints["wake-up"].copies == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _invoke(client, "wake", "wake-up", echo="awake")["echo"] == "awake"


@pytest.mark.parametrize(
    ("configs", "needle"),
    [
        (
            [EndpointConfig("e", "probe", "m", component="c", mode="async")],
            "inference components serve real-time endpoints only",
        ),
        (
            [EndpointConfig("e", "probe", "m"), EndpointConfig("e", "probe", "m", component="c")],
            "cannot both host inference components and a model",
        ),
        (
            [EndpointConfig("e", "probe", "m", component="c"), EndpointConfig("e", "probe", "m")],
            "cannot both host inference components and a model",
        ),
        (
            [
                EndpointConfig("e", "probe", "m", component="c"),
                EndpointConfig("f", "probe", "m", component="c"),
            ],
            "component name 'c' is used twice",
        ),
    ],
)
def test_configurations_sagemaker_would_refuse_are_refused(configs, needle):
    with pytest.raises(ValueError, match=needle):
        ModelRegistry(configs)


def test_tryon_serve_shared_makes_the_real_time_models_components():
    from tryon.cli.serve import apply_shared

    configs = [
        EndpointConfig("clipseg", "clipseg", "c", mode="serverless"),
        EndpointConfig("sd_inpaint", "sd_inpaint", "i"),
        EndpointConfig("sd_upscale", "sd_upscale", "u"),
    ]
    shared = apply_shared(configs, "tryon-shared")
    assert [(c.name, c.component) for c in shared] == [
        ("clipseg", None),  # serverless keeps its own endpoint
        ("tryon-shared", "tryon-shared-sd-inpaint"),
        ("tryon-shared", "tryon-shared-sd-upscale"),
    ]
    assert apply_shared(configs, "") == configs
    with pytest.raises(ValueError, match="no real-time endpoint to host"):
        apply_shared(configs[:1], "tryon-shared")
