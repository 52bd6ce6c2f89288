"""Catalogue batches on one machine: the batch state machine of ``template.yaml`` on :class:`LocalWorkflow`.

Everything the deployed batch runs is real here too: the ASL in ``statemachine/batch.asl.json``
(a Distributed Map whose rows start the single-image state machine with
``startExecution.sync:2``), ValidateBatch and SummarizeBatch, and each row's try-on through
the real handlers and models. These gaps of moto 5.2.5's Step Functions interpreter are filled
by :func:`distributed_map_engine`, in the harness only (the ASL is what AWS runs):

* ``states:startExecution`` tasks pass the ASL's parameter names (``StateMachineArn``,
  ``Input``) to boto3 unchanged, which wants ``stateMachineArn``/``input``: every child
  fails with ``States.Runtime``. The patch renames them as AWS's integration does.
* The integration's answers keep boto3's names (``executionArn``, ``output``) where AWS
  answers ``ExecutionArn``, ``Output``: the ``.sync:2`` wait fails with ``States.Runtime``.
  The patch renames them.
* ``describe_map_run`` and ``list_map_runs`` fail on any execution that has no worker (or
  no environment) yet; the patch skips those.
* A child started without a ``Name`` gets the ARN ``...:None`` (moto passes ``name=None``),
  so the second child fails with ``ExecutionAlreadyExists``; AWS generates a unique name, and
  so does the patch.
* ``ToleratedFailurePercentage(Path)`` is parsed but ignored (moto logs "no effect"): a map
  with failed items succeeds. The patch applies it as AWS does: once the failed items are
  over the percentage no further item starts, and the map fails with
  ``States.ExceedToleratedFailureThreshold``.

moto's ResultWriter writes a manifest with empty result lists; SummarizeBatch does not rely on
the ResultWriter's files (it reads each row's manifest or failure record), so nothing is emulated
there.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

from tryon.aws.batch_progress import BatchProgress, map_run_progress, report_uri
from tryon.aws.executions import ExecutionResult
from tryon.core.errors import RequestError
from tryon.local.harness import LocalWorkflow
from tryon.workflow import batch_manifest, layout

BATCH_STATE_MACHINE_ID = "BatchStateMachine"
BATCH_EVENT_ID = "BatchUploaded"
_SFN_PARAMETER_NAMES = {"StateMachineArn": "stateMachineArn", "Input": "input", "Name": "name"}


def _exceeded(record: Any, tolerated_percentage: float, items: int) -> bool:
    failed = record.item_counter.failed.get() + record.item_counter.timed_out.get()
    return items > 0 and failed * 100.0 > tolerated_percentage * items


@contextmanager
def distributed_map_engine() -> Iterator[None]:
    """Patch moto's interpreter where it differs from AWS for this state machine (see the module doc)."""
    from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails, ResourceNotFound
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        distributed_iteration_component as dic,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
        distributed_item_processor as dip,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
        distributed_item_processor_worker as dipw,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_sfn as sfn_task,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    task_cls, worker_cls = sfn_task.StateTaskServiceSfn, dipw.DistributedItemProcessorWorker
    normalise, create_worker = task_cls._normalise_parameters, dip.DistributedItemProcessor._create_worker
    normalise_response = task_cls._normalise_response
    eval_job, map_run = worker_cls._eval_job, dic.DistributedIterationComponent._map_run

    def normalise_parameters(self: Any, parameters: dict, *args: Any, **kwargs: Any) -> None:
        normalise(self, parameters, *args, **kwargs)
        if self._get_boto_service_action() == "start_execution":
            for asl_name, boto_name in _SFN_PARAMETER_NAMES.items():
                if asl_name in parameters:
                    parameters[boto_name] = parameters.pop(asl_name)
            parameters.setdefault("name", uuid.uuid4().hex)  # AWS names an unnamed execution

    def pascal_case_response(self: Any, response: Any, *args: Any, **kwargs: Any) -> None:
        normalise_response(self, response, *args, **kwargs)
        action = kwargs.get("service_action_name") or self._get_boto_service_action()
        if action in {"start_execution", "describe_execution"} and isinstance(response, dict):
            for name in [k for k in response if k[:1].islower()]:
                response[name[0].upper() + name[1:]] = response.pop(name)

    def describe_map_run(self: Any, map_run_arn: str) -> dict[str, Any]:
        for execution in self._get_executions():
            worker = execution.exec_worker
            env = getattr(worker, "env", None)
            record = env.map_run_record_pool_manager.get(map_run_arn) if env else None
            if record is not None:
                return record.describe()
        raise ResourceNotFound()

    def list_map_runs(self: Any, execution_arn: str) -> dict[str, Any]:
        execution = self.describe_execution(execution_arn=execution_arn)
        env = getattr(execution.exec_worker, "env", None)
        records = env.map_run_record_pool_manager.get_all() if env else []
        return {"mapRuns": [record.list_item() for record in records]}

    def tolerant_worker(self: Any, env: Any, eval_input: Any, job_pool: Any) -> Any:
        worker = create_worker(self, env, eval_input, job_pool)
        worker._tolerance = (float(eval_input.tolerated_failure_percentage or 0), job_pool._jobs_number)
        return worker

    def guarded_eval_job(self: Any, env: Any, job: Any) -> None:
        tolerated, items = getattr(self, "_tolerance", (100.0, 0))
        if _exceeded(self._map_run_record, tolerated, items):
            self._map_run_record.item_counter.aborted.count()  # AWS starts no further item
            job.job_output = None
            return
        eval_job(self, env, job)

    def failing_map_run(self: Any, env: Any, eval_input: Any) -> None:
        items_before = len(env.stack[-1]) if env.stack and isinstance(env.stack[-1], list) else 0
        map_run(self, env, eval_input)
        tolerated = float(eval_input.tolerated_failure_percentage or 0)
        if _exceeded(eval_input.map_run_record, tolerated, items_before):
            name = StatesErrorName(typ=StatesErrorNameType.StatesExceedToleratedFailureThreshold)
            cause = "The specified tolerated failure threshold was exceeded"
            details = MapRunFailedEventDetails(error=name.error_name, cause=cause)
            event = EventDetails(mapRunFailedEventDetails=details)
            raise FailureEventException(FailureEvent(env, name, HistoryEventType.MapRunFailed, event))

    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(task_cls, "_normalise_parameters", normalise_parameters))
        stack.enter_context(mock.patch.object(task_cls, "_normalise_response", pascal_case_response))
        backend = StepFunctionsParserBackend
        stack.enter_context(mock.patch.object(backend, "describe_map_run", describe_map_run))
        stack.enter_context(mock.patch.object(backend, "list_map_runs", list_map_runs))
        processor = dip.DistributedItemProcessor
        stack.enter_context(mock.patch.object(processor, "_create_worker", tolerant_worker))
        stack.enter_context(mock.patch.object(worker_cls, "_eval_job", guarded_eval_job))
        stack.enter_context(mock.patch.object(dic.DistributedIterationComponent, "_map_run", failing_map_run))
        yield


