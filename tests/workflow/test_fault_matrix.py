"""Faults at every AWS call (issue 17): each call the Lambda functions make, faulted once and every time.

The calls are not listed by hand: a census run of each scenario (a try-on with upscaling, a job
that fails, a stale claim taken over, an asynchronous try-on, a catalogue batch) records every
call the functions make (function, service, operation, and for S3 what the key is). Then each
call meets each transient fault its service documents (throttling, 500, 503, 409 for S3's
conditional writes, a connection reset), injected at botocore's ``before-send``
(:class:`tryon.local.faults.FaultInjector`, so botocore's own retries apply): once (every call of
a scenario at the same time, one execution per fault) and persistently (one execution per call
and fault). Every execution must keep the invariants:

- it ends with exactly one manifest or failure record, and a record that the fault caused names
  the call (its operation, or the endpoint);
- no model runs twice for the job (endpoint calls that reached the server, per endpoint);
- the input is not modified (one version, the same bytes);
- no claim is left behind.

A few cells cannot keep them, by design, and are checked for what they do instead (see
:data:`EXPECTED`). The matrix (call x fault -> outcome) is printed and must equal the one in
docs/workflow.md (``TRYON_WRITE_FAULT_MATRIX=1`` rewrites it).

To end every fault in seconds, the test shortens waits that are not template parameters: botocore's
retry backoff (0), the state machine's retry intervals (moto's interpreter sleeps a hundredth of
them) and the claim's and the notifications' pauses (0); the asynchronous waits are template
parameters (``AsyncInvocationTimeoutSeconds`` 20, ``AsyncGraceSeconds`` 10).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from unittest import mock

import pytest
from support.paths import REPO
from support.workflow import all_models

from tryon.local import LocalWorkflow, faults
from tryon.local.batch_runner import LocalBatches, distributed_map_engine
from tryon.local.lambdas import environment
from tryon.local.samples import sample_photo
from tryon.workflow import batch_manifest, claim, layout, steps
from tryon.workflow.job import build_job
from tryon.workflow.jobid import fallback_job_id
from tryon.workflow.prepare import within_handler_limits
from tryon.workflow.settings import Settings

pytestmark = pytest.mark.slow

REALTIME = {"DefaultSteps": 1, "DefaultUpscaleSteps": 1}
ASYNC = {**REALTIME, "AsyncInvocationTimeoutSeconds": 20, "AsyncGraceSeconds": 10}
DEADLINE_S = 300
WORKERS = 4
DOC = REPO / "docs" / "workflow.md"
BEGIN, END = "<!-- fault matrix: begin -->", "<!-- fault matrix: end -->"
FAULT_NAMES = ("throttling", "500", "503", "409", "reset")
#: Every time: the error responses in turn (each attempt of botocore and of the state machine
#: meets the next one), a connection reset, and S3's 409 on conditional writes.
RESPONSES = ("throttling", "500", "503")
PERSISTENT = ("responses", "reset", "409")
GHOST = "arn:aws:states:us-east-1:123456789012:execution:{stack}-tryon:ghost-{name}"


@dataclass(frozen=True, order=True)
class CallId:
    """A call site: which function calls what, and (S3) on what kind of object."""

    function: str
    service: str
    operation: str
    target: str = ""

    def label(self) -> str:
        where = f" {self.target}" if self.target else ""
        return f"{self.function.removesuffix('Function')} {self.service} {self.operation}{where}"

    def faults(self) -> tuple[faults.Fault, ...]:
        conditional = self.service == "s3" and self.operation == "PutObject" and self.target == "claim.json"
        return faults.faults_for(self.service, self.operation, conditional)


def target(call: faults.Call) -> str:
    """What an S3 call is about (by the layout of keys), or the endpoint a runtime call names."""
    if call.service == "sagemaker-runtime":
        return call.url.split("/endpoints/", 1)[1].split("/", 1)[0]
    if call.service != "s3":
        return ""
    key = call.key
    name = PurePosixPath(key).name
    prefixes = {
        "inputs/": "photo",
        "batches/": "batch manifest",
        "failures/": "failure record",
        "async/requests/": "async request",
        "async/outputs/": "async answer",
        "async/errors/": "async error",
    }
    for prefix, label in prefixes.items():
        if key.startswith(prefix):
            return label
    if name.startswith("contact-sheet"):
        return "contact sheet"
    if name.startswith(("inpainted-", "upscaled-")):
        return name.split("-")[0] + " image"
    return name


def ident(call: faults.Call) -> CallId:
    return CallId(call.function, call.service, call.operation, target(call))


#: Cells that cannot keep every invariant (every time), and what they do instead.
EXPECTED = {
    # the failure recorder cannot write its record: the step fails (the notifications carry the
    # record) and the claim stays, held by that ended execution: the next one takes it over
    CallId("RecordFailureFunction", "s3", "PutObject", "failure record"): {"no record", "claim left"},
    # a claim that cannot be released stays behind, held by an ended execution: taken over next time
    CallId("FinalizeFunction", "s3", "GetObject", "claim.json"): {"claim left"},
    CallId("FinalizeFunction", "s3", "DeleteObject", "claim.json"): {"claim left"},
    CallId("RecordFailureFunction", "s3", "GetObject", "claim.json"): {"claim left"},
    CallId("RecordFailureFunction", "s3", "DeleteObject", "claim.json"): {"claim left"},
    # the claim's holder cannot be checked: a doubt never starts a second run (already-running, no record)
    CallId("PrepareFunction", "stepfunctions", "DescribeExecution"): {"holder unknown"},
}


@dataclass
class Scenario:
    """What a run looks like without faults, and which of its calls the matrix covers."""

    name: str
    console: dict[str, Any]
    functions: tuple[str, ...]  # whose calls this scenario covers
    endpoint_calls: dict[str, int]  # endpoint -> the most calls that may reach it for one job
    baseline: str  # the outcome without faults
    ghost_claim: bool = False
    batch: bool = False
    calls: list[CallId] = field(default_factory=list)


@dataclass
class Cell:
    """One execution of the matrix: the calls faulted (each with its service's fault) and what it showed."""

    scenario: Scenario
    mode: str  # census | once | persistent
    fault_name: str = ""
    faults: dict[CallId, faults.Fault | tuple[faults.Fault, ...]] = field(default_factory=dict)
    outcome: str = ""
    fired: dict[CallId, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def calls(self) -> list[CallId]:
        return list(self.faults)


# ------------------------------------------------------------------ faster waits (test only)
@contextmanager
def short_waits() -> Iterator[None]:
    from botocore.retries import standard
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    class ScaledTime:
        """moto's retrier sleeps a hundredth of the ASL's intervals."""

        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        @staticmethod
        def sleep(seconds: float) -> None:
            time.sleep(seconds / 100)

    with ExitStack() as stack:
        stack.enter_context(
            mock.patch.object(standard.ExponentialBackoff, "delay_amount", lambda self, ctx: 0)
        )
        stack.enter_context(mock.patch.object(retrier_decl, "time", ScaledTime()))
        stack.enter_context(mock.patch.object(claim, "CONFLICT_PAUSE_S", 0.0))
        stack.enter_context(mock.patch.object(steps, "ANNOUNCE_PAUSE_S", 0.0))
        yield


# ------------------------------------------------------------------ running one cell
def _job(wf: LocalWorkflow, console: dict[str, Any]) -> dict[str, Any]:
    """The job Prepare will make of ``console`` (its id and result prefix), computed as Prepare does."""
    env = {**wf.template.function_environment("PrepareFunction"), "AWS_DEFAULT_REGION": wf.region}
    with environment(env):
        return build_job(within_handler_limits(Settings.from_env()), console)


def _exists(wf: LocalWorkflow, bucket: str, key: str) -> bool:
    return key in wf.list_keys(key, bucket)


def _arm(injector: faults.FaultInjector, cell: Cell, markers: tuple[str, ...]) -> list[faults.Rule]:
    times = None if cell.mode == "persistent" else 1
    rules = []
    for call_id, fault in cell.faults.items():

        def matches(call: faults.Call, call_id: CallId = call_id) -> bool:
            return ident(call) == call_id and any(m in call.event for m in markers)

        rules.append(injector.arm(fault, matches, times))
    return rules


def _endpoint_calls(injector: faults.FaultInjector, markers: tuple[str, ...]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in list(injector.delivered):
        if call.service == "sagemaker-runtime" and any(m in call.event for m in markers):
            counts[target(call)] = counts.get(target(call), 0) + 1
    return counts


def _outcome(result: Any, record: dict | None, manifest: bool) -> str:
    retried = any(e.phase == "error" for e in result.events)
    if result.status == "SUCCEEDED":
        status = (result.output or {}).get("status", "?")
        if status == "succeeded" and manifest:
            return "ok, retried" if retried else "ok"
        return status
    if result.status == "FAILED" and record:
        return f"{record['error']} at {record['step']}"
    return f"{result.status}, no record"


def _lost(cell: Cell) -> str:
    """What a persistent fault on a notification loses (the job's outcome is recorded all the same)."""
    if cell.mode != "persistent":
        return ""
    ops = {(c.service, c.operation) for c in cell.calls}
    if ("events", "PutEvents") in ops:
        return "; event lost (logged)"
    if ("sns", "Publish") in ops:
        return "; notification lost (logged)"
    return ""


def run_single(wf: LocalWorkflow, injector: faults.FaultInjector, cell: Cell) -> None:
    """A single-image execution of ``cell``: start, wait, check the invariants, note the outcome."""
    sc = cell.scenario
    name = f"fm-{uuid.uuid4().hex[:10]}"
    key, photo = f"inputs/{name}.png", sample_photo()
    wf.upload(photo, key)
    console = {"image": f"s3://{wf.input_bucket}/{key}", **sc.console}
    job = _job(wf, console)
    out, prefix, job_id = wf.output_bucket, job["output"]["prefix"], job["job_id"]
    markers = (key, job_id[:16])
    if sc.ghost_claim:  # held by an execution that has ended: taken over
        ghost = GHOST.format(stack=wf.stack_name, name=name)
        doc = {"execution": ghost, "claimed_at": time.time(), "expires_at": time.time() + 3600}
        wf.client("s3").put_object(Bucket=out, Key=claim.claim_key(prefix), Body=json.dumps(doc).encode())
    rules = _arm(injector, cell, markers)
    try:
        result = wf.wait(wf.start(console), timeout=DEADLINE_S)
    finally:
        for rule in rules:
            injector.disarm(rule)
    cell.fired = {c: r.fired for c, r in zip(cell.calls, rules, strict=True)}
    manifest = _exists(wf, out, prefix + layout.MANIFEST)
    # a job's record, or, when Prepare failed before it made the job, the record of the raw input
    record = None
    for record_id in (job_id, fallback_job_id(console)):
        failure_key = layout.failure_key("failures/", record_id)
        if _exists(wf, out, failure_key):
            record = wf.read_json(failure_key)
    cell.outcome = _outcome(result, record, manifest) + _lost(cell)
    expected = (
        set().union(*(EXPECTED.get(c, set()) for c in cell.calls)) if cell.mode == "persistent" else set()
    )
    problems = cell.problems
    # every execution ends with exactly one manifest or failure record ...
    if "no record" in expected:
        if record or manifest or result.status != "FAILED" or result.states()[-1] != "RecordFailure":
            problems.append(f"expected FAILED in RecordFailure without a record, got {cell.outcome}")
    elif "holder unknown" in expected and (result.output or {}).get("status") == "already-running":
        pass  # the holder's manifest or failure record is where the job's outcome will be
    elif manifest == bool(record):
        problems.append(f"manifest {manifest} and failure record {bool(record)}: exactly one expected")
    # ... that names the call
    if record and cell.outcome != sc.baseline and cell.mode != "census":
        named = {c.operation for c in cell.calls} | {
            c.target for c in cell.calls if c.service == "sagemaker-runtime"
        }
        named |= {e for e in job["endpoints"].values() if e}
        if not any(n and n in record["cause"] for n in named):
            problems.append(f"the failure record does not name the call: {record['cause'][:300]}")
    # no model runs twice
    for endpoint, count in _endpoint_calls(injector, markers).items():
        if count > sc.endpoint_calls.get(endpoint, 0):
            errors = [(e.state, e.error) for e in result.events if e.phase == "error"]
            problems.append(
                f"{endpoint} ran {count} times for one job (at most {sc.endpoint_calls.get(endpoint, 0)}); "
                f"states {result.states()}, errors {errors}"
            )
    # the input is not modified
    versions = wf.client("s3").list_object_versions(Bucket=wf.input_bucket, Prefix=key)
    if (
        len(versions.get("Versions", [])) != 1
        or versions.get("DeleteMarkers")
        or wf.read_bytes(f"s3://{wf.input_bucket}/{key}") != photo
    ):
        problems.append("the input was modified")
    # no claim is left behind (or, where the release itself failed, it blocks nothing)
    claim_key = claim.claim_key(prefix)
    if _exists(wf, out, claim_key):
        holder = wf.read_json(claim_key)["execution"]
        if claim.execution_is_running(holder):
            problems.append(f"claim left behind by {holder}, which still runs")
        elif holder == result.execution_arn and "claim left" not in expected:
            problems.append("the execution left its claim behind")
        elif holder != result.execution_arn and not sc.ghost_claim:
            problems.append(f"a claim held by {holder}")
    if cell.mode == "persistent" and any(c.function == "CompleteAsyncFunction" for c in cell.calls):
        _check_dead_letters(wf, cell, job_id[:16])


#: Every message read from CompleteAsync's on-failure queue (cells read it concurrently).
DEAD_LETTERS: list[str] = []
_DEAD_LETTERS_LOCK = threading.Lock()


def _check_dead_letters(wf: LocalWorkflow, cell: Cell, marker: str) -> None:
    """A notification CompleteAsync failed on every attempt is kept in its on-failure queue (item 9)."""
    if cell.outcome.startswith("ok"):
        return  # a lost heartbeat or an unreleased token record: the task completed anyway
    url = wf.template.resources["AsyncNotificationDeadLetterQueue"]["Ref"]
    sqs = wf.client("sqs")
    for _ in range(50):
        with _DEAD_LETTERS_LOCK:
            while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                for message in got:
                    DEAD_LETTERS.append(message["Body"])
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            if any(marker in body and "RetriesExhausted" in body for body in DEAD_LETTERS):
                return
        time.sleep(0.1)
    cell.problems.append("CompleteAsync failed, but its notification is not in the on-failure queue")


#: The photo of every batch's one row, tried on once (the rows are already complete: ValidateBatch and
#: SummarizeBatch make every call they make for a row that runs, and no model runs again).
BATCH_PHOTO = "inputs/fm-batch-row.png"


def run_batch(wf: LocalWorkflow, injector: faults.FaultInjector, cell: Cell) -> None:
    """A one-row catalogue batch: it ends with its report or a failure record, never both."""
    batches = LocalBatches(wf)
    name = f"fm-{uuid.uuid4().hex[:10]}"
    body = json.dumps({"image": PurePosixPath(BATCH_PHOTO).name}) + "\n"
    uploaded = batches.upload_manifest(body, f"{name}.jsonl")
    markers = (uploaded["key"],)
    rules = _arm(injector, cell, markers)
    try:
        outcome = batches.wait(
            batches.start({"batch": f"s3://{wf.input_bucket}/{uploaded['key']}"}), timeout=DEADLINE_S
        )
    finally:
        for rule in rules:
            injector.disarm(rule)
    cell.fired = {c: r.fired for c, r in zip(cell.calls, rules, strict=True)}
    batch_id = batch_manifest.batch_id_for(body.encode(), uploaded["version_id"])
    report_key = f"results/{layout.BATCH_REPORTS}{batch_id}/report.json"
    report = _exists(wf, wf.output_bucket, report_key)
    record = wf.failure_record(outcome.result.execution_arn)
    result = outcome.result
    if result.status == "SUCCEEDED" and report:
        cell.outcome = "ok, retried" if any(e.phase == "error" for e in result.events) else "ok"
    elif record:
        cell.outcome = f"{record['error']} at {record['step']}"
    else:
        cell.outcome = f"{result.status}, no record"
    cell.outcome += _lost(cell)
    if report == bool(record):
        cell.problems.append(f"report {report} and failure record {bool(record)}: exactly one expected")
    if record and cell.mode != "census" and not any(c.operation in record["cause"] for c in cell.calls):
        cell.problems.append(f"the failure record does not name the call: {record['cause'][:300]}")
    if wf.read_bytes(f"s3://{wf.input_bucket}/{uploaded['key']}") != body.encode():
        cell.problems.append("the manifest was modified")


def run(wf: LocalWorkflow, injector: faults.FaultInjector, cell: Cell) -> Cell:
    try:
        (run_batch if cell.scenario.batch else run_single)(wf, injector, cell)
    except Exception as exc:  # a cell that crashes is reported with the others
        cell.problems.append(f"{type(exc).__name__}: {exc}")
    if cell.faults:
        for call_id, fired in cell.fired.items():
            if not fired:
                cell.problems.append(f"{call_id.label()} was never called")
    return cell


def census(wf: LocalWorkflow, injector: faults.FaultInjector, scenario: Scenario, known: set[CallId]) -> Cell:
    """Run the scenario without faults: its functions' calls not covered before are its matrix rows."""
    before = len(injector.delivered)
    cell = run(wf, injector, Cell(scenario, "census"))
    seen = sorted({ident(c) for c in injector.delivered[before:] if c.function in scenario.functions})
    scenario.calls = [c for c in seen if c not in known]
    if cell.outcome != scenario.baseline:
        cell.problems.append(f"without faults the outcome is {cell.outcome!r}, not {scenario.baseline!r}")
    return cell


def cells_of(scenario: Scenario) -> list[Cell]:
    """Once: one execution per fault, every call faulted at the same time. Every time: one execution
    per call for the error responses (in turn), one for a reset, one for 409 where S3 can answer it."""
    once = []
    for name in FAULT_NAMES:
        armed = {c: f for c in scenario.calls for f in c.faults() if f.name == name}
        if armed:
            once.append(Cell(scenario, "once", name, armed))
    persistent = []
    for call in scenario.calls:
        by_name = {f.name: f for f in call.faults()}
        responses = tuple(by_name[n] for n in RESPONSES)
        persistent.append(Cell(scenario, "persistent", "responses", {call: responses}))
        persistent.append(Cell(scenario, "persistent", "reset", {call: by_name["reset"]}))
        if "409" in by_name:
            persistent.append(Cell(scenario, "persistent", "409", {call: by_name["409"]}))
    return once + persistent


def run_matrix(wf: LocalWorkflow, scenarios: list[Scenario], known: set[CallId]) -> list[Cell]:
    if any(s.batch for s in scenarios):
        wf.upload(sample_photo(), BATCH_PHOTO)
        done = wf.wait(wf.start({"image": f"s3://{wf.input_bucket}/{BATCH_PHOTO}"}), timeout=DEADLINE_S)
        assert done.succeeded, (done.error, done.cause)
    with short_waits(), wf.inject_faults() as injector:
        cells = []
        for scenario in scenarios:
            cells.append(census(wf, injector, scenario, known))
            known.update(scenario.calls)
        # every scenario's once-cells before any every-time cell: a call failing every time drains
        # botocore's retry quota of the functions' clients (one process runs them all here), and a
        # once-cell running beside it would then get no retry where a fresh sandbox would
        todo = sorted((c for s in scenarios for c in cells_of(s)), key=lambda c: c.mode == "persistent")
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            cells += list(pool.map(lambda c: run(wf, injector, c), todo))
    return cells


# ------------------------------------------------------------------ the matrix
def matrix_table(cells: list[Cell]) -> str:
    """call x fault -> outcome (once / every time), as a Markdown table."""
    rows: dict[CallId, dict[str, str]] = {}
    order: list[CallId] = []
    for cell in cells:
        for call_id in cell.calls:
            if call_id not in rows:
                rows[call_id] = {}
                order.append(call_id)
            column = f"{cell.fault_name} {cell.mode}"
            rows[call_id][column] = cell.outcome
    columns = [
        ("throttling once", "throttling once"),
        ("500 once", "500 once"),
        ("503 once", "503 once"),
        ("throttling, 500, 503 every time", "responses persistent"),
        ("reset once", "reset once"),
        ("reset every time", "reset persistent"),
        ("409 once", "409 once"),
        ("409 every time", "409 persistent"),
    ]
    header = ["call", *[title for title, _ in columns]]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for call_id in order:
        got = rows[call_id]
        lines.append("| " + " | ".join([call_id.label(), *[got.get(key, "-") for _, key in columns]]) + " |")
    return "\n".join(lines)


RESULTS: list[Cell] = []


def _scenarios_realtime(wf: LocalWorkflow) -> list[Scenario]:
    names = wf.endpoint_names
    one_each = {names["clipseg"]: 1, names["sd_inpaint"]: 1, names["sd_upscale"]: 1}
    return [
        Scenario(
            "try-on",
            {"upscale": True},
            ("PrepareFunction", "SegmentFunction", "InpaintFunction", "UpscaleFunction", "FinalizeFunction"),
            one_each,
            "ok",
        ),
        Scenario(
            "failure",
            {"adapter": "no-such-adapter"},
            ("RecordFailureFunction",),
            one_each,
            "ModelError at inpaint",
        ),
        Scenario("takeover", {}, ("PrepareFunction",), one_each, "ok", ghost_claim=True),
        Scenario(
            "batch", {}, ("ValidateBatchFunction", "SummarizeBatchFunction"), one_each, "ok", batch=True
        ),
    ]


def test_every_call_of_the_realtime_path_and_the_batch(tiny_models, one_torch_thread, capsys):
    with (
        distributed_map_engine(),
        LocalWorkflow(all_models(tiny_models), parameters=REALTIME, stack_name="tryon-faults") as wf,
    ):
        cells = run_matrix(wf, _scenarios_realtime(wf), set())
    RESULTS.extend(cells)
    _report(cells, capsys)


def test_every_call_of_the_asynchronous_path(tiny_models, one_torch_thread, capsys):
    modes = {"sd_inpaint": "async", "sd_upscale": "async"}
    with LocalWorkflow(
        all_models(tiny_models), parameters=ASYNC, modes=modes, stack_name="tryon-faults-async"
    ) as wf:
        names = wf.endpoint_names
        calls = {names["clipseg"]: 1, names["sd_inpaint"]: 1, names["sd_upscale"]: 2}
        scenario = Scenario(
            "async",
            {"upscale": True, "num_images": 2},
            ("SubmitAsyncFunction", "CompleteAsyncFunction"),
            calls,
            "ok",
        )
        cells = run_matrix(wf, [scenario], set())
    RESULTS.extend(cells)
    _report(cells, capsys)


def _report(cells: list[Cell], capsys: Any) -> None:
    with capsys.disabled():
        print("\n" + matrix_table(cells))
    problems = [
        f"{c.scenario.name} {c.mode} {c.fault_name} {[x.label() for x in c.calls]}: {p}"
        for c in cells
        for p in c.problems
    ]
    assert not problems, "\n".join(problems)


def test_the_docs_show_this_matrix():
    """docs/workflow.md carries the matrix the two tests above produced (run them with it)."""
    if len(RESULTS) == 0:
        pytest.skip("the matrix tests did not run in this session")
    table = matrix_table(RESULTS)
    text = DOC.read_text()
    assert BEGIN in text and END in text, f"docs/workflow.md needs the markers {BEGIN} / {END}"
    current = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    if os.environ.get("TRYON_WRITE_FAULT_MATRIX") == "1" and current != table:
        DOC.write_text(
            text.replace(current, table, 1) if current else text.replace(BEGIN, f"{BEGIN}\n{table}", 1)
        )
        return
    assert current == table, (
        "docs/workflow.md's fault matrix is out of date: run with TRYON_WRITE_FAULT_MATRIX=1"
    )
