"""template.yaml and docs/workflow.md against the schema's rows (tryon.core.schema).

The template's job-default parameters, their console group, the functions' ``TRYON_DEFAULT_*``
variables and the docs' parameter table are generated (``make schema-blocks``); the endpoint
kinds' parameters and variables are hand-kept and checked here, row by row.
"""

from __future__ import annotations

import re
import shutil

import pytest
from support.paths import REPO, TEMPLATE

from tryon.aws import schema_blocks
from tryon.core import schema
from tryon.core.errors import RequestError
from tryon.local.template import SamTemplate, load_template
from tryon.workflow import params

DOC = REPO / "docs" / "workflow.md"
TEMPLATE_ROWS = [row for row in schema.PARAMS if row.template_parameter]


def _stale(template=TEMPLATE, doc=DOC):
    blocks = {template: {}, doc: {}}
    for name, (path, lines) in schema_blocks.BLOCKS.items():
        blocks[template if path == schema_blocks.TEMPLATE else doc][name] = lines
    return schema_blocks.write(blocks, check=True)


def test_the_generated_blocks_are_what_the_schema_gives():
    """Fails when a range, default, pattern or description is edited by hand: run `make schema-blocks`."""
    assert _stale() == [], "stale: run `make schema-blocks` (python -m tryon.aws.schema_blocks --write)"
    assert schema_blocks.main(["--check"]) == 0


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (
            '    MaxValue: 50\n    Description: "Classifier-free',
            '    MaxValue: 30\n    Description: "Classifier-free',
        ),
        (
            'AllowedPattern: "^$|^(0*([1-9]|[1-9][0-9]|1[0-4][0-9]|150))$"',
            'AllowedPattern: "^$|^[0-9]{1,3}$"',
        ),
        (
            "  DefaultUpscaleSteps:\n    Type: Number\n    Default: 20",
            "  DefaultUpscaleSteps:\n    Type: Number\n    Default: 25",
        ),
    ],
    ids=["guidance-max", "refiner-steps-pattern", "upscale-steps-default"],
)
def test_a_job_default_changed_by_hand_in_the_template_fails(tmp_path, old, new):
    """The three disagreements the schema removed (guidance <= 30, refiner steps up to 999, ...)
    come back as a failure, and --write restores the generated text."""
    text = TEMPLATE.read_text()
    assert old in text
    edited = tmp_path / "template.yaml"
    edited.write_text(text.replace(old, new, 1))
    doc = tmp_path / "workflow.md"
    shutil.copy(DOC, doc)
    assert _stale(edited, doc) == [edited]
    assert schema_blocks.write(
        {edited: {n: f for n, (p, f) in schema_blocks.BLOCKS.items() if p == TEMPLATE}}
    ) == [edited]
    assert edited.read_text() == text


@pytest.mark.parametrize("row", TEMPLATE_ROWS, ids=lambda row: row.name)
def test_each_template_default_has_the_schemas_range_default_and_pattern(row):
    declared = load_template(TEMPLATE)["Parameters"][row.template_parameter]
    expected = schema_blocks.template_parameter(row)
    assert {k: v for k, v in declared.items() if k != "Description"} == {
        k: v for k, v in expected.items() if k != "Description"
    }
    limits = row.limits
    if declared["Type"] == "Number":
        assert declared.get("MinValue") == limits.get("minimum") and declared.get("MaxValue") == limits.get(
            "maximum"
        )
    if row.type == "str":  # the field's limit, or the shorter one Lambda's 4 KB environment needs
        assert declared["MaxLength"] == row.template_max_length or limits.get("max_length", 2000)
    # the template's default is the schema's, and Prepare reads it back as that value
    read = params.template_defaults({row.env: str(declared["Default"])})[row.name]
    assert read == (list(row.default) if row.type == "str_list" else row.default)


def _accepts(row, text: str) -> bool:
    try:
        params.validate_layer({row.name: text}, "template defaults", from_text=True)
    except RequestError:
        return False
    return True


NUMBERS = [
    "", "0", "00", "1", "01", "2", "9", "10", "99", "100", "149", "150", "151", "199", "255", "256", "257",
    "349", "350", "351", "999", "1000", "4294967295", "-1", "0.0", "0.", ".0", ".5", "0.5", "0.05", "0.001",
    "0.30", "1.0", "1.00", "1.", "1.5", "2", "2.0", "2.01", "3", "7.5", "35", "49.99", "50", "50.0", "50.1",
]  # fmt: skip


@pytest.mark.parametrize(
    "row",
    [row for row in TEMPLATE_ROWS if "AllowedPattern" in schema_blocks.template_parameter(row)],
    ids=lambda row: row.name,
)
def test_a_template_pattern_accepts_exactly_what_prepare_accepts(row):
    """Patterns stand in for ranges CloudFormation cannot state (unset, exclusive bounds)."""
    pattern = re.compile(schema_blocks.template_parameter(row)["AllowedPattern"])
    samples = NUMBERS if row.type in ("int", "float") else ["", "a", "face,hands", "x" * 200, "x" * 201]
    if row.name == "adapter":
        samples += ["garment-a", "none", "-a", "a/b", "s3://b/adapters/a/", "s3://b", "s3:///a", "a" * 65]
    if row.type == "str_list":
        samples += [",".join(["x"] * 16), ",".join(["x"] * 17)]
    for text in samples:
        assert bool(pattern.fullmatch(text)) == _accepts(row, text), text


