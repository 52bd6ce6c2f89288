"""keep_body as job parameters: keep_body and each control's scale, start and end.

Their kinds and limits (the contract's), every layer that sets them (template defaults, presets,
object metadata, console input, batch columns), Prepare's refusals, what the inpaint step sends
(nothing for a job that sets no keep_body, so an SD 2 endpoint is never asked; only the settings
of the controls it keeps), the template's choices, and executions through the whole local
workflow on the tiny model with its ControlNets: the manifest records the controls and their
control images, the preview shows them, and an asynchronous inpainting endpoint does the same.
"""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image
from support.workflow import prepare_refusal

from tryon.core import contract
from tryon.core.errors import RequestError
from tryon.local.samples import sample_photo
from tryon.workflow import job, params
from tryon.workflow.jobid import job_id_for
from tryon.workflow.settings import Settings
from tryon.workflow.steps import STEP_CALLS

IN, OUT = "in-bucket", "out-bucket"
SETTINGS = tuple(
    contract.control_field(c, w) for c in contract.BODY_CONTROLS for w in ("scale", "start", "end")
)
CONTROLS = ("keep_body", *SETTINGS)


def test_control_parameters_take_the_contract_limits_and_metadata_text():
    by_name = {p.name: p for p in params.PARAMS}
    for name in CONTROLS:
        assert dict(by_name[name].limits) == dict(contract.SD_INPAINT[name].limits), name
    # the stack's job default is keep_body's alone; a control's settings are per job
    assert by_name["keep_body"].env == "TRYON_DEFAULT_KEEP_BODY"
    assert all(by_name[name].env is None for name in SETTINGS)
    assert {name: params.template_defaults({})[name] for name in CONTROLS} == dict.fromkeys(CONTROLS)
    values, _, _ = params.metadata_overrides(
        {"x-amz-meta-keep-body": "pose+depth", "x-amz-meta-pose-scale": "1.2", "depth-end": "0.5"}
    )
    assert values == {"keep_body": "depth+pose", "pose_scale": 1.2, "depth_end": 0.5}  # one spelling
    assert params.to_metadata({"keep_body": "pose", "pose_start": 0.25}) == {
        "keep-body": "pose",
        "pose-start": "0.25",
    }
    env = {
        "TRYON_DEFAULT_KEEP_BODY": "depth",
        "TRYON_PRESETS": '{"shape": {"keep_body": "pose+depth", "pose_scale": 1.0, "depth_scale": 0.8}}',
    }
    defaults = params.template_defaults(env)
    assert defaults["keep_body"] == "depth"
    effective = params.resolve(
        defaults=defaults,
        preset_table=params.presets(env),
        preset="shape",
        metadata={"depth_scale": 0.4},
        console={"pose_end": 0.6},
    )
    assert [effective[n] for n in ("keep_body", "depth_scale", "pose_scale", "pose_end")] == [
        "depth+pose",
        0.4,
        1.0,
        0.6,
    ]


def test_the_template_default_takes_exactly_the_contracts_values(repo_root):
    import re

    from tryon.local.template import load_template

    template = load_template(repo_root / "template.yaml")
    parameter = template["Parameters"]["DefaultKeepBody"]
    pattern = re.compile(parameter["AllowedPattern"])
    for value in ["", *contract.KEEP_BODY_CHOICES, "pose+depth"]:
        assert pattern.fullmatch(value), value
    for value in ["Depth", "depth+depth", "none+pose", "depth,pose", " pose"]:
        assert not pattern.fullmatch(value), value
    assert parameter["Default"] == ""
    assert "TRYON_DEFAULT_KEEP_BODY" in template["Globals"]["Function"]["Environment"]["Variables"]


def test_batch_manifest_columns_carry_the_control_parameters():
    from tryon.workflow import batch_manifest

    csv = b"image,keep_body,depth_scale,pose_end\na.png,,,\nb.png,pose+depth,0.7,0.5\n"
    rows = batch_manifest.parse_manifest(csv, "batches/shape.csv")
    assert [batch_manifest.row_console_input(row, IN, "inputs/") for row in rows] == [
        {"image": f"s3://{IN}/inputs/a.png"},  # empty cells: nothing set
        {"image": f"s3://{IN}/inputs/b.png", "keep_body": "depth+pose", "depth_scale": 0.7, "pose_end": 0.5},
    ]
    with pytest.raises(RequestError, match=r"^keep_body: must be one of none, depth, pose, depth\+pose"):
        batch_manifest.row_console_input({"image": "a.png", "keep_body": "skeleton"}, IN, "inputs/")


