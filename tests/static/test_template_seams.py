"""Seams only the template and the ASL can show (issue 17 items 9-12): the asynchronous callback's
on-failure destination and alarms, the partition in service-integration ARNs, lifecycle rules for
what the workflow leaves behind, and the two-step update of an async endpoint's instance type."""

from __future__ import annotations

import json
import re

import pytest
from support.paths import BATCH_ASL, TEMPLATE, TRYON_ASL

from tryon.local.template import SamTemplate, load_template
from tryon.workflow import layout

DOC = load_template(TEMPLATE)
RESOURCES = DOC["Resources"]
KINDS = ("ClipSeg", "Inpaint", "Upscale")
SCALING = ("ScalableTarget", "BacklogScaling", "ScaleFromZero", "BacklogWithoutCapacity")


def _queue_alarm(queue: str) -> dict:
    alarms = [
        r["Properties"]
        for r in RESOURCES.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and r["Properties"].get("Namespace") == "AWS/SQS"
        and r["Properties"]["Dimensions"]
        == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
    ]
    assert len(alarms) == 1, f"{queue} needs one alarm"
    return alarms[0]


# ------------------------------------------------------------------ item 9
def test_complete_async_keeps_what_it_failed_on_in_a_queue_with_an_alarm():
    props = RESOURCES["CompleteAsyncFunction"]["Properties"]
    assert {e["Type"] for e in props["Events"].values()} == {"SNS"}  # invoked asynchronously
    config = props["EventInvokeConfig"]
    assert config["MaximumRetryAttempts"] == 2
    destination = config["DestinationConfig"]["OnFailure"]
    assert destination["Type"] == "SQS"
    queue = destination["Destination"]["Fn::GetAtt"][0]
    assert RESOURCES[queue]["Type"] == "AWS::SQS::Queue"
    assert RESOURCES[queue]["Properties"]["SqsManagedSseEnabled"] is True
    alarm = _queue_alarm(queue)
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible" and alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    # the failure record of the step that then times out names the queue
    recorder = RESOURCES["RecordFailureFunction"]["Properties"]["Environment"]["Variables"]
    assert recorder["TRYON_ASYNC_DEAD_LETTERS"] == {"Ref": queue}