@dataclass
class BatchOutcome:
    """How a batch execution ended: the execution, SummarizeBatch's answer and its report."""

    result: ExecutionResult
    summary: dict[str, Any] | None
    report: dict[str, Any] | None  # report.json (a refused batch's too, when its rows were read)
    report_uri: str | None = None  # where report.json was in the (local) output bucket


class LocalBatches:
    """The batch state machine of a running :class:`LocalWorkflow` (enter the workflow first)."""

    def __init__(self, workflow: LocalWorkflow) -> None:
        self.wf = workflow
        self._rule: str | None = None
        # One client, made now: making one iterates os.environ, which the harness changes
        # around each Lambda invocation while executions run.
        self.sfn = workflow.client("stepfunctions")

    @property
    def state_machine_arn(self) -> str:
        """ARN of the batch state machine the workflow created from the template."""
        return self.wf.template.resources[BATCH_STATE_MACHINE_ID]["Ref"]

    @property
    def batch_prefix(self) -> str:
        """Where manifests are uploaded in the input bucket (template parameter ``BatchPrefix``)."""
        return self.wf.template.parameters["BatchPrefix"]

    def deliver_uploads(self) -> None:
        """Create the template's ``BatchUploaded`` rule, so a manifest upload starts a batch (needs
        ``LocalWorkflow(deliver_events=True)``, which delivers rule matches to state machines)."""
        if self._rule:
            return
        pattern = self.wf.template.event_pattern(BATCH_STATE_MACHINE_ID, BATCH_EVENT_ID)
        events = self.wf.client("events")
        self._rule = f"{self.wf.stack_name}-{BATCH_EVENT_ID}"
        events.put_rule(Name=self._rule, EventPattern=json.dumps(pattern), State="ENABLED")
        target = {"Id": BATCH_STATE_MACHINE_ID, "Arn": self.state_machine_arn}
        events.put_targets(Rule=self._rule, Targets=[target])

    def upload_manifest(
        self, data: bytes | str, name: str, *, metadata: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Put a manifest under the batch prefix of the input bucket; bucket, key, version id."""
        body = data.encode() if isinstance(data, str) else data
        key = name if name.startswith(self.batch_prefix) else self.batch_prefix + name
        return self.wf.upload(body, key, metadata=metadata, content_type="text/plain")

    def start(self, batch_input: Any) -> str:
        """Start a batch with any input (``{"batch": "s3://..."}`` or an S3 event); its ARN."""
        return self.sfn.start_execution(
            stateMachineArn=self.state_machine_arn,
            name=f"batch-{uuid.uuid4().hex[:20]}",
            input=json.dumps(batch_input),
        )["executionArn"]

    def find_started(self, key: str, *, timeout: float = 30.0) -> str:
        """The execution the upload rule started for the manifest at ``key``."""
        from tryon.aws.stack import Stack, Upload, find_execution

        wf = self.wf
        stack = Stack(
            wf.stack_name, wf.input_bucket, wf.output_bucket, wf.input_prefix, self.state_machine_arn
        )
        upload = Upload(wf.input_bucket, key, None, datetime.now(UTC))
        return find_execution(self.sfn, stack, upload, timeout_seconds=timeout, poll_seconds=0.1)

    def wait(
        self,
        execution_arn: str,
        *,
        timeout: float = 3600.0,
        on_progress: Callable[[BatchProgress], None] | None = None,
        poll_s: float = 0.2,
    ) -> BatchOutcome:
        """Poll until the batch ends (``on_progress`` gets the map run's counts); its outcome and report."""
        sfn = self.sfn
        deadline = time.monotonic() + timeout
        while sfn.describe_execution(executionArn=execution_arn)["status"] == "RUNNING":
            if time.monotonic() > deadline:
                sfn.stop_execution(executionArn=execution_arn, cause="local batch timed out")
                raise TimeoutError(f"batch {execution_arn} ran past {timeout:.0f} s")
            if on_progress is not None:
                progress = self._progress(execution_arn)
                if progress is not None:
                    on_progress(progress)
            time.sleep(poll_s)
        result = self.wf.wait(execution_arn, timeout=10.0)
        if on_progress is not None and (progress := self._progress(execution_arn)) is not None:
            on_progress(progress)
        summary = result.state_output("SummarizeBatch")
        summary = summary.get("summary") if isinstance(summary, dict) else None
        uri = report_uri(summary, result.cause)
        return BatchOutcome(result, summary, self.wf.read_json(uri) if uri else None, uri)

    def _progress(self, execution_arn: str) -> BatchProgress | None:
        validated = ExecutionResult(execution_arn, "RUNNING", None, None, None)
        validated.history = self.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)[
            "events"
        ]
        state = validated.state_output("ValidateBatch")
        total = (state or {}).get("batch", {}).get("to_run", 0)
        return map_run_progress(self.sfn, execution_arn, total)


def local_rows(manifest: Path, *, allow_invalid_rows: bool = False) -> tuple[list[Any], dict[str, Path]]:
    """A local manifest's rows with each ``image`` (a photo file, relative to the manifest's folder)
    replaced by the key it is uploaded under; and key -> file.

    Every bad row is named at once, before the stack starts or a model loads: a row that is not
    an object, an unknown column or a bad value, an ``s3://`` image, a photo that is not a file.
    With ``allow_invalid_rows`` the bad rows go on to ValidateBatch instead (a missing photo
    under a key nothing was uploaded to), which reports them beside the good rows' results.
    Keys keep each photo's path relative to the folder that holds the manifest and every photo,
    so two photos with the same file name in different folders stay two objects.
    """
    rows = batch_manifest.parse_manifest(manifest.read_bytes(), manifest.name)
    folder = manifest.parent.resolve()
    problems: list[str] = []
    found: dict[int, Path] = {}
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            problems.append(f"row {number}: must be a JSON object, got {type(row).__name__}")
            continue
        image = row.get("image")
        try:  # every column and value, as ValidateBatch checks them (the photo aside)
            batch_manifest.row_console_input({**row, "image": "local.png"}, "local", "")
        except RequestError as exc:
            problems.append(f"row {number}: {exc.field}: {exc.detail}")
        if not isinstance(image, str) or not image.strip():
            problems.append(f"row {number}: image: is required (a photo file relative to {manifest.parent})")
        elif image.startswith("s3://"):
            problems.append(f"row {number}: image: {image} is an s3:// URI; locally rows name photo files")
        elif not (folder / image).is_file():
            problems.append(f"row {number}: image: {image} is not a file (relative to {manifest.parent})")
        else:
            found[number] = (folder / image).resolve()
    if problems and not allow_invalid_rows:
        raise RequestError(
            "MANIFEST",
            f"{len(problems)} problem(s) in {manifest.name} (pass --allow-invalid-rows to run the good rows "
            "and report the bad ones): " + "; ".join(problems),
        )
    base = Path(os.path.commonpath([folder, *(path.parent for path in found.values())]))
    photos: dict[str, Path] = {}
    out: list[Any] = []
    for number, row in enumerate(rows, start=1):
        if number in found:
            rel = found[number].relative_to(base).as_posix()
            photos[rel] = found[number]
            out.append({**row, "image": rel})
        else:
            out.append(row)  # ValidateBatch refuses it and reports it with the others
    return out, photos


def run_batch(
    manifest: Path,
    *,
    model_dirs: Mapping[str, str | os.PathLike[str]],
    out_dir: Path,
    options: Mapping[str, Any] | None = None,
    parameters: Mapping[str, Any] | None = None,
    upscale: bool = True,
    on_progress: Callable[[BatchProgress], None] | None = None,
    on_status: Callable[[str], None] = lambda _msg: None,
    timeout: float = 24 * 3600.0,
    log_level: str | None = "WARNING",
) -> BatchOutcome:
    """A local manifest through the batch state machine of the local stack ``tryon demo`` uses.

    The photos are uploaded under the input prefix and the manifest (images rewritten to those
    keys) under the batch prefix; the batch starts from a console input carrying ``options``.
    (No EventBridge delivery here: each photo upload would also start a single-image try-on.)
    Each call starts a fresh in-memory stack, so every row runs again: the skipping of complete
    rows on a re-run is a deployed stack's (its buckets keep the results).
    The report, the contact sheets and each finished row's files land in ``out_dir/<batch-id>/``.
    """
    rows, photos = local_rows(manifest, allow_invalid_rows=bool((options or {}).get("allow_invalid_rows")))
    fmt = batch_manifest.manifest_format(manifest.name)
    on_status("starting the local stack and loading the models")
    with (
        distributed_map_engine(),
        LocalWorkflow(model_dirs, parameters=parameters, upscale=upscale, log_level=log_level) as wf,
    ):
        batches = LocalBatches(wf)
        for rel, path in photos.items():
            wf.upload(path, f"{wf.input_prefix}{rel}")
        uploaded = batches.upload_manifest(batch_manifest.write_manifest(rows, fmt), manifest.name)
        uri = f"s3://{uploaded['bucket']}/{uploaded['key']}"
        on_status(f"uploaded {len(photos)} photo(s) and {uri}")
        arn = batches.start({"batch": uri, **(options or {})})
        on_status(f"started {arn.rsplit(':', 1)[-1]}")
        outcome = batches.wait(arn, timeout=timeout, on_progress=on_progress)
        if outcome.report is not None:
            _download(wf, outcome.report, out_dir / outcome.report["batch_id"])
    return outcome


def _download(wf: LocalWorkflow, report: Mapping[str, Any], target: Path) -> None:
    """The batch's report folder, and each row's result folder under ``rows/<row>/``."""
    prefix = wf.template.parameters["ResultsPrefix"] + f"{layout.BATCH_REPORTS}{report['batch_id']}/"
    wf.download_results(prefix, target)
    for row in report["rows"]:
        if row.get("manifest"):
            wf.download_results(row["manifest"], target / "rows" / str(row["row"]))
