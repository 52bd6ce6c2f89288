"""The studio's local back end: the stack ``tryon run`` uses, published on moto as a named stack.

The page then reaches it exactly as it reaches a deployed stack (:class:`~tryon.studio.backend.
StackBackend`): uploads start executions through the template's EventBridge rules (single
images and batch manifests), and the CloudFormation outputs name its buckets and prefixes.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tryon.studio.backend import StackBackend

#: The local stack's name (what the page shows; the moto CloudFormation stack the backend finds).
LOCAL_STACK = "tryon-local"
#: The tiny LoRA adapters the local inpainting model carries (random weights, like its base):
#: name -> the folder ``python -m tryon.weights.tiny`` builds.
TINY_ADAPTERS = {"garment-a": "lora-a", "garment-b": "lora-b"}


def _tiny_inpaint_with_adapters(dest: Path) -> str:
    from tryon.local.samples import assemble_inpaint_model
    from tryon.weights.tiny import ensure_tiny_models

    tiny = ensure_tiny_models()
    adapters = {name: tiny[folder] for name, folder in TINY_ADAPTERS.items()}
    return str(assemble_inpaint_model(tiny["sd-inpaint-ip"], adapters, dest))


@contextmanager
def open_local(
    models: list[str] | None = None, *, log_level: str | None = "CRITICAL"
) -> Iterator[StackBackend]:
    """The local stack with the tiny checkpoints (their inpainting model with :data:`TINY_ADAPTERS`)
    or ``models`` (``KIND=DIR|HUB-ID``, as ``tryon run --models``), as a :class:`StackBackend`."""
    from tryon.cli.jobs import resolve_models
    from tryon.handlers.adapters import list_adapters
    from tryon.local.batch_runner import LocalBatches, distributed_map_engine
    from tryon.local.deployed import publish_stack
    from tryon.local.runner import TINY_PARAMETERS, open_workflow

    model_dirs, all_tiny = resolve_models(models or [])
    with tempfile.TemporaryDirectory(prefix="tryon-studio-") as scratch:
        if "sd_inpaint" not in {m.split("=", 1)[0] for m in models or []}:
            model_dirs["sd_inpaint"] = _tiny_inpaint_with_adapters(Path(scratch) / "sd-inpaint")
        adapters = [a for a in list_adapters(model_dirs["sd_inpaint"]) if a != "none"]
        with (
            distributed_map_engine(),
            open_workflow(
                model_dirs, parameters=TINY_PARAMETERS if all_tiny else None, log_level=log_level
            ) as wf,
        ):
            batches = LocalBatches(wf)
            batches.deliver_uploads()
            results = wf.template.parameters["ResultsPrefix"]
            with warnings.catch_warnings():  # moto parses no WaitConditionHandle: the stack needs none
                warnings.filterwarnings("ignore", message="Tried to parse AWS::CloudFormation")
                publish_stack(
                    wf,
                    LOCAL_STACK,
                    {
                        "ResultsPrefix": results,
                        "FailuresPrefix": wf.template.parameters.get("FailuresPrefix", "failures/"),
                        "BatchStateMachineArn": batches.state_machine_arn,
                        "BatchPrefix": batches.batch_prefix,
                        "BatchReportsPrefix": f"{results}batches/",
                    },
                )
            label = "local stack, tiny random checkpoints (images are noise)" if all_tiny else "local stack"
            yield StackBackend(
                wf.client,
                LOCAL_STACK,
                label=label,
                local_adapters=adapters,
                local=True,
                parameters={k: v for k, v in wf.template.parameters.items() if isinstance(v, str | int)},
            )
