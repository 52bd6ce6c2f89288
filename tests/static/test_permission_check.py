"""The permission check itself (tests/support/iam_check.py): it would have caught issue 17 item 3.

CompleteAsync on today's main could not list the asynchronous outputs: reading a missing answer
needs the implicit s3:ListBucket, and the check names the function, the action, the resource and
the test. On the template of this branch the same call passes.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from support.iam_check import PermissionCheck
from support.paths import REPO, TEMPLATE

from tryon.local import iam
from tryon.local.template import SamTemplate, load_template

TEST = "tests/workflow/test_example.py::test_answer_lost"


def _stack(template: Path) -> SamTemplate:
    t = SamTemplate(template)
    for bucket, name in (("InputBucket", "in"), ("OutputBucket", "out")):
        t.resources[bucket] = {"Ref": name, "Arn": f"arn:aws:s3:::{name}"}
    return t


def _missing_answer(t: SamTemplate) -> iam.Call:
    request = iam.missing_object_request("out", "async/outputs/lost.out", partition="aws")
    return iam.Call("CompleteAsyncFunction", "s3", "GetObject", [request], template=t)


def _main_like(tmp_path: Path) -> Path:
    doc = load_template(TEMPLATE)
    statements = doc["Resources"]["CompleteAsyncFunction"]["Properties"]["Policies"][0]["Statement"]
    statements[:] = [s for s in statements if s.get("Sid") != "ListAnswersAndErrors"]
    path = tmp_path / "template.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    for folder in ("functions", "statemachine", "src", "layers"):
        (tmp_path / folder).symlink_to(REPO / folder)
    return path


def test_a_call_the_policy_does_not_allow_is_named_with_its_test(tmp_path):
    check = PermissionCheck()
    check.current = TEST
    check.record(_missing_answer(_stack(_main_like(tmp_path))))
    [violation] = check.violations(TEST)
    assert violation == (
        "CompleteAsyncFunction needs s3:ListBucket on arn:aws:s3:::out (s3:prefix=async/outputs/lost.out) "
        "to tell 404 from 403 for a missing key, which its policy (the SAM-translated template) does not "
        f"allow [test {TEST}]"
    )


def test_the_same_call_passes_on_this_template():
    check = PermissionCheck()
    check.current = TEST
    check.record(_missing_answer(_stack(TEMPLATE)))
    assert check.violations(TEST) == []


def test_a_call_with_no_iam_mapping_fails_too():
    check = PermissionCheck()
    check.current = TEST
    check.record(iam.Call("PrepareFunction", "s3", "CopyObject", None, template=_stack(TEMPLATE)))
    [violation] = check.violations(TEST)
    assert "PrepareFunction called s3.CopyObject, which tryon.local.iam cannot map" in violation
