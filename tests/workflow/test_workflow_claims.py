"""The same job started twice: one execution runs the models, the other ends without calling one.

EventBridge delivers at least once, so one upload can start two executions at the same
moment. Prepare claims the job with an S3 conditional write (``If-None-Match: *``);
:mod:`tryon.workflow.claim` has the rules, these tests hold them on moto and end to end.
"""

from __future__ import annotations

import json
import threading

import pytest
from support.paths import TRYON_ASL

from tryon.local.samples import sample_photo
from tryon.workflow import claim, clients, layout, prepare
from tryon.workflow.settings import Settings
from tryon.workflow.step_errors import ClaimConflict, RuntimeTooOld

IN, OUT = "claims-in", "claims-out"
PREFIX = "results/photo/job-1/"


@pytest.fixture
def s3(moto_s3):
    return moto_s3(IN, OUT, env={"TRYON_INPUT_BUCKET": IN, "TRYON_OUTPUT_BUCKET": OUT})


def read_claim(s3) -> dict:
    return json.loads(s3.get_object(Bucket=OUT, Key=PREFIX + claim.CLAIM)["Body"].read())


def test_first_execution_holds_the_claim_and_a_second_is_told_who(s3):
    first = claim.acquire(OUT, PREFIX, "exec-a", hold_seconds=60)
    second = claim.acquire(OUT, PREFIX, "exec-b", hold_seconds=60)
    assert first.acquired and not second.acquired and second.holder == "exec-a"
    assert read_claim(s3)["execution"] == "exec-a"


def test_a_retried_prepare_of_the_holder_keeps_its_claim(s3):
    assert claim.acquire(OUT, PREFIX, "exec-a", hold_seconds=60).acquired
    assert claim.acquire(OUT, PREFIX, "exec-a", hold_seconds=60).acquired


def test_only_the_holder_releases(s3):
    claim.acquire(OUT, PREFIX, "exec-a", hold_seconds=60)
    assert claim.release(OUT, PREFIX, "exec-b") is False
    assert read_claim(s3)["execution"] == "exec-a"
    assert claim.release(OUT, PREFIX, "exec-a") is True
    assert claim.acquire(OUT, PREFIX, "exec-b", hold_seconds=60).acquired


def test_a_stale_claim_is_taken_over_once(s3):
    claim.acquire(OUT, PREFIX, "crashed", hold_seconds=10, now=1000.0)
    taker = claim.acquire(OUT, PREFIX, "exec-b", hold_seconds=10, now=2000.0)
    late = claim.acquire(OUT, PREFIX, "exec-c", hold_seconds=10, now=2000.0)
    assert taker.acquired and taker.took_over == "crashed"
    assert not late.acquired and late.holder == "exec-b"


def test_a_takeover_loses_when_another_execution_overwrote_the_stale_claim_first(s3, monkeypatch):
    """The If-Match overwrite: between reading a stale claim and replacing it, another took it."""
    claim.acquire(OUT, PREFIX, "crashed", hold_seconds=10, now=1000.0)
    real_read = claim._read

    def read_then_lose_race(bucket, key):
        held = real_read(bucket, key)
        monkeypatch.setattr(claim, "_read", real_read)  # once
        claim.acquire(OUT, PREFIX, "exec-fast", hold_seconds=10, now=2000.0)  # takes it meanwhile
        return held

    monkeypatch.setattr(claim, "_read", read_then_lose_race)
    slow = claim.acquire(OUT, PREFIX, "exec-slow", hold_seconds=10, now=2000.0)
    assert not slow.acquired and slow.holder == "exec-fast"
    assert read_claim(s3)["execution"] == "exec-fast"


def test_a_live_claim_of_an_execution_that_has_ended_is_taken_over_at_once(s3):
    ended = "arn:aws:states:us-east-1:123456789012:execution:tryon-tryon:aborted"
    claim.acquire(OUT, PREFIX, ended, hold_seconds=3600)
    running = claim.acquire(OUT, PREFIX, "exec-b", hold_seconds=3600, is_running=lambda arn: True)
    assert not running.acquired and running.holder == ended
    taker = claim.acquire(OUT, PREFIX, "exec-b", hold_seconds=3600, is_running=claim.execution_is_running)
    assert taker.acquired and taker.took_over == ended  # DescribeExecution: ExecutionDoesNotExist


