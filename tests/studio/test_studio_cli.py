"""``tryon studio``: the address it binds, the warning beyond the loopback, its refusals as one line."""

from __future__ import annotations

from typing import Any

import pytest

from tryon.cli import run


@pytest.fixture
def served(monkeypatch) -> list[dict[str, Any]]:
    """What ``tryon studio`` would serve (the server itself is the browser tests')."""
    from tryon.studio import launch

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(launch, "serve", lambda **kwargs: calls.append(kwargs))
    return calls


def test_binds_the_loopback_address_by_default_without_a_warning(served, capsys):
    assert run(["studio"]) == 0
    assert served[0]["host"] == "127.0.0.1" and served[0]["port"] == 7860
    assert served[0]["stack"] is None and served[0]["models"] == []
    assert "warning" not in capsys.readouterr().err


def test_another_host_warns_that_there_is_no_authentication(served, capsys):
    assert run(["studio", "--host", "0.0.0.0", "--port", "8080", "--stack", "tryon"]) == 0
    assert served[0]["host"] == "0.0.0.0" and served[0]["stack"] == "tryon"
    err = capsys.readouterr().err
    assert "no authentication" in err and "0.0.0.0:8080" in err and "docs/studio.md" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--stack", "tryon", "--models", "sd_inpaint=/m"], "--models is for the local stack"),
        (["--port", "70000"], "--port: must be 1..65535, got 70000"),
    ],
)
def test_refusals_are_one_error_line(served, capsys, argv, message):
    assert run(["studio", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {message}"] or (len(err) == 1 and message in err[0])
    assert served == []


def test_an_unknown_stack_is_one_error_line_before_anything_serves(capsys, monkeypatch):
    import uvicorn
    from moto import mock_aws

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("served an unknown stack"))
    with mock_aws():
        code = run(["studio", "--stack", "nonesuch", "--region", "us-east-1"])
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == "error: --stack: no stack named 'nonesuch' in us-east-1"
    assert "Traceback" not in "\n".join(lines)
