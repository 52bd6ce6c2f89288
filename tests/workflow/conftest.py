"""Fixtures of the workflow tests: one local stack (``wf``) shared by every test that needs no stack
of its own.

The shared stack is ``template.yaml`` with the three endpoints on the tiny checkpoints (the
inpainting model carries the tiny IP-Adapter and the LoRA adapter ``garment-a``) and
:data:`SHARED_PARAMETERS`; a test that needs other values sets them per execution (console
input or upload metadata), as a user of one deployed stack would. Tests that need another
template (other endpoint modes, another inpainting model, EventBridge delivery) build their own.

The stack starts when the first test asks for ``wf``, stays up while the tests that follow ask
for it too (the tests using it are run one after another), and stops before any other test runs,
so no other moto mock ever overlaps it. After each test the endpoint hooks and injected faults it
added are removed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.workflow import all_models

#: Template parameters of the shared stack: few steps for the tiny models.
SHARED_PARAMETERS = {"DefaultSteps": 2, "DefaultUpscaleSteps": 2}
#: The shared stack while it runs: {"stack": LocalWorkflow}.
_SHARED: dict[str, Any] = {}
_HERE = Path(__file__).parent


def _uses_shared_stack(item: pytest.Item | None) -> bool:
    return item is not None and "wf" in getattr(item, "fixturenames", ())


def _stop_shared_stack() -> None:
    stack = _SHARED.pop("stack", None)
    if stack is not None:
        stack.__exit__(None, None, None)


@pytest.fixture
def wf(tiny_models, tmp_path_factory):
    """The shared :class:`~tryon.local.LocalWorkflow` (see the module docstring)."""
    from tryon.local import LocalWorkflow
    from tryon.local.samples import assemble_inpaint_model

    if "stack" not in _SHARED:
        inpaint = assemble_inpaint_model(
            tiny_models["sd-inpaint-ip"],
            {"garment-a": tiny_models["lora-a"]},
            tmp_path_factory.mktemp("shared-inpaint"),
        )
        models = {**all_models(tiny_models), "sd_inpaint": inpaint}
        stack = LocalWorkflow(models, parameters=SHARED_PARAMETERS)
        _SHARED["stack"] = stack.__enter__()
    stack = _SHARED["stack"]
    yield stack
    stack.remove_endpoint_hooks()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run this folder's tests that use ``wf`` after its others (order kept otherwise), so the shared
    stack starts once."""
    mine = [i for i, item in enumerate(items) if _HERE in item.path.parents]
    ordered = sorted((items[i] for i in mine), key=_uses_shared_stack)  # a stable sort
    for i, item in zip(mine, ordered, strict=True):
        items[i] = item


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    yield
    if not _uses_shared_stack(nextitem):
        _stop_shared_stack()


def pytest_sessionfinish(session: pytest.Session) -> None:
    _stop_shared_stack()
