"""The stack's Presets, up to 4 KB of JSON, reach Prepare through their SSM parameter.

Lambda refuses a function whose environment variables take more than 4 KB, so the template keeps
Presets in the SSM parameter ``/<stack>/presets`` (docs/deploy.md#what-fits-lambdas-4-kb). A stack
of its own (no models: only Prepare runs), apart from other modules' module-wide stacks.
"""

from __future__ import annotations

import json

from tryon.local import LocalWorkflow
from tryon.local.samples import sample_photo


def test_presets_longer_than_a_functions_environment_reach_prepare_through_ssm():
    """The Presets parameter (up to 4 KB) lives in an SSM parameter; Prepare and ValidateBatch read it."""
    looks = {
        f"look-{i:03d}": {"prompt": f"a photo of a person wearing look {i}", "steps": 20} for i in range(52)
    }
    text = json.dumps(looks)
    assert 3500 < len(text) <= 4096  # alone it would nearly fill a function's 4 KB of variables
    with LocalWorkflow(endpoint_url="http://127.0.0.1:9", parameters={"Presets": text}) as wf:
        name = f"/{wf.stack_name}/presets"
        assert wf.client("ssm").get_parameter(Name=name)["Parameter"]["Value"] == text
        for logical_id in ("PrepareFunction", "ValidateBatchFunction"):
            env = wf.lambdas.functions[f"{wf.stack_name}-{logical_id}"].environment
            assert env["TRYON_PRESETS_PARAMETER"] == name and "TRYON_PRESETS" not in env
        key = wf.upload(sample_photo((64, 48), "PNG"), "inputs/p.png")["key"]
        trigger = {"image": f"s3://{wf.input_bucket}/{key}", "preset": "look-051"}
        payload, errored, logs = wf.lambdas.invoke(f"{wf.stack_name}-PrepareFunction", {"trigger": trigger})
        assert not errored, logs
        params = json.loads(payload)["job"]["params"]
        assert (params["prompt"], params["steps"]) == ("a photo of a person wearing look 51", 20)
    with LocalWorkflow(endpoint_url="http://127.0.0.1:9") as wf:  # no Presets: no parameter, nothing read
        names = [p["Name"] for p in wf.client("ssm").describe_parameters()["Parameters"]]
        assert not [n for n in names if n.endswith("/presets")]  # (the moderation settings' are there)
        env = wf.lambdas.functions[f"{wf.stack_name}-PrepareFunction"].environment
        assert env["TRYON_PRESETS_PARAMETER"] == ""
