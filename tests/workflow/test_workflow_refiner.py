"""The SDXL refiner as job parameters: use_refiner, refiner_steps, refiner_strength.

Their kinds and limits (the contract's), every layer that sets them (template defaults,
presets, object metadata, console input), Prepare's refusals, what the inpaint step sends
(nothing for a job that sets none, so an SD 2 endpoint is never asked), and one execution
through the whole local workflow on the tiny SDXL inpainting model with its refiner.
"""

from __future__ import annotations

import json

import pytest
from support.workflow import prepare_refusal

from tryon.core import contract
from tryon.core.errors import RequestError
from tryon.local.samples import sample_photo
from tryon.workflow import job, params
from tryon.workflow.jobid import job_id_for
from tryon.workflow.settings import Settings
from tryon.workflow.steps import STEP_CALLS

IN, OUT = "in-bucket", "out-bucket"
REFINER = ("use_refiner", "refiner_steps", "refiner_strength")


def test_refiner_parameters_take_the_contract_limits_and_metadata_text():
    by_name = {p.name: p for p in params.PARAMS}
    for name in REFINER:
        assert dict(by_name[name].limits) == dict(contract.SD_INPAINT[name].limits), name
    assert {name: params.template_defaults({})[name] for name in REFINER} == dict.fromkeys(REFINER)
    for text, value in [("true", True), ("Yes", True), ("false", False), ("no", False), ("", None)]:
        values, _, _ = params.metadata_overrides({"x-amz-meta-use-refiner": text})
        assert values == {"use_refiner": value}, text
    values, _, _ = params.metadata_overrides({"refiner-steps": "12", "refiner-strength": "0.5"})
    assert values == {"refiner_steps": 12, "refiner_strength": 0.5}
    assert params.to_metadata({"use_refiner": False, "refiner_strength": 0.25}) == {
        "use-refiner": "false",
        "refiner-strength": "0.25",
    }
    env = {
        "TRYON_DEFAULT_USE_REFINER": "true",
        "TRYON_DEFAULT_REFINER_STEPS": "40",
        "TRYON_PRESETS": '{"polished": {"refiner_strength": 0.5, "use_refiner": true}}',
    }
    defaults = params.template_defaults(env)
    assert (defaults["use_refiner"], defaults["refiner_steps"]) == (True, 40)
    effective = params.resolve(
        defaults=defaults,
        preset_table=params.presets(env),
        preset="polished",
        metadata={"refiner_steps": 20},
        console={"use_refiner": False},
    )
    assert [effective[name] for name in REFINER] == [False, 20, 0.5]


def test_batch_manifest_columns_carry_the_refiner_parameters():
    from tryon.workflow import batch_manifest

    csv = b"image,use_refiner,refiner_steps,refiner_strength\na.png,no,,\nb.png,yes,12,0.5\n"
    rows = batch_manifest.parse_manifest(csv, "batches/sdxl.csv")
    assert [batch_manifest.row_console_input(row, IN, "inputs/") for row in rows] == [
        {"image": f"s3://{IN}/inputs/a.png", "use_refiner": False},  # empty cells: nothing set
        {"image": f"s3://{IN}/inputs/b.png", "use_refiner": True, "refiner_steps": 12}
        | {"refiner_strength": 0.5},
    ]
    with pytest.raises(RequestError, match=r"^refiner_strength: must be <= 1\.0, got 2\.0"):
        batch_manifest.row_console_input({"image": "a.png", "refiner_strength": "2"}, IN, "inputs/")


