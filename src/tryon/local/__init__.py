"""The whole workflow on one machine: the real template, ASL and Lambda handlers on moto.

:class:`tryon.local.harness.LocalWorkflow` is the one code path used by the tests and by
``tryon demo`` / ``tryon run``: it reads ``template.yaml``, creates the buckets, functions and
state machine in moto, runs the Lambda handlers in-process and sends ``sagemaker-runtime``
traffic to the local endpoint server (the real model handlers).
"""

from tryon.aws.executions import ExecutionResult, StateEvent
from tryon.local.harness import LocalWorkflow
from tryon.local.template import SamTemplate, load_template

__all__ = ["ExecutionResult", "LocalWorkflow", "SamTemplate", "StateEvent", "load_template"]
