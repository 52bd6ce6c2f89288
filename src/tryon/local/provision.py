"""Create the template's resources in moto: buckets, topics, tables, SSM parameters, the role, functions,
state machines.

Each resource gets the physical name ``<stack>-<logical id>`` (buckets: ``<stack>-<name>``, as
``tryon-local-input``) and its resolved ``Ref``/``Arn`` is recorded in
:attr:`tryon.local.template.SamTemplate.resources`, so later ``!Ref``s resolve to it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tryon.local.lambdas import LambdaRuntime
from tryon.local.template import SamTemplate

#: the one role of a local stack is named ``<stack>-<LOCAL_ROLE>``
LOCAL_ROLE = "execution-role"

Clients = Callable[[str], Any]


def create_buckets(t: SamTemplate, client: Clients, stack_name: str) -> None:
    """Buckets with the template's versioning and EventBridge notification settings."""
    s3 = client("s3")
    for logical, res in t.resources_of_type("AWS::S3::Bucket").items():
        name = f"{stack_name}-{logical.removesuffix('Bucket').lower()}"
        s3.create_bucket(Bucket=name)
        t.resources[logical] = {"Ref": name, "Arn": f"arn:aws:s3:::{name}"}
        props = res.get("Properties", {})
        if props.get("VersioningConfiguration", {}).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        if "EventBridgeConfiguration" in props.get("NotificationConfiguration", {}):
            s3.put_bucket_notification_configuration(
                Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )


def create_topics(t: SamTemplate, client: Clients, stack_name: str) -> None:
    """SNS topics (their ``Ref`` is the topic ARN)."""
    sns = client("sns")
    for logical in t.resources_of_type("AWS::SNS::Topic"):
        topic_name = f"{stack_name}-{logical}"
        arn = sns.create_topic(Name=topic_name)["TopicArn"]
        t.resources[logical] = {"Ref": arn, "TopicName": topic_name}


def create_queues(t: SamTemplate, client: Clients, stack_name: str) -> None:
    """SQS queues (the dead-letter queues and CompleteAsync's on-failure destination); ``Ref`` is the URL."""
    sqs = client("sqs")
    for logical in t.resources_of_type("AWS::SQS::Queue"):
        name = f"{stack_name}-{logical}"
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        t.resources[logical] = {"Ref": url, "Arn": arn, "QueueName": name}


def create_tables(t: SamTemplate, client: Clients, stack_name: str) -> None:
    """DynamoDB tables with the template's keys, billing mode and time-to-live attribute."""
    ddb = client("dynamodb")
    for logical, res in t.resources_of_type("AWS::DynamoDB::Table").items():
        props = t.resolve(res.get("Properties", {}))
        name = f"{stack_name}-{logical}"
        arn = ddb.create_table(
            TableName=name,
            KeySchema=props["KeySchema"],
            AttributeDefinitions=props["AttributeDefinitions"],
            BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
        )["TableDescription"]["TableArn"]
        ttl = props.get("TimeToLiveSpecification")
        if ttl:
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
        t.resources[logical] = {"Ref": name, "Arn": arn}


def create_parameters(t: SamTemplate, client: Clients) -> None:
    """SSM parameters (their ``Ref`` is the parameter's name), with the template's name and value."""
    ssm = client("ssm")
    for logical, res in t.resources_of_type("AWS::SSM::Parameter").items():
        props = t.resolve(res.get("Properties", {}))
        name = props.get("Name") or f"{t.pseudo['AWS::StackName']}-{logical}"
        ssm.put_parameter(Name=name, Value=props["Value"], Type=props.get("Type", "String"), Overwrite=True)
        t.resources[logical] = {"Ref": name}


def create_role(client: Clients, stack_name: str) -> str:
    """One role for every function and state machine (moto does not enforce IAM)."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    return client("iam").create_role(
        RoleName=f"{stack_name}-{LOCAL_ROLE}", AssumeRolePolicyDocument=json.dumps(policy)
    )["Role"]["Arn"]


def subscribe_functions(t: SamTemplate, client: Clients) -> None:
    """The functions' ``SNS`` events: each subscribes its function to the topic, as SAM does."""
    sns = client("sns")
    for logical, res in t.resources_of_type("AWS::Serverless::Function").items():
        for event in res.get("Properties", {}).get("Events", {}).values():
            if event.get("Type") == "SNS":
                topic = t.resolve(event["Properties"]["Topic"])
                sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=t.resources[logical]["Arn"])


def create_state_machines(t: SamTemplate, client: Clients, stack_name: str, role_arn: str) -> None:
    """State machines from their ASL files with ``DefinitionSubstitutions`` applied."""
    sfn = client("stepfunctions")
    for logical, res in t.resources_of_type("AWS::Serverless::StateMachine").items():
        # the template's Name (policies name the executions by it), else CloudFormation's kind of name
        name = t.resolve(res["Properties"].get("Name")) or f"{stack_name}-{logical}"
        arn = sfn.create_state_machine(
            name=name,
            definition=t.state_machine_definition(logical),
            roleArn=role_arn,
            type=res["Properties"].get("Type", "STANDARD"),
        )["stateMachineArn"]
        t.resources[logical] = {"Ref": arn, "Name": name}


def create_stack(t: SamTemplate, client: Clients, stack_name: str, runtime: LambdaRuntime) -> str:
    """Every resource the harness emulates, in dependency order; returns the role ARN."""
    create_buckets(t, client, stack_name)
    create_topics(t, client, stack_name)
    create_queues(t, client, stack_name)
    create_tables(t, client, stack_name)
    create_parameters(t, client)
    role_arn = create_role(client, stack_name)
    runtime.create_functions(client("lambda"), role_arn, stack_name)
    subscribe_functions(t, client)
    create_state_machines(t, client, stack_name, role_arn)
    return role_arn
