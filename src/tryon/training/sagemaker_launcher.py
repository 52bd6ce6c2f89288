"""Launch the fine-tune as a SageMaker training job (sagemaker Python SDK v3 ``ModelTrainer``).

The job runs ``training/train.py`` in a PyTorch training container. The launcher stages a
source folder with that script, ``training/requirements.txt`` and a vendored copy of the
``tryon`` parts the job needs (the training package and the CLIPSeg handler it uses for
``--mask-query``), uploads it with the data channels, and passes the hyperparameters
through as ``--key value`` arguments.

Channels (``/opt/ml/input/data/<name>`` in the container): ``instance`` (required),
``class``, ``masks``, ``base_model`` (a diffusers folder; else the ``pretrained_model``
hyperparameter names a hub id) and ``clipseg`` (CLIPSeg weights for ``mask_query``).
The adapter lands in ``<output_path>/<job name>/output/model.tar.gz`` under ``adapter/``.
Checkpoints sync to ``<output_path>/checkpoints/<base job name>-<time>-<token>/`` so a spot
interruption resumes where it stopped.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tryon
from tryon.core.errors import RequestError
from tryon.core.s3uri import parse_s3_prefix

#: Channels the entry script understands, in the order they are passed.
CHANNELS = ("instance", "class", "masks", "base_model", "clipseg", "metric_models")
#: tryon parts vendored into the job's source folder.
VENDORED = (
    "__init__.py",
    "core",  # errors, imaging, validation, and the contract the handlers (--mask-query) read
    "weights/__init__.py",
    "weights/portable.py",
    "weights/hub.py",  # metric networks from the hub (validation_metric_models=hub)
    "training",
    "handlers",
    "evaluation",  # validation metrics (CLIP-I, DINO, CLIP-T)
)
CONTAINER_CHECKPOINT_DIR = "/opt/ml/checkpoints"
#: Where the job writes TensorBoard logs; SageMaker uploads the folder to ``<output_path>/tensorboard/``.
CONTAINER_TENSORBOARD_DIR = "/opt/ml/output/tensorboard"
#: Hyperparameters every job gets unless given: a metric line every 10 steps for the metric definitions.
JOB_DEFAULTS = {"log_metrics_every": "10", "logging_dir": CONTAINER_TENSORBOARD_DIR}
DEFAULT_INSTANCE_TYPE = "ml.g5.2xlarge"
DEFAULT_FRAMEWORK_VERSION = "2.8"
DEFAULT_PY_VERSION = "py312"
TELEMETRY_OPT_OUT = {
    "SchemaVersion": "1.0",
    "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
}


def training_dir() -> Path:
    """The repository's ``training/`` folder (entry script and requirements)."""
    return Path(
        os.environ.get("TRYON_TRAINING_DIR") or Path(tryon.__file__).resolve().parents[2] / "training"
    )


@dataclass
class LaunchSpec:
    """Everything a training job needs; hyperparameters are TrainingConfig fields (no paths)."""

    role: str
    output_path: str
    instance_data: str
    class_data: str | None = None
    mask_data: str | None = None
    base_model: str | None = None
    clipseg_model: str | None = None
    #: s3:// prefix of the metric networks (tryon eval --metric-models layout) that score validation
    metric_models: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    instance_type: str = DEFAULT_INSTANCE_TYPE
    volume_size_gb: int = 100
    max_runtime_s: int = 6 * 3600
    spot: bool = False
    max_wait_s: int | None = None
    image_uri: str | None = None
    base_job_name: str = "tryon-dreambooth-lora"
    region: str | None = None
    environment: dict[str, str] = field(default_factory=dict)

    def channels(self) -> dict[str, str]:
        """channel name -> S3 URI, for the channels that are set."""
        values = {
            "instance": self.instance_data,
            "class": self.class_data,
            "masks": self.mask_data,
            "base_model": self.base_model,
            "clipseg": self.clipseg_model,
            "metric_models": self.metric_models,
        }
        return {name: uri for name, uri in values.items() if uri}

    def validate(self) -> LaunchSpec:
        """Check the spec; RequestError names the field and the limit."""
        for name, uri in {"output_path": self.output_path, **self.channels()}.items():
            if not str(uri).startswith("s3://") or len(str(uri)) <= 5:
                raise RequestError(name, f"must be an s3:// URI, got {uri!r}")
        if not self.role.startswith("arn:"):
            raise RequestError("role", f"must be an IAM role ARN, got {self.role!r}")
        if not 1 <= self.volume_size_gb <= 16384:
            raise RequestError("volume_size_gb", f"must be in [1, 16384], got {self.volume_size_gb}")
        if not 1 <= self.max_runtime_s <= 28 * 24 * 3600:
            raise RequestError(
                "max_runtime_s", f"must be in [1, {28 * 24 * 3600}] seconds, got {self.max_runtime_s}"
            )
        if self.max_wait_s is not None and not self.spot:
            raise RequestError("max_wait_s", "only applies with spot training")
        if self.spot and self.max_wait_s is not None and self.max_wait_s < self.max_runtime_s:
            raise RequestError(
                "max_wait_s",
                f"must be >= max_runtime_s ({self.max_runtime_s}) with spot, got {self.max_wait_s}",
            )
        reserved = {
            "instance_data_dir",
            "class_data_dir",
            "mask_dir",
            "output_dir",
            "checkpoint_dir",
            "logging_dir",
        }
        for key in self.hyperparameters:
            if key.replace("-", "_") in reserved:
                raise RequestError(
                    key, "is set from the job's channels and paths; pass the data as a channel"
                )
        return self


