"""The template as SAM translates it, offline (samtranslator lives in the SAM CLI's venv, .venv-sam)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from support.paths import REPO, TEMPLATE

SAM_PYTHON = REPO / ".venv-sam" / "bin" / "python"

# Runs in the SAM CLI's venv (it has samtranslator): translate offline with a stub policy loader.
TRANSLATE = """
import json, sys
from cfnlint.decode import decode_str
from samtranslator.translator.transform import transform

class StubPolicyLoader:
    def load(self):
        return {}

src, dst = sys.argv[1], sys.argv[2]
template, errors = decode_str(open(src).read())
if errors:
    raise SystemExit(str(errors))
template = json.loads(json.dumps(template))
for res in template["Resources"].values():
    props = res.get("Properties", {})
    for key in ("CodeUri", "ContentUri"):
        if isinstance(props.get(key), str):
            props[key] = "s3://stub-artifacts/" + props[key].strip("/") + ".zip"
    if "DefinitionUri" in props:
        props["Definition"] = json.load(open(props.pop("DefinitionUri")))
json.dump(transform(template, {}, StubPolicyLoader()), open(dst, "w"), indent=1)
"""


def translate(template: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """Run the translation of ``template`` into ``out`` (JSON); the completed process."""
    assert SAM_PYTHON.exists(), f"{SAM_PYTHON} is missing: run `make tools` (the SAM CLI's venv)"
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"}
    return subprocess.run(
        [str(SAM_PYTHON), "-c", TRANSLATE, str(template), str(out)],
        capture_output=True,
        text=True,
        cwd=template.parent,
        env=env,
        timeout=180,
    )


@cache
def translated(template: Path = TEMPLATE) -> dict[str, Any]:
    """``template`` as SAM deploys it (once per process)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "translated.json"
        done = translate(template, out)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(out.read_text())


def role_statements(doc: dict[str, Any], function: str) -> list[Any]:
    """The inline policy statements of a function's role in a translated template (unresolved)."""
    role = doc["Resources"][function]["Properties"]["Role"]["Fn::GetAtt"][0]
    policies = doc["Resources"][role]["Properties"].get("Policies", [])
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]]
