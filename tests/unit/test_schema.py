"""One schema: every job parameter and endpoint kind is one row, and the copies derive from the rows."""

from __future__ import annotations

import pytest

from tryon.core import contract, kinds, schema
from tryon.core.errors import RequestError
from tryon.workflow import params
from tryon.workflow.settings import Settings


@pytest.mark.parametrize("row", schema.PARAMS, ids=lambda row: row.name)
def test_a_parameter_takes_the_limits_of_every_field_it_is_sent_as(row):
    """A value the job accepts is accepted by every endpoint field it reaches (one contract)."""
    for kind, name in row.sends:
        target = contract.CONTRACTS[kind][name]  # KeyError: the row names a field the endpoint lacks
        # an image field takes an s3:// URI string from the job
        assert target.kind == row.type or (target.kind, row.type) == ("image", "str"), (kind, name)
        # every limit the endpoint enforces, the job enforces the same way (a job may be stricter:
        # the inpainting prompt must not be empty, so the upscaler's prompt never is)
        assert dict(target.limits).items() <= dict(row.limits).items(), (kind, name)
    if row.field is not None:
        assert row.field is contract.CONTRACTS[row.sends[0][0]][row.sends[0][1]]
        assert not row.optional or row.default is None, "an optional parameter is unset by default"


def test_a_default_is_written_once():
    """Where the job's default is the endpoint's, the row takes it from the field (guidance 7.5 once)."""
    for name in ("guidance_scale", "steps", "strength", "num_images", "adapter_scale"):
        assert schema.param(name).default == contract.SD_INPAINT[name].default
    assert schema.param("threshold").default == contract.CLIPSEG["threshold"].default
    assert schema.param("garment_scale").default == contract.GARMENT_SCALE
    assert schema.param("upscale_steps").default == contract.SD_UPSCALE["steps"].default
    assert params.template_defaults({}) == {
        row.name: list(row.default) if row.type == "str_list" else row.default for row in schema.PARAMS
    }


def test_every_name_of_a_parameter_follows_from_its_name():
    row = schema.param("num_images")
    assert (row.metadata_key, row.env, row.template_parameter, row.cli_option, row.column) == (
        "num-images",
        "TRYON_DEFAULT_NUM_IMAGES",
        "DefaultNumImages",
        "--num-images",
        "num_images",
    )
    assert schema.param("use_refiner").cli_option == "--refiner/--no-refiner"
    assert schema.param("upscale").cli_option == "--upscale/--no-upscale"
    assert schema.param("garment_image").cli_option is None  # --garment FILE uploads it instead
    assert schema.param("seed").env is None and schema.param("seed").template_parameter is None
    for attribute in ("metadata_key", "env", "template_parameter", "cli_option"):
        names = [getattr(row, attribute) for row in schema.PARAMS if getattr(row, attribute)]
        assert len(names) == len(set(names)), attribute
    assert params.PARAMS is schema.PARAMS and {row.name for row in schema.PARAMS} == params.PARAM_NAMES


def test_help_texts_take_their_limits_from_the_rows():
    assert schema.param("steps").help_text() == "Diffusion steps (1..150)."
    assert schema.param("strength").help_text().endswith("((0, 1]).")
    assert schema.param("refiner_steps").help_text().endswith("unset: the endpoint's 30 (1..150).")
    assert "(<= 16 items of <= 200 chars)" in schema.param("negative_queries").help_text()


def test_unknown_names_are_refused_with_the_known_ones():
    with pytest.raises(KeyError, match=r"known: .*num_images"):
        schema.param("num_image")
    with pytest.raises(KeyError, match="known: clipseg, sd_inpaint, sd_upscale"):
        schema.kind("sd-inpaint")


def _job_params(**overrides):
    return {**params.template_defaults({}), "seed": 7, **overrides}


def test_requests_carry_what_the_rows_send():
    p = _job_params()
    assert schema.request_fields("clipseg", p) == {
        "query": "a shirt",
        "negative_queries": ["face", "hands"],
        "threshold": 0.4,
        "dilate": 8,
        "feather": 4,
    }
    # optional fields (sampler, adapter, garment image, the refiner's) are left out while unset
    assert set(schema.request_fields("sd_inpaint", p)) == {
        "prompt", "negative_prompt", "steps", "guidance_scale", "strength", "num_images", "seed",
    }  # fmt: skip
    assert schema.request_fields("sd_upscale", p) == {
        "prompt": p["prompt"],
        "negative_prompt": p["negative_prompt"],
        "seed": 7,
        "steps": 20,  # upscale_steps is the upscaler's steps field
        "noise_level": 20,
    }