def test_every_function_gets_every_template_default():
    """Every TRYON_DEFAULT_* variable the schema names is set, to its parameter, on every function."""
    stack = SamTemplate(TEMPLATE)
    functions = stack.resources_of_type("AWS::Serverless::Function")
    assert {"PrepareFunction", "ValidateBatchFunction"} <= set(functions)
    for logical_id in functions:
        env = stack.function_environment(logical_id)
        for row in TEMPLATE_ROWS:
            assert env.get(row.env) == stack.parameters[row.template_parameter], (logical_id, row.env)
    names = {
        name for name in stack.function_environment("PrepareFunction") if name.startswith("TRYON_DEFAULT_")
    }
    assert names == {row.env for row in TEMPLATE_ROWS}  # no variable the schema does not know


def test_each_endpoint_kind_has_its_template_parameters_and_variables():
    """The kinds' hand-kept template spellings match their rows."""
    doc = load_template(TEMPLATE)
    declared, resources = doc["Parameters"], doc["Resources"]
    stack = SamTemplate(TEMPLATE)
    env = stack.function_environment("PrepareFunction")
    finalize = stack.function_environment("FinalizeFunction")
    for row in schema.ENDPOINT_KINDS:
        assert declared[row.endpoint_parameter]["Default"] == row.endpoint_name()
        assert declared[row.mode_parameter]["AllowedValues"] == list(row.modes)
        assert declared[row.instance_type_parameter]["Default"] == row.default_instance_type
        assert row.model_data_parameter in declared
        assert env[row.endpoint_variable] == row.endpoint_name()
        assert env[row.mode_variable] == "realtime"
        assert finalize[row.instance_type_variable] == row.default_instance_type
        assert {f"{row.template}Model", f"{row.template}Endpoint", f"{row.step.capitalize()}Function"} <= set(
            resources
        )
        container = resources[f"{row.template}Model"]["Properties"]["PrimaryContainer"]
        assert container["ModelDataUrl"] == {"Ref": row.model_data_parameter}
        assert container["Environment"]["TRYON_ENDPOINT_MODE"] == {"Ref": row.mode_parameter}


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"DefaultSteps": 151}, "DefaultSteps: '151' is above its MaxValue 150"),
        ({"DefaultStrength": "0"}, "DefaultStrength: '0' does not match its AllowedPattern"),
        ({"DefaultRefinerSteps": "999"}, "DefaultRefinerSteps: '999' does not match"),
        (
            {"InpaintMode": "serverless"},
            "InpaintMode: 'serverless' is not one of its AllowedValues realtime, async",
        ),
        ({"DefaultQuery": ""}, "DefaultQuery: '' is shorter than its MinLength 1"),
        ({"ServerlessMemoryMB": 512}, "ServerlessMemoryMB: '512' is not one of its AllowedValues"),
    ],
)
def test_the_local_stack_refuses_parameter_values_cloudformation_refuses(parameters, message):
    """Never more forgiving than AWS: the local harness checks each parameter's constraints too."""
    with pytest.raises(ValueError, match=re.escape(message)):
        SamTemplate(TEMPLATE, parameters)
    assert SamTemplate(
        TEMPLATE, {"DefaultGuidanceScale": 50, "DefaultStrength": "0.05", "ServerlessMemoryMB": 6144}
    )


def test_every_functions_environment_fits_lambdas_4_kb():
    """Lambda refuses more than 4 KB of variables: the defaults leave room, long ones are refused locally.

    tests/static/test_template_limits.py sums the worst case every parameter allows.
    """
    from tryon.local.lambdas import ENVIRONMENT_LIMIT_BYTES, check_environment_size

    stack = SamTemplate(TEMPLATE)
    for logical_id in stack.resources_of_type("AWS::Serverless::Function"):
        env = stack.function_environment(logical_id)
        # CloudFormation's generated bucket names and ARNs are longer than the local ones
        assert check_environment_size(logical_id, env) < ENVIRONMENT_LIMIT_BYTES - 1024, logical_id
    with pytest.raises(ValueError, match=r"DefaultPrompt: 'ppp.*' is longer than its MaxLength 200"):
        SamTemplate(TEMPLATE, {"DefaultPrompt": "p" * 2000})  # as CloudFormation refuses it
    longest = {
        row.template_parameter: "x" * row.template_max_length
        for row in TEMPLATE_ROWS
        if row.template_max_length
    }
    longest["DefaultAdapter"] = "s3://b/" + "x" * (
        schema.param("adapter").template_max_length - 7
    )  # its pattern
    env = SamTemplate(TEMPLATE, longest).function_environment("PrepareFunction")
    assert check_environment_size("PrepareFunction", env) <= ENVIRONMENT_LIMIT_BYTES
    # what only non-ASCII text can do (a character of 4 bytes where the budget counts 1) is refused locally
    wide = {  # every long default at its MaxLength, in 4-byte characters
        name: "\U0001f457" * len(value) if name.startswith("TRYON_DEFAULT_") and len(value) >= 40 else value
        for name, value in env.items()
    }
    with pytest.raises(
        ValueError, match=r"PrepareFunction: its environment variables take \d+ bytes; Lambda allows 4096"
    ):
        check_environment_size("PrepareFunction", wide)


def test_the_state_machine_names_each_kind_as_its_row_does():
    """The ASL's mode Choices and tasks use the kinds' spellings (job.modes.<kind>, <Step>FunctionArn)."""
    asl = (REPO / "statemachine" / "tryon.asl.json").read_text()
    assert set(re.findall(r"\$\.job\.modes\.([a-z_]+)", asl)) == {row.kind for row in schema.ENDPOINT_KINDS}
    assert set(re.findall(r"\$\.job\.async_waits\.([a-z_]+)", asl)) == {
        row.step for row in schema.ENDPOINT_KINDS
    }
    for row in schema.ENDPOINT_KINDS:
        assert f"${{{row.step.capitalize()}FunctionArn}}" in asl, row.step
