"""The local harness as a deployed stack: ``tryon submit``, ``status`` and ``results`` reach it by name.

:func:`publish_stack` creates a CloudFormation stack (on moto) whose Outputs are those of
``template.yaml`` that the CLI reads (:mod:`tryon.aws.stack`), pointing at the harness's buckets,
prefixes and state machine, so the commands find it with ``--stack NAME`` exactly as they
find a stack in AWS.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def publish_stack(
    wf: Any, name: str, extra_outputs: Mapping[str, str | None] | None = None
) -> dict[str, str]:
    """Create stack ``name`` with the outputs of the running :class:`~tryon.local.LocalWorkflow` ``wf``.

    ``extra_outputs`` adds outputs (a batch state machine's) or, with a None value, leaves one out
    (a stack deployed before that output existed). Returns the outputs.
    """
    outputs: dict[str, str | None] = {
        "InputBucketName": wf.input_bucket,
        "OutputBucketName": wf.output_bucket,
        "InputPrefix": wf.input_prefix,
        "GarmentPrefix": wf.template.parameters["GarmentPrefix"],
        "MaskPrefix": wf.template.parameters["MaskPrefix"],
        "StateMachineArn": wf.state_machine_arn,
        **(extra_outputs or {}),
    }
    kept = {key: value for key, value in outputs.items() if value is not None}
    template = {
        "Resources": {"Marker": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {key: {"Value": value} for key, value in kept.items()},
    }
    wf.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))
    return kept
