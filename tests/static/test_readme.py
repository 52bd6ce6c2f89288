"""The README's commands, JSON examples and links stay true (`make demo`/`make test` run in CI)."""

from __future__ import annotations

import io
import json
import re
import shlex
from contextlib import redirect_stdout

import pytest
from support.paths import REPO

from tryon.cli import run

ROOT = REPO
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, flags=re.S)


def _commands(prefix: str) -> list[list[str]]:
    """Shell commands in bash blocks starting with ``prefix`` (continuations joined, comments dropped)."""
    out = []
    for lang, body in BLOCKS:
        if lang != "bash":
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            for part in line.split("&&"):
                tokens = shlex.split(part.strip()) if part.strip() else []
                if tokens and tokens[0] == prefix:
                    out.append(tokens[1:])
    return out


TRYON = _commands(".venv/bin/tryon")
SUBCOMMANDS = {
    "train": {"local", "sagemaker", "package-adapter", "upload-adapter"},
    "batch": {"run", "submit", "status", "cross"},
}


def _split(tokens: list[str]) -> tuple[list[str], list[str]]:
    path = [tokens[0]]
    if tokens[0] in SUBCOMMANDS and len(tokens) > 1 and tokens[1] in SUBCOMMANDS[tokens[0]]:
        path.append(tokens[1])
    options = [t.split("=")[0] for t in tokens if t.startswith("--")]
    return path, options


def _help(path: list[str]) -> str:
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        try:
            code = run([*path, "--help"])
        except SystemExit as exc:  # argparse-based subcommands exit after printing help
            code = exc.code or 0
    assert code == 0, f"tryon {' '.join(path)} --help failed"
    return buffer.getvalue()


def test_readme_has_tryon_commands():
    assert len(TRYON) >= 10


@pytest.mark.parametrize("tokens", TRYON, ids=[" ".join(t[:2]) for t in TRYON])
def test_every_tryon_command_and_option_in_the_readme_exists(tokens, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps long option names otherwise
    path, options = _split(tokens)
    text = _help(path)
    for option in options:
        assert option in text, f"tryon {' '.join(path)} has no option {option}"


def test_every_make_target_in_the_readme_exists():
    makefile = (ROOT / "Makefile").read_text()
    targets = {t for t in re.findall(r"^([\w-]+):", makefile, flags=re.M)}
    used = {tokens[0] for tokens in _commands("make")}
    assert {"demo", "test"} <= used
    assert used <= targets


def test_console_input_example_is_accepted_by_prepare():
    from tryon.workflow.job import parse_trigger

    examples = [json.loads(body) for lang, body in BLOCKS if lang == "json"]
    assert examples
    for example in examples:
        example["image"] = example["image"].replace("<InputBucketName>", "my-input-bucket")
        trigger = parse_trigger(example)
        assert trigger.source == "console" and trigger.key.startswith("inputs/")


def _slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_local_link_resolves():
    for target in re.findall(r"\]\(((?!https?://)[^)]+)\)", README):
        path, _, anchor = target.partition("#")
        file = ROOT / path
        assert file.exists(), f"README links to missing {path}"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", file.read_text(), flags=re.M)
            assert anchor in {_slug(h) for h in headings}, f"{path} has no heading #{anchor}"