@pytest.fixture
def s3(moto_s3):
    env = {"TRYON_INPUT_BUCKET": IN, "TRYON_OUTPUT_BUCKET": OUT, "TRYON_INPAINT_ENDPOINT": "inp"}
    return moto_s3(IN, OUT, versioned=(IN,), env=env)


@pytest.mark.parametrize(
    ("layer", "source", "message"),
    [
        (
            {"keep-body": "skeleton"},
            "metadata",
            "keep_body (from metadata): must be one of none, depth, pose",
        ),
        ({"keep_body": "depth+depth"}, "input", "keep_body: must be one of none, depth, pose, depth+pose"),
        ({"keep_body": 2}, "input", "keep_body: must be a string"),
        ({"depth-scale": "3"}, "metadata", "depth_scale (from metadata): must be <= 2.0, got 3.0"),
        ({"pose_scale": -1}, "input", "pose_scale: must be >= 0.0, got -1.0"),
        ({"pose_start": "soon"}, "input", "pose_start: must be a number"),
        # a window that covers no step, for a control the job keeps (the endpoint would refuse it too)
        (
            {"keep_body": "pose", "pose_start": 0.7, "pose_end": 0.3},
            "input",
            "pose_start: 0.7 must be < pose_end",
        ),
        ({"keep-body": "depth", "depth-start": "1"}, "metadata", "depth_start: 1.0 must be < depth_end 1.0"),
    ],
)
def test_prepare_refuses_bad_control_values_naming_field_and_limit(s3, layer, source, message):
    refused = prepare_refusal(s3, IN, layer, source)
    assert refused.startswith(message), refused


def _inpaint_request(s3, console: dict, metadata: dict | None = None) -> dict:
    s3.put_object(Bucket=IN, Key="inputs/p.png", Body=sample_photo(), Metadata=metadata or {})
    built = job.build_job(Settings.from_env(), {"image": f"s3://{IN}/inputs/p.png", **console})
    [garment] = built["garments"]  # a job that is no outfit: one garment, one pass
    mask = built["output"]["pending_prefix"] + "mask.png"
    segment = {
        "mask_key": mask,
        "garments": [{"name": garment["name"], "mask_key": mask, "coverage": 0.5, "empty": False}],
    }
    state = {"job": built, "segment": segment, "inpaint": {"passes": [], "done": False}}
    [request] = STEP_CALLS["inpaint"].requests(state)
    return request


def test_the_inpaint_step_sends_only_the_control_fields_a_job_keeps(s3):
    plain = _inpaint_request(s3, {})
    assert not set(plain) & set(CONTROLS)  # an SD 2 job: the request it always was
    # settings of a control the job does not keep are not sent (the endpoint would refuse them)
    assert not set(_inpaint_request(s3, {"depth_scale": 0.3})) & set(CONTROLS)
    none = _inpaint_request(s3, {"keep_body": "none", "pose_scale": 1.0})
    assert {k: none[k] for k in CONTROLS if k in none} == {"keep_body": "none"}
    pose = _inpaint_request(
        s3, {"pose_scale": 1.5, "depth_scale": 0.3}, {"keep-body": "pose", "pose-end": "0.8"}
    )
    assert {k: pose[k] for k in CONTROLS if k in pose} == {
        "keep_body": "pose",
        "pose_scale": 1.5,
        "pose_end": 0.8,
    }
    both = _inpaint_request(s3, {"keep_body": "pose+depth", "depth_start": 0.1})
    assert {k: both[k] for k in CONTROLS if k in both} == {"keep_body": "depth+pose", "depth_start": 0.1}
    assert set(both) == set(plain) | {"keep_body", "depth_start"}


def test_unset_control_parameters_leave_the_job_id_alone(s3):
    s3.put_object(Bucket=IN, Key="inputs/p.png", Body=sample_photo())
    settings, image = Settings.from_env(), f"s3://{IN}/inputs/p.png"

    def job_id(**console):
        return job.build_job(settings, {"image": image, **console})["job_id"]

    plain = job_id()
    assert job_id(keep_body="pose") != plain and job_id(keep_body="pose", pose_scale=1.0) != job_id(
        keep_body="pose"
    )
    effective = params.template_defaults({})
    before = {name: value for name, value in effective.items() if name not in CONTROLS}
    assert job_id_for(IN, "inputs/p.png", "v1", effective) == job_id_for(IN, "inputs/p.png", "v1", before)