def test_the_event_dead_letter_queue_has_an_alarm_too():
    assert _queue_alarm("EventDeadLetterQueue")["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_alarms_can_reach_their_topic():
    """CloudWatch cannot publish to a topic encrypted with the AWS-managed aws/sns key."""
    topic = RESOURCES["AlarmTopic"]["Properties"]
    assert topic.get("KmsMasterKeyId") in (None, "") or not str(topic["KmsMasterKeyId"]).startswith(
        "alias/aws/"
    )
    subscription = RESOURCES["AlarmSubscription"]
    assert subscription["Condition"] == "HasNotificationEmail"
    assert subscription["Properties"]["TopicArn"] == {"Ref": "AlarmTopic"}


# ------------------------------------------------------------------ item 10
@pytest.mark.parametrize(
    ("asl", "machine"), [(TRYON_ASL, "TryOnStateMachine"), (BATCH_ASL, "BatchStateMachine")]
)
def test_service_integration_arns_take_the_stacks_partition(asl, machine):
    text = asl.read_text()
    arns = re.findall(r'"(arn:[^"]*)"', text)
    assert arns, "the ASL names service integrations"
    assert all(a.startswith("arn:${Partition}:") for a in arns), [a for a in arns if "${Partition}" not in a]
    subs = RESOURCES[machine]["Properties"]["DefinitionSubstitutions"]
    assert subs["Partition"] == {"Ref": "AWS::Partition"}
    for partition in ("aws-cn", "aws-us-gov"):
        t = SamTemplate(TEMPLATE)
        t.pseudo["AWS::Partition"] = partition
        definition = json.loads(t.state_machine_definition(machine))
        resolved = re.findall(r'"(arn:[^"]*)"', json.dumps(definition))
        assert all(a.startswith(f"arn:{partition}:") for a in resolved if ":states:::" in a)


def test_the_template_writes_no_partition_by_hand():
    assert "arn:aws:" not in TEMPLATE.read_text()


# ------------------------------------------------------------------ item 11
def _rules(bucket: str) -> list[dict]:
    return RESOURCES[bucket]["Properties"]["LifecycleConfiguration"]["Rules"]


@pytest.mark.parametrize("bucket", ["InputBucket", "OutputBucket"])
def test_versions_and_delete_markers_do_not_pile_up(bucket):
    [everything] = [r for r in _rules(bucket) if "Prefix" not in r]
    assert everything["Status"] == "Enabled"
    assert everything["NoncurrentVersionExpiration"]["NoncurrentDays"] > 0
    # deleting claim.json in a versioned bucket leaves a delete marker; this removes it
    assert everything["ExpiredObjectDeleteMarker"] is True
    assert everything["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] > 0


def test_async_objects_and_map_run_results_expire():
    by_prefix = {json.dumps(r["Prefix"], sort_keys=True): r for r in _rules("OutputBucket") if "Prefix" in r}
    async_rule = by_prefix[json.dumps({"Ref": "AsyncPrefix"})]
    assert 0 < async_rule["ExpirationInDays"] <= 30 and async_rule["Status"] == "Enabled"
    # what the batch state machine's ResultWriter writes under (its DefinitionSubstitutions)
    map_runs = RESOURCES["BatchStateMachine"]["Properties"]["DefinitionSubstitutions"]["MapRunResultsPrefix"]
    assert map_runs == {"Fn::Sub": f"${{ResultsPrefix}}{layout.BATCH_REPORTS}{layout.MAP_RUNS}"}
    rule = by_prefix[json.dumps({"Fn::Sub": map_runs["Fn::Sub"] + "/"})]
    assert rule["ExpirationInDays"] > 0 and rule["Status"] == "Enabled"
    # moderation's pending images (a failed job's) and the quarantine expire on their own rules;
    # nothing under the results prefix expires: results, manifests and batch reports stay
    known = {json.dumps(rule["Prefix"], sort_keys=True), json.dumps({"Ref": "AsyncPrefix"})}
    assert set(by_prefix) - known == {
        json.dumps({"Ref": "PendingPrefix"}),
        json.dumps({"Ref": "QuarantinePrefix"}),
    }


# ------------------------------------------------------------------ item 12
MODEL = "s3://art/model.tar.gz"


def deployed(**parameters: str) -> SamTemplate:
    """The stack as a deploy with these parameters makes it (every endpoint created and async)."""
    base = {f"{kind}ModelDataUrl": MODEL for kind in KINDS} | {f"{kind}Mode": "async" for kind in KINDS}
    return SamTemplate(TEMPLATE, base | parameters)


def _scaled(t: SamTemplate, kind: str) -> bool:
    return t.condition_holds(t.doc["Resources"][f"{kind}ScalableTarget"]["Condition"])


def _instance_type(t: SamTemplate, kind: str) -> str:
    [variant] = t.resolve(t.doc["Resources"][f"{kind}EndpointConfig"]["Properties"])["ProductionVariants"]
    return variant["InstanceType"]


def refused_by_sagemaker(before: SamTemplate, after: SamTemplate) -> list[str]:
    """Endpoints whose update SageMaker refuses: a new instance type while the variant is registered
    with Application Auto Scaling. CloudFormation updates the endpoint before it deletes resources the
    new template drops (cleanup), and creates a new ScalableTarget after the endpoint it names, so
    only the registration that exists *before* the deploy counts."""
    return [k for k in KINDS if _scaled(before, k) and _instance_type(before, k) != _instance_type(after, k)]


def test_scaling_depends_on_the_endpoint_so_it_registers_after_the_update():
    for kind in KINDS:
        target = RESOURCES[f"{kind}ScalableTarget"]["Properties"]["ResourceId"]
        assert f"{kind}Endpoint.EndpointName" in target["Fn::Sub"]
        for suffix in SCALING:
            assert RESOURCES[f"{kind}{suffix}"]["Condition"] == f"Scale{kind}"


def test_changing_an_async_endpoints_instance_type_in_one_deploy_is_refused():
    now = deployed(InpaintInstanceType="ml.g5.xlarge")
    bigger = deployed(InpaintInstanceType="ml.g5.2xlarge")
    assert refused_by_sagemaker(now, bigger) == ["Inpaint"]


def test_the_documented_two_step_update_changes_it():
    """docs/deploy.md: deploy AsyncAutoScaling=false, then the new type with AsyncAutoScaling=true."""
    now = deployed(InpaintInstanceType="ml.g5.xlarge")
    step1 = deployed(InpaintInstanceType="ml.g5.xlarge", AsyncAutoScaling="false")
    step2 = deployed(InpaintInstanceType="ml.g5.2xlarge", AsyncAutoScaling="true")
    assert refused_by_sagemaker(now, step1) == [] and not any(_scaled(step1, k) for k in KINDS)
    assert refused_by_sagemaker(step1, step2) == []
    assert all(_scaled(step2, k) for k in KINDS) and _instance_type(step2, "Inpaint") == "ml.g5.2xlarge"
    # the endpoint keeps serving in step 1 (same config); step 2 starts the new type with one instance
    assert t_initial(step2, "Inpaint") == 1


def t_initial(t: SamTemplate, kind: str) -> int:
    [variant] = t.resolve(t.doc["Resources"][f"{kind}EndpointConfig"]["Properties"])["ProductionVariants"]
    return int(variant["InitialInstanceCount"])