def test_claims_race_from_threads_one_winner(s3):
    barrier = threading.Barrier(6)
    results = []

    def take(name: str) -> None:
        barrier.wait()
        results.append((name, claim.acquire(OUT, PREFIX, name, hold_seconds=60)))

    threads = [threading.Thread(target=take, args=(f"exec-{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [name for name, r in results if r.acquired]
    assert len(winners) == 1
    assert {r.holder for _, r in results if not r.acquired} == set(winners)


def _answer_puts(answers: list[tuple[int, str]]):
    """A botocore hook answering the next conditional PutObject calls of the claim with ``answers``."""
    from botocore.awsrequest import AWSResponse

    def before_call(params, **_):
        if not answers or "claim.json" not in params.get("url_path", ""):
            return None
        status, code = answers.pop(0)
        parsed = {
            "Error": {"Code": code, "Message": f"injected {status}"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        return AWSResponse(params["url"], status, {}, None), parsed

    clients.client("s3").meta.events.register("before-call.s3.PutObject", before_call)
    return answers


def test_a_409_conflict_is_retried_and_the_claim_taken(s3, monkeypatch):
    """Issue 17 item 4: S3's 409 ConditionalRequestConflict to a racing conditional write means retry."""
    monkeypatch.setattr(claim, "CONFLICT_PAUSE_S", 0.0)
    left = _answer_puts([(409, "ConditionalRequestConflict")])
    result = claim.acquire(OUT, PREFIX, "exec-a", hold_seconds=60)
    assert result.acquired and not left
    assert read_claim(s3)["execution"] == "exec-a"


def test_a_409_then_the_racing_writer_holds_it(s3, monkeypatch):
    monkeypatch.setattr(claim, "CONFLICT_PAUSE_S", 0.0)
    claim.acquire(OUT, PREFIX, "exec-fast", hold_seconds=60)  # the write the 409 raced with
    _answer_puts([(409, "ConditionalRequestConflict")])
    slow = claim.acquire(OUT, PREFIX, "exec-slow", hold_seconds=60)
    assert not slow.acquired and slow.holder == "exec-fast"


def test_persistent_409_fails_the_claim_by_name(s3, monkeypatch):
    monkeypatch.setattr(claim, "CONFLICT_PAUSE_S", 0.0)
    _answer_puts([(409, "ConditionalRequestConflict")] * claim.ATTEMPTS)
    with pytest.raises(
        ClaimConflict, match=r"claim.json: S3 answered 409 ConditionalRequestConflict to 5 of 5"
    ):
        claim.acquire(OUT, PREFIX, "exec-a", hold_seconds=60)


def test_a_runtime_without_conditional_writes_is_refused_by_name(s3, monkeypatch):
    """Issue 17 item 5: an old botocore in the Lambda runtime fails the claim with what to do."""
    model = clients.client("s3").meta.service_model.operation_model("PutObject")
    members = dict(model.input_shape.members)
    del members["IfMatch"]
    monkeypatch.setattr(type(model.input_shape), "members", property(lambda self: members))
    claim.require_conditional_writes.cache_clear()
    try:
        with pytest.raises(RuntimeTooOld, match=r"cannot send IfMatch on PutObject .*\(docs/deploy.md\)"):
            claim.acquire(OUT, PREFIX, "exec-a", hold_seconds=60)
    finally:
        claim.require_conditional_writes.cache_clear()


def test_prepare_reports_a_running_job_then_a_complete_one(s3):
    s3.put_object(Bucket=IN, Key="inputs/p.png", Body=sample_photo())
    event = {"image": f"s3://{IN}/inputs/p.png"}
    first = prepare.prepare_step({"trigger": event, "execution": "exec-a"})
    second = prepare.prepare_step({"trigger": event, "execution": "exec-b"})
    assert first["running"] is False and first["complete"] is False
    assert second["running"] is True and second["claimed_by"] == "exec-a"
    manifest_key = first["job"]["output"]["prefix"] + layout.MANIFEST
    assert second["manifest"] == f"s3://{OUT}/{manifest_key}"
    s3.put_object(Bucket=OUT, Key=manifest_key, Body=json.dumps({"status": "succeeded"}).encode())
    claim.release_for(first["job"], "exec-a")
    third = prepare.prepare_step({"trigger": event, "execution": "exec-c"})
    assert third["complete"] is True and third["running"] is False


def test_claim_outlives_every_execution():
    """A claim must not expire while its execution can still run (the state machine's time-out)."""
    definition = json.loads(TRYON_ASL.read_text())
    assert Settings.from_env({}).claim_seconds >= int(definition["TimeoutSeconds"])


# ------------------------------------------------------------------ end to end

DEADLINE_S = 120


@pytest.mark.slow
def test_the_same_event_delivered_twice_at_once_runs_the_models_once(wf):
    key = wf.upload(sample_photo(), "inputs/twice.png")["key"]
    first_in_endpoint, second_done = threading.Event(), threading.Event()
    calls = []

    def hold_first_call(request):
        calls.append(request)
        first_in_endpoint.set()
        second_done.wait(DEADLINE_S)  # keep the first execution inside its Segment step
        return None

    wf.before_endpoint_call("clipseg", hold_first_call)
    event = wf.s3_event(key)
    first = wf.start(event)
    assert first_in_endpoint.wait(DEADLINE_S)
    second = wf.wait(wf.start(event), timeout=DEADLINE_S)
    second_done.set()
    done = wf.wait(first, timeout=DEADLINE_S)

    assert second.succeeded and second.output["status"] == "already-running"
    assert second.output["claimed_by"] == first
    assert "Segment" not in second.states() and second.states()[-1] == "ReturnRunningJob"
    assert done.succeeded and done.output["status"] == "succeeded"
    assert len(calls) == 1  # the models ran for one execution only
    assert second.output["manifest"] == done.output["manifest"]
    prefix = done.output["manifest"].rsplit("/", 1)[0].split("/", 3)[3] + "/"
    assert prefix + claim.CLAIM not in wf.list_keys(prefix)  # Finalize released it

    third = wf.wait(wf.start(event), timeout=DEADLINE_S)
    assert third.output["status"] == "already-complete" and len(calls) == 1


@pytest.mark.slow
def test_a_failed_execution_releases_its_claim_so_a_redelivery_retries(wf):
    key = wf.upload(sample_photo(), "inputs/fails-once.png")["key"]
    wf.fail_endpoint_calls("clipseg", code="ValidationError", status=400, times=1, message="bad input")
    failed = wf.wait(wf.start_from_s3_event(key), timeout=DEADLINE_S)
    assert failed.status == "FAILED"
    assert not [k for k in wf.list_keys("results/fails-once/") if k.endswith(claim.CLAIM)]
    retried = wf.wait(wf.start_from_s3_event(key), timeout=DEADLINE_S)
    assert retried.succeeded and retried.output["status"] == "succeeded"


@pytest.mark.slow
def test_a_claim_held_by_an_aborted_execution_does_not_block_the_redelivery(wf):
    key = wf.upload(sample_photo(), "inputs/aborted.png")["key"]
    entered, release = threading.Event(), threading.Event()
    calls = []

    def hold_first_call(request):
        calls.append(request)
        if len(calls) == 1:
            entered.set()
            release.wait(DEADLINE_S)  # the first execution is stopped while it holds the claim
        return None

    wf.before_endpoint_call("clipseg", hold_first_call)
    event = wf.s3_event(key)
    first = wf.start(event)
    assert entered.wait(DEADLINE_S)
    wf.client("stepfunctions").stop_execution(executionArn=first, error="Operator", cause="aborted by hand")
    release.set()  # moto marks it ABORTED once its running Task returns (AWS does at once)
    assert wf.wait(first, timeout=DEADLINE_S).status == "ABORTED"
    claims = [k for k in wf.list_keys("results/aborted/") if k.endswith(claim.CLAIM)]
    assert len(claims) == 1 and wf.read_json(claims[0])["execution"] == first  # left behind
    retried = wf.wait(wf.start(event), timeout=DEADLINE_S)
    assert retried.succeeded and retried.output["status"] == "succeeded"
    assert len(calls) == 2
    manifest = wf.read_json(retried.output["manifest"])
    assert manifest["execution"] != first