def _png(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["realtime", "async"])
def test_metadata_and_console_controls_reach_the_endpoint_and_the_manifest(tiny_models, mode):
    """One execution on the tiny model with its ControlNets (real-time, then asynchronous): keep_body
    from the upload's metadata, pose_scale from the console input; the manifest records the controls
    and their control images, which lie in the result folder, and the preview shows them. Then a bad
    value is refused by Prepare before any endpoint call (real-time)."""
    from tryon.local import LocalWorkflow

    models = {"clipseg": tiny_models["clipseg"], "sd_inpaint": tiny_models["sd-inpaint-controls"]}
    # threshold 0: the tiny CLIPSeg's mask is never empty; one step, guidance off
    parameters = {"DefaultSteps": 1, "DefaultThreshold": 0.0, "DefaultGuidanceScale": 1.0}
    modes = {"sd_inpaint": mode} if mode == "async" else {}
    with LocalWorkflow(
        models, upscale=False, parameters=parameters, modes=modes, stack_name=f"tryon-keep-body-{mode}"
    ) as wf:
        sent: list[dict] = []
        if mode == "realtime":
            wf.before_endpoint_call("sd_inpaint", lambda request: sent.append(json.loads(request["body"])))
        photo = sample_photo((48, 64))
        key = wf.upload(photo, "inputs/look.png", metadata={"keep-body": "depth+pose"})["key"]
        image = f"s3://{wf.input_bucket}/{key}"
        result = wf.wait(wf.start({"image": image, "pose_scale": 1.2, "negative_queries": []}), timeout=300)
        assert result.succeeded and result.output["status"] == "succeeded", (result.error, result.cause)
        if mode == "realtime":
            [request] = sent
            assert {k: request[k] for k in CONTROLS if k in request} == {
                "keep_body": "depth+pose",
                "pose_scale": 1.2,
            }
        manifest = wf.read_json(result.output["manifest"])
        controls = manifest["controls"]
        assert controls["keep_body"] == "depth+pose" and controls["pose"]["scale"] == 1.2
        assert controls["depth"]["scale"] == contract.CONTROL_SCALE
        assert (manifest["params"]["keep_body"], manifest["params"]["pose_scale"]) == ("depth+pose", 1.2)
        prefix = manifest["outputs"]["prefix"]
        assert manifest["outputs"]["controls"] == {
            "depth": f"{prefix}inpainted-depth.png",
            "pose": f"{prefix}inpainted-pose.png",
        }
        for name, uri in manifest["outputs"]["controls"].items():
            assert controls[name]["output"]["uri"] == uri
            assert _png(wf.read_bytes(uri)).size == (64, 64)  # the working size
        # input | mask | depth | pose | result, each scaled to the photo's height
        preview = _png(wf.read_bytes(manifest["outputs"]["preview"]))
        assert preview.size == (5 * 48, 64)
        assert wf.read_bytes(image) == photo

        if mode == "realtime":
            before = len(wf.invocations)
            failed = wf.wait(wf.start({"image": image, "pose_start": 0.9, "pose_end": 0.2}), timeout=60)
            assert failed.status == "FAILED" and failed.error == "InvalidInput"
            assert "pose_start: 0.9 must be < pose_end 0.2" in failed.cause
            assert [n for n, _, _ in wf.invocations[before:]] == ["PrepareFunction", "RecordFailureFunction"]
            assert len(sent) == 1


@pytest.mark.slow
def test_an_endpoint_without_controls_fails_the_job_naming_the_folders(tiny_models):
    """A job that keeps the body on an endpoint without ControlNets: the endpoint's 400 becomes the
    failure record (permanent, not retried), naming the field and the folders the model needs."""
    from support.workflow import failure_of

    from tryon.local import LocalWorkflow

    models = {"clipseg": tiny_models["clipseg"], "sd_inpaint": tiny_models["sd-inpaint"]}
    parameters = {"DefaultSteps": 1, "DefaultThreshold": 0.0, "DefaultGuidanceScale": 1.0}
    with LocalWorkflow(models, upscale=False, parameters=parameters, stack_name="tryon-no-controls") as wf:
        key = wf.upload(sample_photo((48, 64)), "inputs/look.png")["key"]
        result = wf.wait(
            wf.start({"image": f"s3://{wf.input_bucket}/{key}", "keep_body": "pose", "negative_queries": []}),
            timeout=300,
        )
        record = failure_of(wf, result)
        assert record["error"] == "ModelError" and record["step"] == "inpaint"
        assert "keep_body: this model cannot keep the body's pose" in record["cause"]
        assert "controlnet_pose/ and pose_estimator/" in record["cause"]
