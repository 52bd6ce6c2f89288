"""Running a script under the serving image's library versions (``make serving-venv``)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest


def serving_python(repo_root: Path) -> Path:
    """``.venv-serving/bin/python``; a missing one fails the test under ``make test``
    (``TRYON_REQUIRE_SERVING_VENV``) and skips it elsewhere, naming the make target."""
    serving = repo_root / ".venv-serving" / "bin" / "python"
    if not serving.exists():
        message = f"{serving} is missing: build it with `make serving-venv`"
        if os.environ.get("TRYON_REQUIRE_SERVING_VENV"):
            pytest.fail(message)
        pytest.skip(message)
    return serving


def run_script(repo_root: Path, script: str, *args: str, request: Any) -> Any:
    """``script`` (``python -c``) on the serving venv with ``request`` as JSON on stdin: the JSON
    of its last stdout line."""
    done = subprocess.run(
        [str(serving_python(repo_root)), "-c", script, *args],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(repo_root / "src"),
            "PATH": os.defpath,
        },
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])
