"""The batch state machine's definition: one try-on definition run per row, limits from parameters."""

from __future__ import annotations

import json
import re

from support.paths import BATCH_ASL, TEMPLATE

from tryon.core import timeouts
from tryon.local.template import load_template


def test_rows_run_the_single_image_state_machine_on_a_distributed_map():
    text = BATCH_ASL.read_text()
    resource = load_template(TEMPLATE)["Resources"]["BatchStateMachine"]
    assert set(re.findall(r"\$\{(\w+)\}", text)) == set(resource["Properties"]["DefinitionSubstitutions"])
    assert resource["Properties"]["DefinitionSubstitutions"]["TryOnStateMachineArn"] == {
        "Ref": "TryOnStateMachine"
    }
    states = json.loads(text)["States"]
    run = states["RunRows"]
    assert run["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert run["ItemReader"]["Resource"] == "arn:${Partition}:states:::s3:getObject"
    assert run["ResultWriter"]["Resource"] == "arn:${Partition}:states:::s3:putObject"
    assert run["MaxConcurrencyPath"] == "$.batch.max_concurrency"
    assert run["ToleratedFailurePercentagePath"] == "$.batch.tolerated_failure_percentage"
    [child] = run["ItemProcessor"]["States"].values()  # one state: the try-on, not a copy of it
    assert child["Resource"] == "arn:${Partition}:states:::states:startExecution.sync:2"
    assert child["Parameters"]["StateMachineArn"] == "${TryOnStateMachineArn}"
    assert run["Catch"][0]["Next"] == "SummarizeBatch"  # a failed map still gets its report
    assert states["RecordRefusal"]["Parameters"]["step.$"] == "$.failed_step"
    for name, state in states.items():
        if state["Type"] == "Task":
            # its function's timeout plus the margin (tests/static/test_timeouts.py has the table)
            assert state["TimeoutSeconds"] == timeouts.task_timeout(timeouts.BATCH_TASKS[name]), name
            assert all(r["JitterStrategy"] == "FULL" for r in state["Retry"]), name
    pattern = resource["Properties"]["Events"]["BatchUploaded"]["Properties"]["Pattern"]
    assert pattern["detail"]["object"]["key"] == [{"prefix": {"Ref": "BatchPrefix"}}]
