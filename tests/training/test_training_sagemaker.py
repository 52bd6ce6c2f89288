"""The SageMaker training job (launcher against moto, entry script) and the ``tryon train`` CLI."""

from __future__ import annotations

import importlib.util
import json
import re
import tarfile

import boto3
import pytest
from moto import mock_aws

from tryon.cli import run
from tryon.core.errors import RequestError
from tryon.training.sagemaker_launcher import LaunchSpec, launch, stage_source_dir


def _strip_empty_configs(parsed=None, **_):
    """moto returns VpcConfig: {} / DataCaptureConfig: {}, which sagemaker-core's models reject."""
    if isinstance(parsed, dict):
        for key in ("VpcConfig", "DataCaptureConfig"):
            if parsed.get(key) == {}:
                parsed.pop(key)


@pytest.fixture
def aws():
    """A moto account with data and output buckets, a role, and captured CreateTrainingJob requests."""
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        requests = []
        session.events.register("after-call.sagemaker", _strip_empty_configs)
        session.events.register(
            "provide-client-params.sagemaker.CreateTrainingJob", lambda params, **_: requests.append(params)
        )
        s3 = session.client("s3")
        for bucket in ("garments", "results"):
            s3.create_bucket(Bucket=bucket)
        role = session.client("iam").create_role(RoleName="train", AssumeRolePolicyDocument="{}")["Role"][
            "Arn"
        ]
        yield session, role, requests


def test_launcher_submits_the_training_job(aws, monkeypatch):
    session, role, requests = aws
    spec = LaunchSpec(
        role=role,
        output_path="s3://results/fine-tunes",
        instance_data="s3://garments/skirt/photos/",
        class_data="s3://garments/classes/skirt/",
        mask_data="s3://garments/skirt/masks/",
        base_model="s3://garments/models/sd2-inpainting/",
        hyperparameters={
            "instance_prompt": "a photo of sks skirt",
            "max_train_steps": 800,
            "train_text_encoder": True,
            "lora_targets": ["to_q", "to_v"],
            "mask_query": None,  # unset values are not passed
        },
        instance_type="ml.g5.2xlarge",
        volume_size_gb=150,
        max_runtime_s=7200,
        spot=True,
        max_wait_s=10800,
    )
    result = launch(spec, boto_session=session)
    assert len(requests) == 1
    request = requests[0]
    assert request["TrainingJobName"] == result.job_name and result.job_name.startswith(
        "tryon-dreambooth-lora"
    )
    assert request["AlgorithmSpecification"]["TrainingImage"] == (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.8-gpu-py312"
    )
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]
    }
    assert channels["instance"] == "s3://garments/skirt/photos/"
    assert channels["class"] == "s3://garments/classes/skirt/"
    assert channels["masks"] == "s3://garments/skirt/masks/"
    assert channels["base_model"] == "s3://garments/models/sd2-inpainting/"
    assert "clipseg" not in channels
    assert channels["code"].startswith("s3://results/fine-tunes/")  # staged next to the outputs
    assert request["HyperParameters"] == {
        "instance_prompt": "a photo of sks skirt",
        "max_train_steps": "800",
        "train_text_encoder": "true",
        "lora_targets": '["to_q", "to_v"]',
        # every job prints metric lines and writes TensorBoard logs where SageMaker uploads them
        "log_metrics_every": "10",
        "logging_dir": "/opt/ml/output/tensorboard",
    }
    assert request["ResourceConfig"] == {
        "InstanceType": "ml.g5.2xlarge",
        "InstanceCount": 1,
        "VolumeSizeInGB": 150,
    }
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 10800}
    assert request["EnableManagedSpotTraining"] is True
    assert request["OutputDataConfig"]["S3OutputPath"] == "s3://results/fine-tunes"
    assert request["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
    assert request["CheckpointConfig"]["S3Uri"] == result.checkpoints
    assert request["RoleArn"] == role
    assert result.model_artifacts == f"s3://results/fine-tunes/{result.job_name}/output/model.tar.gz"
    # the staged source folder carries the entry script, requirements and the vendored package
    keys = {
        o["Key"]
        for o in session.client("s3").list_objects_v2(Bucket="results", Prefix="fine-tunes/")["Contents"]
    }
    code = channels["code"][len("s3://results/") :]
    for name in ("train.py", "requirements.txt", "tryon/training/loop.py", "tryon/handlers/clipseg.py"):
        assert f"{code}/{name}" in keys
    # the loss and validation metrics reach CloudWatch through metric definitions over the job's logs
    definitions = {d["Name"]: d["Regex"] for d in request["AlgorithmSpecification"]["MetricDefinitions"]}
    assert set(definitions) >= {"train_loss", "validation_clip_i", "validation_dino", "validation_clip_t"}
    line = "tryon-metrics step=20 train_loss=0.0123 validation_clip_i=0.8125 validation_clip_t=-1e-05"
    assert re.search(definitions["train_loss"], line).group(1) == "0.0123"
    assert re.search(definitions["validation_clip_i"], line).group(1) == "0.8125"
    assert re.search(definitions["validation_clip_t"], line).group(1) == "-1e-05"
    assert re.search(definitions["validation_dino"], line) is None
    assert request["TensorBoardOutputConfig"] == {
        "LocalPath": "/opt/ml/output/tensorboard",
        "S3OutputPath": "s3://results/fine-tunes/tensorboard",
    }
    for name in ("tryon/evaluation/feature_metrics.py", "tryon/weights/hub.py"):
        assert f"{code}/{name}" in keys
    described = session.client("sagemaker").describe_training_job(TrainingJobName=result.job_name)
    assert described["TrainingJobStatus"] == "Completed"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"instance_data": "/local/photos"}, "instance"),
        ({"output_path": "results"}, "output_path"),
        ({"max_wait_s": 100}, "max_wait_s"),  # without spot
        ({"spot": True, "max_wait_s": 10}, "max_wait_s"),  # shorter than the runtime
        ({"hyperparameters": {"output_dir": "/tmp"}}, "output_dir"),
        ({"role": "train"}, "role"),
    ],
)
def test_launch_spec_is_checked(changes, field):
    values = {"role": "arn:aws:iam::1:role/r", "output_path": "s3://b/p", "instance_data": "s3://b/i/"}
    with pytest.raises(RequestError) as info:
        LaunchSpec(**{**values, **changes}).validate()
    assert info.value.field == field