@dataclass
class LaunchResult:
    """The submitted job and where its outputs will land."""

    job_name: str
    model_artifacts: str
    adapter_path: str
    checkpoints: str


def stage_source_dir(dest: str | Path) -> Path:
    """Copy the entry script, requirements and the vendored ``tryon`` parts into ``dest``."""
    dest = Path(dest)
    src = training_dir()
    for name in ("train.py", "requirements.txt"):
        if not (src / name).is_file():
            raise FileNotFoundError(
                f"{src / name} is missing (set TRYON_TRAINING_DIR to the training/ folder)"
            )
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / name, dest / name)
    package = Path(tryon.__file__).resolve().parent
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in VENDORED:
        path = package / name
        if path.is_dir():
            shutil.copytree(path, dest / "tryon" / name, ignore=ignore, dirs_exist_ok=True)
        else:
            (dest / "tryon" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest / "tryon" / name)
    return dest


def hyperparameters_as_strings(values: Mapping[str, Any]) -> dict[str, str]:
    """Hyperparameters as the job receives them (lists as JSON, booleans as true/false)."""
    import json

    out = {}
    for key, value in values.items():
        if value is None:
            continue
        out[key.replace("-", "_")] = value if isinstance(value, str) else json.dumps(value)
    return out


def default_image_uri(region: str, instance_type: str) -> str:
    """The AWS PyTorch training image for ``instance_type`` (resolved offline)."""
    from sagemaker.core import image_uris

    return image_uris.retrieve(
        "pytorch",
        region,
        version=DEFAULT_FRAMEWORK_VERSION,
        py_version=DEFAULT_PY_VERSION,
        instance_type=instance_type,
        image_scope="training",
    )


def launch(spec: LaunchSpec, *, boto_session: Any = None, wait: bool = False) -> LaunchResult:
    """Submit the training job (telemetry off) and return its name and output locations."""
    import tempfile

    import boto3

    os.environ.setdefault("SAGEMAKER_VALIDATE_ROLE", "false")
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.shapes import (
        CheckpointConfig,
        MetricDefinition,
        OutputDataConfig,
        StoppingCondition,
        TensorBoardOutputConfig,
    )
    from sagemaker.core.training.configs import Compute, InputData, SourceCode
    from sagemaker.train import ModelTrainer

    from tryon.training.heldout import metric_definitions

    spec.validate()
    boto_session = boto_session or boto3.Session(region_name=spec.region)
    region = boto_session.region_name or spec.region
    if not region:
        raise RequestError("region", "is required (set AWS_DEFAULT_REGION or pass --region)")
    output_path = spec.output_path.rstrip("/")
    # Code and drivers are staged next to the outputs (the role can already write there)
    # instead of in the account's default sagemaker-<region>-<account> bucket.
    bucket, prefix = parse_s3_prefix(output_path, field="output_path")
    session = Session(
        boto_session=boto_session,
        sagemaker_config=TELEMETRY_OPT_OUT,
        default_bucket=bucket,
        default_bucket_prefix=prefix or None,
    )
    with tempfile.TemporaryDirectory(prefix="tryon-train-src-") as tmp:
        source_dir = stage_source_dir(Path(tmp) / "source")
        trainer = ModelTrainer(
            sagemaker_session=session,
            role=spec.role,
            base_job_name=spec.base_job_name,
            training_image=spec.image_uri or default_image_uri(region, spec.instance_type),
            source_code=SourceCode(
                source_dir=str(source_dir), entry_script="train.py", requirements="requirements.txt"
            ),
            compute=Compute(
                instance_type=spec.instance_type,
                instance_count=1,  # the entry script trains on one instance (one process)
                volume_size_in_gb=spec.volume_size_gb,
                enable_managed_spot_training=spec.spot,
            ),
            stopping_condition=StoppingCondition(
                max_runtime_in_seconds=spec.max_runtime_s,
                max_wait_time_in_seconds=(spec.max_wait_s or spec.max_runtime_s) if spec.spot else None,
            ),
            output_data_config=OutputDataConfig(s3_output_path=output_path),
            hyperparameters={**JOB_DEFAULTS, **hyperparameters_as_strings(spec.hyperparameters)},
            environment={"HF_HUB_DISABLE_TELEMETRY": "1", **spec.environment},
        )
        # The trainer picks the job name at submission, so each launch gets its own
        # checkpoint prefix (a spot restart of the same job resumes from it).
        token = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        checkpoints = f"{output_path}/checkpoints/{spec.base_job_name}-{token}"
        trainer = (
            trainer.with_checkpoint_config(
                CheckpointConfig(s3_uri=checkpoints, local_path=CONTAINER_CHECKPOINT_DIR)
            )
            .with_tensorboard_output_config(
                TensorBoardOutputConfig(
                    s3_output_path=f"{output_path}/tensorboard", local_path=CONTAINER_TENSORBOARD_DIR
                )
            )
            .with_metric_definitions(
                [MetricDefinition(name=d["Name"], regex=d["Regex"]) for d in metric_definitions()]
            )
        )
        channels = [InputData(channel_name=name, data_source=uri) for name, uri in spec.channels().items()]
        trainer.train(input_data_config=channels, wait=wait, logs=wait)
        job = trainer._latest_training_job
    job_name = job.training_job_name
    artifacts = f"{output_path}/{job_name}/output/model.tar.gz"
    return LaunchResult(
        job_name=job_name,
        model_artifacts=artifacts,
        adapter_path=f"{artifacts} -> adapter/pytorch_lora_weights.safetensors",
        checkpoints=checkpoints,
    )
