"""The package layout's rules: what the Lambda layer ships may import only Lambda-safe code, and
no two modules share a name.

The layer is a rule over packages (``LAYER_PACKAGES`` in src/Makefile), not a file list: every
module in those packages may import the standard library, the few third-party packages the
Lambda runtime or the layers provide, and other modules of those packages, nothing else.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import Counter
from pathlib import Path

import pytest
from support.paths import REPO

SRC = REPO / "src"
#: What a Lambda function has besides the layer's code: the runtime's boto3 (and botocore), the
#: layer's aws-lambda-powertools (with its tracer's aws_xray_sdk), the imaging layer's Pillow.
LAMBDA_THIRD_PARTY = {"boto3", "botocore", "aws_lambda_powertools", "aws_xray_sdk", "PIL"}


def layer_packages() -> list[str]:
    """The dotted names of the packages src/Makefile copies into the layer."""
    match = re.search(r"^LAYER_PACKAGES\s*:=\s*(.+)$", (SRC / "Makefile").read_text(), re.M)
    assert match, "src/Makefile must define LAYER_PACKAGES"
    return [path.replace("/", ".") for path in match.group(1).split()]


def imports_of(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in ``path``, relative imports resolved."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.append((node.lineno, base))
            found += [
                (node.lineno, f"{base}.{alias.name}") for alias in node.names if base.startswith("tryon")
            ]
    return found


def layer_modules() -> list[tuple[Path, str]]:
    out = []
    for package in layer_packages():
        for path in sorted((SRC / package.replace(".", "/")).rglob("*.py")):
            dotted = ".".join(path.relative_to(SRC).with_suffix("").parts)
            out.append((path, dotted.removesuffix(".__init__")))
    return out


def test_the_layer_is_the_lambda_safe_packages():
    assert layer_packages() == ["tryon.core", "tryon.workflow"]
    assert len(layer_modules()) > 20


@pytest.mark.parametrize("path,module", layer_modules(), ids=lambda v: v if isinstance(v, str) else "")
def test_layer_modules_import_only_lambda_safe_code(path, module):
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    allowed_tryon = ("tryon", *layer_packages())
    bad = []
    for line, name in imports_of(path, package):
        top = name.split(".")[0]
        if top == "tryon":
            # ``from tryon.core import imaging`` names a module; ``from tryon.core.x import Y`` a name in x
            if not (name == "tryon" or any(name == p or name.startswith(p + ".") for p in allowed_tryon[1:])):
                bad.append(f"line {line}: {name}")
        elif top and top not in sys.stdlib_module_names and top not in LAMBDA_THIRD_PARTY:
            bad.append(f"line {line}: {name}")
    assert not bad, f"{path.relative_to(REPO)} imports outside the Lambda-safe code: {bad}"


def test_no_two_modules_share_a_name():
    """One obvious home per concept: a module name says which one (``__init__`` aside)."""
    names = Counter(p.stem for p in (SRC / "tryon").rglob("*.py") if p.stem != "__init__")
    packages = {p.name for p in (SRC / "tryon").rglob("*") if p.is_dir() and (p / "__init__.py").exists()}
    assert [n for n, count in names.items() if count > 1] == []
    assert sorted(set(names) & packages) == [], "a module named like a package"


def test_no_prefixed_sibling_modules():
    """Modules that share a prefix (``server_invoke``, ``server_async``) belong in a package."""
    top = [p.stem for p in (SRC / "tryon").glob("*.py") if p.stem != "__init__"]
    assert top == [], f"modules at the package root belong in a subpackage: {top}"
