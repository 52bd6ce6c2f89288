"""SageMaker training entry point: DreamBooth + LoRA fine-tune of the inpainting model.

SageMaker passes the hyperparameters as ``--key value`` arguments and the data channels
as ``SM_CHANNEL_<NAME>`` folders; the adapter goes to ``SM_MODEL_DIR`` (tarred into
``model.tar.gz``) and checkpoints to ``/opt/ml/checkpoints`` (synced to S3, so a spot
restart resumes). Locally the same script runs as ``python training/train.py --help``.
The ``tryon`` package is vendored next to this file by the launcher.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

HERE = Path(__file__).resolve().parent
if (HERE / "tryon").is_dir():  # the vendored copy inside the job's source folder
    sys.path.insert(0, str(HERE))

#: SageMaker channel (env var) -> training option it fills in.
CHANNEL_OPTIONS = {
    "SM_CHANNEL_INSTANCE": "--instance-data-dir",
    "SM_CHANNEL_CLASS": "--class-data-dir",
    "SM_CHANNEL_MASKS": "--mask-dir",
    "SM_CHANNEL_BASE_MODEL": "--pretrained-model",
    "SM_CHANNEL_CLIPSEG": "--clipseg-model",
    "SM_CHANNEL_METRIC_MODELS": "--validation-metric-models",
}
CHECKPOINT_DIR = "/opt/ml/checkpoints"


def sagemaker_arguments(environ: Mapping[str, str], checkpoint_dir: str = CHECKPOINT_DIR) -> list[str]:
    """Options implied by the SageMaker environment; explicit arguments given after them win."""
    args: list[str] = []
    for variable, option in CHANNEL_OPTIONS.items():
        if environ.get(variable):
            args += [option, environ[variable]]
    if environ.get("SM_MODEL_DIR"):
        args += ["--output-dir", environ["SM_MODEL_DIR"]]
        if Path(checkpoint_dir).is_dir():
            args += ["--checkpoint-dir", checkpoint_dir, "--resume-from-checkpoint", "latest"]
    return args


def main(argv: list[str] | None = None) -> int:
    """Parse arguments (after the SageMaker defaults), train, print where the outputs are."""
    from tryon.core.errors import RequestError
    from tryon.training.config import config_from_args

    argv = sys.argv[1:] if argv is None else argv
    try:
        config = config_from_args(sagemaker_arguments(os.environ) + argv, prog="training/train.py")
        from tryon.training.loop import train

        result = train(config)
    except RequestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"trained {result.global_step} steps in {result.seconds:.1f} s; outputs in {result.output_dir}")
    if result.adapter_dir:
        print(f"adapter: {result.adapter_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