@pytest.mark.parametrize(
    ("layer", "source", "message"),
    [
        ({"use-refiner": "maybe"}, "metadata", "use_refiner (from metadata): must be a boolean, got 'maybe'"),
        ({"refiner-steps": "0"}, "metadata", "refiner_steps (from metadata): must be >= 1, got 0"),
        ({"refiner-steps": "2.5"}, "metadata", "refiner_steps (from metadata): must be an integer"),
        ({"refiner_steps": 500}, "input", "refiner_steps: must be <= 150, got 500"),
        ({"refiner_strength": 0}, "input", "refiner_strength: must be > 0.0, got 0.0"),
        ({"refiner_strength": 1.5}, "input", "refiner_strength: must be <= 1.0, got 1.5"),
        ({"use_refiner": "often"}, "input", "use_refiner: must be a boolean, got 'often'"),
        # 2 x 0.3 = 0.6 steps: none at all (the endpoint would refuse it too)
        ({"refiner_steps": 2}, "input", "refiner_strength: 0.3 x refiner_steps 2 leaves no refining step"),
        (
            {"refiner-steps": "3", "refiner-strength": "0.2"},
            "metadata",
            "refiner_strength: 0.2 x refiner_steps 3 leaves no refining step; refiner_steps x "
            "refiner_strength must be >= 1",
        ),
    ],
)
def test_prepare_refuses_bad_refiner_values_naming_field_and_limit(s3, layer, source, message):
    refused = prepare_refusal(s3, IN, layer, source)
    assert refused.startswith(message), refused


@pytest.fixture
def s3(moto_s3):
    env = {"TRYON_INPUT_BUCKET": IN, "TRYON_OUTPUT_BUCKET": OUT, "TRYON_INPAINT_ENDPOINT": "inp"}
    return moto_s3(IN, OUT, versioned=(IN,), env=env)


def _inpaint_request(s3, console: dict, metadata: dict | None = None) -> dict:
    s3.put_object(Bucket=IN, Key="inputs/p.png", Body=sample_photo(), Metadata=metadata or {})
    built = job.build_job(Settings.from_env(), {"image": f"s3://{IN}/inputs/p.png", **console})
    mask = {"name": "", "mask_key": built["output"]["prefix"] + "mask.png", "coverage": 0.5, "empty": False}
    segment = {**mask, "garments": [mask]}
    first_pass = {"passes": [], "done": False}
    [request] = STEP_CALLS["inpaint"].requests({"job": built, "segment": segment, "inpaint": first_pass})
    return request


def test_the_inpaint_step_sends_only_the_refiner_fields_a_job_sets(s3):
    plain = _inpaint_request(s3, {})
    # an SD 2 job (no refiner parameter set anywhere): the request it always was
    assert set(plain) == {
        "image", "mask", "prompt", "negative_prompt", "steps", "guidance_scale", "strength",
        "num_images", "seed", "output", "output_name",
    }  # fmt: skip
    off = _inpaint_request(s3, {}, {"use-refiner": "false", "refiner-steps": "10"})
    assert {k: off[k] for k in REFINER if k in off} == {"use_refiner": False}  # steps not sent when off
    some = _inpaint_request(s3, {"refiner_strength": 0.5})
    assert {k: some[k] for k in REFINER if k in some} == {"refiner_strength": 0.5}
    full = _inpaint_request(s3, {"refiner_steps": 8, "refiner_strength": 0.25}, {"use-refiner": "yes"})
    assert [full[k] for k in REFINER] == [True, 8, 0.25]
    assert set(full) == set(plain) | set(REFINER)
    assert all(full[k] == plain[k] for k in ("prompt", "steps", "guidance_scale", "strength", "num_images"))


def test_unset_refiner_parameters_leave_the_job_id_alone(s3):
    s3.put_object(Bucket=IN, Key="inputs/p.png", Body=sample_photo())
    settings, image = Settings.from_env(), f"s3://{IN}/inputs/p.png"

    def job_id(**console):
        return job.build_job(settings, {"image": image, **console})["job_id"]

    plain = job_id()
    assert job_id(use_refiner=False) != plain and job_id(refiner_steps=40) != plain
    # a job that sets none of them has the id it had before they existed
    effective = params.template_defaults({})
    before = {name: value for name, value in effective.items() if name not in REFINER}
    assert job_id_for(IN, "inputs/p.png", "v1", effective) == job_id_for(IN, "inputs/p.png", "v1", before)


