"""template.yaml's limits against tryon.core: the upscaler's time budget parameter.

The numbers live in :mod:`tryon.core.upscale_budget`; the template keeps literal copies (it
cannot import them when ``sam deploy`` runs), so these tests fail when the two disagree.
"""

from __future__ import annotations

from support.paths import TEMPLATE

from tryon.core import upscale_budget
from tryon.local.template import SamTemplate, load_template

#: Every function that builds jobs (tryon.workflow.job.build_job) and so estimates upscales.
JOB_BUILDERS = ("PrepareFunction", "ValidateBatchFunction")


def test_the_upscale_tile_step_parameter_is_tryon_cores():
    spec = load_template(TEMPLATE)["Parameters"][upscale_budget.TILE_STEP_SECONDS_PARAMETER]
    assert spec["Type"] == "Number"
    assert float(spec["Default"]) == upscale_budget.DEFAULT_TILE_STEP_SECONDS
    assert (float(spec["MinValue"]), float(spec["MaxValue"])) == upscale_budget.TILE_STEP_SECONDS_RANGE
    assert "docs/benchmarks.md#upscaler-time-budget" in spec["Description"]


def test_every_function_that_builds_jobs_gets_the_upscale_tile_step():
    stack = SamTemplate(TEMPLATE, {upscale_budget.TILE_STEP_SECONDS_PARAMETER: "0.7"})
    for logical_id in JOB_BUILDERS:
        env = stack.function_environment(logical_id)
        assert env[upscale_budget.TILE_STEP_SECONDS_VARIABLE] == "0.7", logical_id
        assert upscale_budget.tile_step_seconds(env) == 0.7