def test_send_rules_with_and_unless():
    adapter = schema.request_fields("sd_inpaint", _job_params(adapter="garment-a", sampler="DPMPP2MSampler"))
    assert (adapter["adapter"], adapter["adapter_scale"], adapter["sampler"]) == (
        "garment-a",
        1.0,
        "DPMPP2MSampler",
    )
    assert "adapter_scale" not in schema.request_fields("sd_inpaint", _job_params(adapter=""))
    garment = schema.request_fields(
        "sd_inpaint", _job_params(garment_image="s3://b/garments/g.png?versionId=v")
    )
    assert (garment["garment_image"], garment["garment_scale"]) == ("s3://b/garments/g.png?versionId=v", 0.6)
    off = schema.request_fields("sd_inpaint", _job_params(use_refiner=False, refiner_steps=10))
    assert off["use_refiner"] is False and "refiner_steps" not in off
    on = schema.request_fields("sd_inpaint", _job_params(use_refiner=True, refiner_steps=10))
    assert (on["use_refiner"], on["refiner_steps"]) == (True, 10) and "refiner_strength" not in on


def test_template_defaults_read_every_rows_variable():
    env = {row.env: "" for row in schema.PARAMS if row.env}
    env |= {"TRYON_DEFAULT_DILATE": "12", "TRYON_DEFAULT_SAMPLER": "EulerEDMSampler"}
    env |= {"TRYON_DEFAULT_NOISE_LEVEL": "40", "TRYON_DEFAULT_MIN_COVERAGE": "0.05"}
    values = params.template_defaults(env)
    assert (values["dilate"], values["sampler"], values["noise_level"], values["min_coverage"]) == (
        12,
        "EulerEDMSampler",
        40,
        0.05,
    )
    # empty: the empty value where there is one (no items, no text, unset), else the schema's default
    assert values["negative_queries"] == [] and values["negative_prompt"] == ""
    assert values["adapter"] is None and values["use_refiner"] is None
    assert values["steps"] == 30 and values["query"] == "a shirt"
    with pytest.raises(RequestError, match=r"^noise_level \(from template defaults\): must be <= 350"):
        params.template_defaults({"TRYON_DEFAULT_NOISE_LEVEL": "351"})


def test_the_kind_rows_are_the_kinds():
    assert tuple(row.kind for row in schema.ENDPOINT_KINDS) == kinds.KINDS
    for row in schema.ENDPOINT_KINDS:
        assert row.contract is contract.CONTRACTS[row.kind]
        assert set(row.modes) <= set(kinds.MODES) and "realtime" in row.modes
        assert row.handler_module == f"tryon.handlers.{row.kind}"
    for attribute in ("short", "slug", "template", "step", "tiny_folder"):
        values = [getattr(row, attribute) for row in schema.ENDPOINT_KINDS]
        assert len(values) == len(set(values)), attribute
    inpaint = schema.kind("sd_inpaint")
    assert (
        inpaint.endpoint_variable,
        inpaint.mode_variable,
        inpaint.settings_attribute,
        inpaint.endpoint_parameter,
        inpaint.mode_parameter,
        inpaint.endpoint_name(),
    ) == (
        "TRYON_INPAINT_ENDPOINT",
        "TRYON_INPAINT_MODE",
        "inpaint_endpoint",
        "InpaintEndpointName",
        "InpaintMode",
        "tryon-sd-inpaint",
    )


def test_settings_read_each_kinds_variables():
    env = {"TRYON_INPUT_BUCKET": "in", "TRYON_OUTPUT_BUCKET": "out"}
    env |= {"TRYON_MAX_INPUT_BYTES": "1", "TRYON_MAX_INPUT_PIXELS": "1"}
    for row in schema.ENDPOINT_KINDS:
        env |= {row.endpoint_variable: f"ep-{row.slug}", row.mode_variable: row.modes[-1]}
        env[row.instance_type_variable] = row.default_instance_type
    settings = Settings.from_env(env)
    for row in schema.ENDPOINT_KINDS:
        assert settings.endpoint(row.kind) == getattr(settings, row.settings_attribute) == f"ep-{row.slug}"
        assert settings.mode(row.kind) == row.modes[-1]
        assert dict(settings.instance_types)[row.kind] == row.default_instance_type