@pytest.mark.slow
def test_metadata_and_console_refiner_values_reach_the_sdxl_endpoint(tiny_models, tmp_path):
    """One execution on the tiny SDXL inpainting model with its refiner: use_refiner and refiner_steps
    from the upload's metadata, refiner_strength from the console input; the manifest records the
    pass the endpoint ran. Then a bad value is refused by Prepare before any endpoint call."""
    from tryon.local import LocalWorkflow
    from tryon.local.samples import assemble_inpaint_model

    inpaint = assemble_inpaint_model(
        tiny_models["sdxl-inpaint"], {}, tmp_path / "sdxl", refiner=tiny_models["sdxl-refiner"]
    )
    models = {"clipseg": tiny_models["clipseg"], "sd_inpaint": inpaint}
    # threshold 0: the tiny CLIPSeg's mask is never empty; one base step, guidance off
    parameters = {"DefaultSteps": 1, "DefaultThreshold": 0.0, "DefaultGuidanceScale": 1.0}
    with LocalWorkflow(models, upscale=False, parameters=parameters) as wf:
        sent: list[dict] = []
        wf.before_endpoint_call("sd_inpaint", lambda request: sent.append(json.loads(request["body"])))
        photo = sample_photo((48, 64))
        metadata = {"use-refiner": "yes", "refiner-steps": "2"}
        key = wf.upload(photo, "inputs/look.png", metadata=metadata)["key"]
        image = f"s3://{wf.input_bucket}/{key}"
        console = {"image": image, "refiner_strength": 0.5, "negative_queries": []}
        result = wf.wait(wf.start(console), timeout=300)
        assert result.succeeded and result.output["status"] == "succeeded", (result.error, result.cause)
        [request] = sent
        assert {k: request[k] for k in REFINER} == {
            "use_refiner": True,
            "refiner_steps": 2,
            "refiner_strength": 0.5,
        }
        manifest = wf.read_json(result.output["manifest"])
        assert manifest["refiner"] == {"steps": 2, "strength": 0.5}  # what the endpoint ran
        assert [manifest["params"][k] for k in REFINER] == [True, 2, 0.5]
        assert wf.read_bytes(image) == photo

        before = len(wf.invocations)
        failed = wf.wait(wf.start({"image": image, "refiner_steps": 151}), timeout=60)
        assert failed.status == "FAILED" and failed.error == "InvalidInput"
        assert "refiner_steps: must be <= 150, got 151" in failed.cause
        assert [n for n, _, _ in wf.invocations[before:]] == ["PrepareFunction", "RecordFailureFunction"]
        assert len(sent) == 1


@pytest.mark.slow
def test_refiner_values_reach_an_asynchronous_inpainting_endpoint(tiny_models, tmp_path):
    """The asynchronous path builds the same request (steps.STEP_CALLS): the refiner pass the
    manifest records is the one the console input asked for."""
    from tryon.local import LocalWorkflow
    from tryon.local.samples import assemble_inpaint_model

    inpaint = assemble_inpaint_model(
        tiny_models["sdxl-inpaint"], {}, tmp_path / "sdxl", refiner=tiny_models["sdxl-refiner"]
    )
    models = {"clipseg": tiny_models["clipseg"], "sd_inpaint": inpaint}
    parameters = {"DefaultSteps": 1, "DefaultThreshold": 0.0, "DefaultGuidanceScale": 1.0}
    with LocalWorkflow(
        models,
        upscale=False,
        parameters=parameters,
        modes={"sd_inpaint": "async"},
        stack_name="tryon-refine-async",
    ) as wf:
        key = wf.upload(sample_photo((48, 64)), "inputs/async.png")["key"]
        image = f"s3://{wf.input_bucket}/{key}"
        console = {"image": image, "use_refiner": True, "refiner_steps": 2, "negative_queries": []}
        result = wf.wait(wf.start({**console, "refiner_strength": 0.5}), timeout=300)
        assert result.succeeded, (result.error, result.cause)
        assert "InpaintAsync" in result.states() and "Inpaint" not in result.states()
        manifest = wf.read_json(result.output["manifest"])
        assert manifest["refiner"] == {"steps": 2, "strength": 0.5}
