"""The permission check (issue 17): every AWS call a Lambda function makes while the tests run,
authorised against that function's policy as SAM translates template.yaml.

The local stack records each call its functions make (``tryon.local.iam``: a botocore hook,
attributed to the function whose environment the calling thread runs in) as IAM requests:
action, resource, condition keys, and for a missing object the implicit ``s3:ListBucket`` that
decides 404 against 403. This plugin attributes them to the test that was running and, when the
test ends, evaluates them against the role statements of the SAM-translated template (the one the
stack was made from, resolved with that stack's parameters and names). A call the policy does not
allow, or one ``tryon.local.iam`` cannot map to IAM, fails the test, naming the function, the
action, the resource and the test. Tests that take a grant away on purpose carry
``@pytest.mark.expects_denied_calls``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from support.sam import role_statements, translated
from tryon.local import iam

MARKER = "expects_denied_calls"


class PermissionCheck:
    """Calls by test, and their evaluation against the SAM-translated policies."""

    def __init__(self) -> None:
        self.current = "(before any test)"
        self.calls: dict[str, list[iam.Call]] = {}
        self.checked: set[str] = set()
        self.counted = 0
        self._lock = threading.Lock()
        self._statements: dict[tuple[int, str], list[dict[str, Any]]] = {}

    def record(self, call: iam.Call) -> None:
        with self._lock:
            self.calls.setdefault(self.current, []).append(call)

    def _sam_statements(self, call: iam.Call) -> list[dict[str, Any]]:
        t = call.template
        assert t is not None
        key = (id(t), call.function)
        if key not in self._statements:
            doc = translated(Path(t.path).resolve())
            self._statements[key] = [
                s for s in t.resolve(role_statements(doc, call.function)) if isinstance(s, dict)
            ]
        return self._statements[key]

    def violations(self, test: str) -> list[str]:
        """What the SAM-translated policies do not allow among the calls made during ``test``."""
        with self._lock:
            calls = self.calls.get(test, [])
            self.checked.add(test)
        found = []
        for call in calls:
            self.counted += 1
            if call.requests is None:
                found.append(
                    f"{call.function} called {call.service}.{call.operation}, which tryon.local.iam cannot "
                    f"map to an IAM action yet (add it to requests_for) [test {test}]"
                )
                continue
            statements = self._sam_statements(call)
            for request in call.requests:
                if not iam.evaluate(statements, request).allowed:
                    why = (
                        "to tell 404 from 403 for a missing key"
                        if request.implicit
                        else f"for {call.operation}"
                    )
                    found.append(
                        f"{call.function} needs {request.describe()} {why}, which its policy (the "
                        f"SAM-translated template) does not allow [test {test}]"
                    )
        return sorted(set(found))

    def unchecked(self) -> list[str]:
        with self._lock:
            tests = [t for t in self.calls if t not in self.checked]
        return [v for t in tests for v in self.violations(t)]


CHECK = PermissionCheck()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}: the test takes a grant away on purpose (permission check off)"
    )
    if CHECK.record not in iam.LISTENERS:
        iam.LISTENERS.append(CHECK.record)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    CHECK.current = item.nodeid  # fixtures set up for this test count as this test's


@pytest.fixture(autouse=True)
def permission_check(request: pytest.FixtureRequest):
    """Fails a test whose functions made a call their policy does not allow (at its teardown)."""
    yield
    if request.node.get_closest_marker(MARKER):
        CHECK.checked.add(request.node.nodeid)
        return
    found = CHECK.violations(request.node.nodeid)
    if found:
        pytest.fail("permission check: " + "; ".join(found), pytrace=False)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    late = CHECK.unchecked()
    if CHECK.counted or late:
        terminalreporter.write_line(
            f"permission check: {CHECK.counted} AWS calls of the Lambda functions evaluated"
        )
    for line in late:
        terminalreporter.write_line(f"permission check (after its test ended): {line}", red=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if CHECK.unchecked() and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
