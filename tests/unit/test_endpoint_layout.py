"""The endpoint layouts: which kinds are inference components, what they need, what fits one
instance, and how the workflow reads SageMaker's "no capacity" answer."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tryon.core import kinds, schema
from tryon.workflow import endpoints, settings
from tryon.workflow.step_errors import EndpointNoCapacity, EndpointNotFound, no_capacity_wait_seconds


def test_only_real_time_kinds_are_components_and_only_in_the_shared_layout():
    realtime = dict.fromkeys(kinds.KINDS, "realtime")
    assert kinds.component_kinds("separate", realtime) == ()
    assert kinds.component_kinds("shared", realtime) == kinds.KINDS
    mixed = {"clipseg": "serverless", "sd_inpaint": "realtime", "sd_upscale": "async"}
    assert kinds.component_kinds("shared", mixed) == ("sd_inpaint",)
    with pytest.raises(ValueError, match="unknown endpoint layout 'pooled'"):
        kinds.component_kinds("pooled", realtime)


def test_component_names_and_variables_are_the_schema_rows():
    assert schema.kind("sd_inpaint").component_name("tryon-shared") == "tryon-shared-sd-inpaint"
    assert schema.kind("clipseg").component_name("x") == "x-clipseg"
    assert settings.COMPONENT_VARIABLES == {
        "clipseg": "TRYON_CLIPSEG_COMPONENT",
        "sd_inpaint": "TRYON_INPAINT_COMPONENT",
        "sd_upscale": "TRYON_UPSCALE_COMPONENT",
    }


def test_what_fits_one_instance(monkeypatch):
    every = dict.fromkeys(kinds.KINDS, 1)
    assert kinds.instance_fits(kinds.SHARED_INSTANCE_TYPE, every) is None
    assert kinds.instance_fits("ml.g5.12xlarge", {"sd_inpaint": 2, "sd_upscale": 1, "clipseg": 1}) is None
    assert "has 4 GPU(s); the components need 5" in kinds.instance_fits(
        "ml.g5.12xlarge", {"sd_inpaint": 3, "sd_upscale": 2}
    )
    assert "has 1 GPU(s); the components need 2" in kinds.instance_fits(
        "ml.g5.2xlarge", {"sd_inpaint": 1, "sd_upscale": 1}
    )
    monkeypatch.setitem(kinds.INSTANCE_SHAPES, "ml.small.gpu", kinds.InstanceShape(2, 4, 8192))
    assert "has 4 vCPUs; the components need 8" in kinds.instance_fits("ml.small.gpu", {"sd_inpaint": 2})
    monkeypatch.setitem(kinds.INSTANCE_SHAPES, "ml.tiny.gpu", kinds.InstanceShape(2, 16, 4096))
    assert "has 4096 MiB of memory; the components need 8192" in kinds.instance_fits(
        "ml.tiny.gpu", {"clipseg": 2}
    )
    assert kinds.instance_fits("ml.g7.99xlarge", every) is None  # not listed: not checked


def test_every_component_of_one_instance_gets_a_whole_gpu():
    assert all(r.accelerators >= 1 for r in kinds.COMPONENT_RESOURCES.values())
    assert set(kinds.COMPONENT_RESOURCES) == set(kinds.KINDS)


def _client_error(code: str, message: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "InvokeEndpoint",
    )


def test_no_capacity_is_transient_and_says_what_it_waits_for():
    message = (
        "Inference Component has no capacity to process this request. ApplicationAutoScaling may be "
        "in-progress (if configured) or try to increase the capacity by invoking "
        "UpdateInferenceComponentRuntimeConfig API."
    )
    error = endpoints.classify_client_error(
        endpoints.described("tryon-shared", "tryon-shared-sd-inpaint"),
        _client_error("ValidationError", message),
    )
    assert isinstance(error, EndpointNoCapacity) and error.transient
    text = str(error)
    assert text.startswith("endpoint tryon-shared (component tryon-shared-sd-inpaint) has no copy running")
    assert message in text and "about 16 minutes" in text
    # any other ValidationError (a missing endpoint, an unknown component) stays permanent
    other = endpoints.classify_client_error("e", _client_error("ValidationError", "Endpoint e not found."))
    assert isinstance(other, EndpointNotFound)


def test_the_no_capacity_wait_outlasts_a_documented_cold_start():
    assert 15 * 60 <= no_capacity_wait_seconds() <= 20 * 60