def test_staged_source_folder(tmp_path):
    staged = stage_source_dir(tmp_path / "src")
    assert (staged / "train.py").is_file() and (staged / "requirements.txt").is_file()
    assert (staged / "tryon" / "training" / "loop.py").is_file()
    assert (staged / "tryon" / "handlers" / "clipseg.py").is_file()
    assert not (staged / "tryon" / "cli").exists() and not list(staged.rglob("__pycache__"))


def _entry_script(repo_root):
    spec = importlib.util.spec_from_file_location("sm_train_entry", repo_root / "training" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_entry_script_maps_the_sagemaker_environment(repo_root, tmp_path, capsys):
    entry = _entry_script(repo_root)
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    env = {
        "SM_CHANNEL_INSTANCE": "/opt/ml/input/data/instance",
        "SM_CHANNEL_MASKS": "/opt/ml/input/data/masks",
        "SM_CHANNEL_BASE_MODEL": "/opt/ml/input/data/base_model",
        "SM_MODEL_DIR": "/opt/ml/model",
    }
    args = entry.sagemaker_arguments(env, checkpoint_dir=str(checkpoints))
    assert args == [
        "--instance-data-dir",
        "/opt/ml/input/data/instance",
        "--mask-dir",
        "/opt/ml/input/data/masks",
        "--pretrained-model",
        "/opt/ml/input/data/base_model",
        "--output-dir",
        "/opt/ml/model",
        "--checkpoint-dir",
        str(checkpoints),
        "--resume-from-checkpoint",
        "latest",
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    code = entry.main(
        [
            "--pretrained-model",
            "x",
            "--instance-data-dir",
            str(empty),
            "--instance-prompt",
            "a photo of sks skirt",
        ]
    )
    assert code == 2
    assert "instance_data_dir: no usable images" in capsys.readouterr().err


def test_cli_local_reports_bad_data_and_options(tmp_path, capsys, tiny_models):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.heic").write_bytes(b"....")
    base = str(tiny_models["sd-inpaint"])  # the base model is checked first (tests/cli/test_cli_errors.py)
    common = ["train", "local", "--pretrained-model", base, "--instance-prompt", "a photo of sks skirt"]
    out = tmp_path / "out"
    assert run([*common, "--instance-data-dir", str(tmp_path / "photos"), "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no usable images" in err and "a.heic: unsupported extension .heic" in err
    assert not out.exists()  # nothing is written before the data is known to be good
    assert run([*common, "--instance-data-dir", str(tmp_path), "--resolution", "100"]) == 2
    assert "resolution: must be a multiple of 8" in capsys.readouterr().err


def test_cli_sagemaker_checks_hyperparameters_before_submitting(capsys):
    base = [
        "train",
        "sagemaker",
        "--role",
        "arn:aws:iam::1:role/r",
        "--output-path",
        "s3://b/o",
        "--instance-data",
        "s3://b/i/",
        "--instance-prompt",
        "a photo of sks skirt",
        "--pretrained-model",
        "stabilityai/stable-diffusion-2-inpainting",
    ]
    assert run([*base, "--hp", "lora_rank=0"]) == 2
    assert "lora_rank: must be >= 1" in capsys.readouterr().err
    assert run([*base, "--hp", "learning_rat=1e-4"]) == 2
    assert "learning_rat" in capsys.readouterr().err


def test_cli_sagemaker_submits(aws, monkeypatch, capsys):
    session, role, requests = aws
    monkeypatch.setattr(boto3, "Session", lambda **_: session)
    code = run(
        [
            "train",
            "sagemaker",
            "--role",
            role,
            "--output-path",
            "s3://results/ft",
            "--instance-data",
            "s3://garments/skirt/",
            "--instance-prompt",
            "a photo of sks skirt",
            "--base-model",
            "s3://garments/models/sd2/",
            "--hp",
            "max_train_steps=600",
            "--hp",
            "mask_query=a skirt",
            "--clipseg-model",
            "s3://garments/models/clipseg/",
            "--instance-type",
            "ml.g6.2xlarge",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert requests[0]["HyperParameters"]["max_train_steps"] == "600"
    assert requests[0]["HyperParameters"]["mask_query"] == "a skirt"
    assert requests[0]["ResourceConfig"]["InstanceType"] == "ml.g6.2xlarge"
    job = requests[0]["TrainingJobName"]
    assert f"training job: {job}" in out and f"s3://results/ft/{job}/output/model.tar.gz" in out


def test_cli_package_and_upload_adapter(tiny_models, tmp_path, aws, capsys):
    session, _, _ = aws
    out = tmp_path / "model.tar.gz"
    assert run(["train", "package-adapter", str(tiny_models["lora-a"]), "--out", str(out)]) == 0
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert "adapter/pytorch_lora_weights.safetensors" in names and "code/inference.py" in names
    assert (
        run(["train", "package-adapter", str(tiny_models["lora-a"]), "--out", str(out), "--name", "sks"]) == 0
    )
    with tarfile.open(out) as tar:
        assert "adapters/sks/pytorch_lora_weights.safetensors" in tar.getnames()
    capsys.readouterr()
    assert (
        run(["train", "upload-adapter", str(tiny_models["lora-a"]), "s3://results/adapters/sks-skirt"]) == 0
    )
    assert '{"adapter": "s3://results/adapters/sks-skirt/"}' in capsys.readouterr().out
    body = session.client("s3").get_object(
        Bucket="results", Key="adapters/sks-skirt/pytorch_lora_weights.safetensors"
    )
    assert (
        body["ContentLength"] == (tiny_models["lora-a"] / "pytorch_lora_weights.safetensors").stat().st_size
    )
    assert run(["train", "upload-adapter", str(tmp_path), "s3://results/x/"]) == 2


def test_hyperparameter_json_file(tmp_path, capsys):
    config = tmp_path / "hp.json"
    config.write_text(json.dumps({"max_train_steps": 10, "resolution": 500}))
    code = run(
        [
            "train",
            "sagemaker",
            "--role",
            "arn:aws:iam::1:role/r",
            "--output-path",
            "s3://b/o",
            "--instance-data",
            "s3://b/i/",
            "--instance-prompt",
            "p",
            "--pretrained-model",
            "m",
            "--config",
            str(config),
        ]
    )
    assert code == 2 and "resolution: must be a multiple of 8" in capsys.readouterr().err


def test_launcher_session_opts_out_of_sdk_telemetry():
    from sagemaker.core.common_utils import resolve_value_from_config
    from sagemaker.core.config.config_schema import TELEMETRY_OPT_OUT_PATH
    from sagemaker.core.helper.session_helper import Session

    from tryon.training.sagemaker_launcher import TELEMETRY_OPT_OUT

    session = Session(boto_session=boto3.Session(region_name="us-east-1"), sagemaker_config=TELEMETRY_OPT_OUT)
    assert resolve_value_from_config(
        None, TELEMETRY_OPT_OUT_PATH, default_value=False, sagemaker_session=session
    )


def test_staged_source_imports_on_its_own(tmp_path):
    """The training job's source folder carries every tryon module the entry script reaches."""
    import subprocess
    import sys

    from tryon.training.sagemaker_launcher import stage_source_dir

    staged = stage_source_dir(tmp_path / "code")
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import tryon, tryon.training.loop, "
        "tryon.handlers.clipseg, tryon.handlers.sd_inpaint; "
        "assert tryon.__file__.startswith(sys.argv[1]), tryon.__file__"
    )
    done = subprocess.run([sys.executable, "-c", script, str(staged)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
