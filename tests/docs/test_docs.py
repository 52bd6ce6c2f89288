"""Every code block of README.md and docs/*.md is run, compared or accounted for (docs/doc-tests.md).

Each fenced block is preceded by a directive, an HTML comment a reader of the rendered page
never sees::

    <!-- doc-test: run -->             run the block (bash or python) in a scratch folder; exit 0
    <!-- doc-test: aws -->             needs AWS: each `.venv/bin/tryon` line, run with no region
                                       and no credentials, fails fast with one `error:` line
    <!-- doc-test: output CMD -->      the block is CMD's output: CMD is run and the lines compared
                                       (durations, ids and hashes normalised)
    <!-- doc-test: serve -->           starts servers that run until Ctrl-C: each `tryon serve` line is
                                       started, must answer GET /ping with 200, and must exit 0 on Ctrl-C
    <!-- doc-test: with-server -->     talks to `tryon serve --tiny` on port 8080: run (as `run`) against
                                       one the test started once
    <!-- doc-test: skip REASON -->     checked without being run, for the reason given

A block without a directive fails the test, so a new example cannot go untested by accident.
The scratch folder is the "world" the examples assume (docs/doc-tests.md lists it): the
repository's .venv, assets/ and tiny checkpoints linked in, photos named as the examples
name them, and `/models/<name>` standing for your checkpoint folders, linked to the tiny ones.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from PIL import Image
from support.evaluation import docs_world
from support.paths import REPO
from support.processes import ctrl_c_reaches_it

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
DIRECTIVE = re.compile(
    r"^\s*<!--\s*doc-test:\s*(run|aws|output|serve|with-server|skip)(?![\w-])\s*(.*?)\s*-->\s*$"
)
#: The checkpoint folders the examples name, and the tiny checkpoint each stands for here.
MODEL_STAND_INS = {
    "sd2-inpainting-with-my-garment": "sd-inpaint",
    "sd15-inpainting-with-ip-adapter": "sd-inpaint-ip",
    "sd2-inpainting": "sd-inpaint",
    "sd15-inpainting": "sd-inpaint",
    "clipseg-rd64-refined": "clipseg",
    "sd-x4-upscaler": "sd-x4-upscaler",
    "sdxl-inpainting": "sdxl-inpaint",
    "sdxl-refiner-1.0": "sdxl-refiner",
    "ip-adapter-sd15": "ip-adapter",
    "sd15-inpainting-keep-body": "sd-inpaint-controls",
    "control_v11f1p_sd15_depth": "controlnet-depth",
    "control_v11p_sd15_openpose": "controlnet-pose",
    "depth-anything-v2-small": "depth-estimator",
    "vitpose-base-simple": "pose-estimator",
    "rtdetr_r50vd_coco_o365": "person-detector",
}
#: Adapter folders the examples name as the output of your fine-tuning, and their tiny stand-ins.
ADAPTER_STAND_INS = {
    "out/train/adapter": "lora-a",
    "out/train/red-dress/adapter": "lora-a",
    "out/train/blue-shirt/adapter": "lora-b",
    "out/train/denim/adapter": "lora-b",
    "out/sks-skirt/adapter": "lora-a",
}
#: An AWS command must fail within this many seconds (no region, no credentials: nothing to wait for).
AWS_FAIL_FAST_S = 30.0


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    body: str
    kind: str  # run | aws | output | serve | with-server | skip | "" (no directive)
    arg: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """Every fenced code block of ``page`` with the directive on the line before it."""
    text = page.read_text()
    lines = text.splitlines()
    found = []
    for token in MarkdownIt("commonmark").parse(text):
        if token.type != "fence" or token.map is None:
            continue
        start = token.map[0]
        previous = next((lines[i] for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        match = DIRECTIVE.match(previous)
        kind, arg = (match.group(1), match.group(2)) if match else ("", "")
        found.append(Block(page, start + 1, token.info.strip(), token.content, kind, arg))
    return found


ALL = [block for page in PAGES for block in blocks(page)]


def _ids(items: list[Block]) -> list[str]:
    return [b.where for b in items]


def test_every_block_is_run_compared_or_accounted_for():
    missing = [b.where for b in ALL if not b.kind]
    assert not missing, f"blocks without a <!-- doc-test: ... --> directive: {', '.join(missing)}"
    unexplained = [b.where for b in ALL if b.kind == "skip" and len(b.arg) < 10]
    assert not unexplained, f"skipped blocks need a reason: {', '.join(unexplained)}"
    assert len(ALL) >= 70  # README.md and docs/*.md held 76 blocks when this test was written


# ------------------------------------------------------------------ the examples' world
@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_models, tiny_metric_models) -> Path:
    """A scratch folder holding what the examples name (docs/doc-tests.md lists it)."""
    root = tmp_path_factory.mktemp("docs-world")
    for name in (".venv", "assets", "template.yaml", "statemachine", "functions", "models", "src"):
        (root / name).symlink_to(REPO / name)
    (root / ".cache").mkdir()
    (root / ".cache" / "tiny-models").symlink_to(tiny_models["clipseg"].parent)
    photo = Image.open(REPO / "assets" / "astronaut.jpg").convert("RGB").resize((192, 192))
    for name in ("my-photo.jpg", "look.jpg", "photo.jpg", "shopper.jpg", "model-1.jpg"):
        photo.save(root / name)
    photo.resize((96, 128)).save(root / "packshot.png")
    for adapter, tiny_name in ADAPTER_STAND_INS.items():  # adapters "from your training"
        (root / adapter).parent.mkdir(parents=True, exist_ok=True)
        (root / adapter).symlink_to(tiny_models[tiny_name])
    (root / "tmp").mkdir()  # the examples' /tmp/, kept apart from other runs on the machine
    (root / "photos").mkdir()
    photo.save(root / "photos" / "anna.jpg")
    photo.rotate(90).save(root / "photos" / "ben.jpg")
    docs_world(root, tiny_metric_models)  # docs/evaluation.md's manifests, dataset folder and networks
    return root


def _stand_ins(root: Path, tiny: dict[str, Path]) -> Path:
    """``/models/<name>`` of the examples -> a folder of links to the tiny checkpoints."""
    models = root / "stand-in-models"
    if not models.exists():
        models.mkdir()
        for name, tiny_name in MODEL_STAND_INS.items():
            (models / name).symlink_to(tiny[tiny_name])
    return models


def _environment(root: Path, *, aws: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TRYON_DEBUG"))}
    env.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO / "src"), COLUMNS="200")
    if aws:  # a new user's machine: no region, no credentials, no config files
        env.update(
            AWS_CONFIG_FILE=str(root / "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(root / "no-aws-credentials"),
            AWS_EC2_METADATA_DISABLED="true",
        )
    else:
        env.update(
            AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing"
        )
    return env


def _shell(body: str, root: Path, tiny: dict[str, Path]) -> str:
    """The block as a script for the world: ``/models/`` and ``/tmp/`` paths point into it."""
    body = re.sub(r"(?<![\w./-])/tmp/", f"{root}/tmp/", body)
    return body.replace("/models/", f"{_stand_ins(root, tiny)}/")


def _run(script: str, root: Path, *, lang: str, aws: bool = False, timeout: float = 300):
    command = (
        [sys.executable, "-c", script] if lang == "python" else ["bash", "-e", "-o", "pipefail", "-c", script]
    )
    return subprocess.run(
        command, cwd=root, env=_environment(root, aws=aws), capture_output=True, text=True, timeout=timeout
    )


# ------------------------------------------------------------------ run
RUN = [b for b in ALL if b.kind == "run"]


@pytest.mark.slow
@pytest.mark.parametrize("block", RUN, ids=_ids(RUN))
def test_run_blocks_succeed_as_written(block, world, tiny_models):
    done = _run(_shell(block.body, world, tiny_models), world, lang=block.lang)
    assert done.returncode == 0, f"{block.where} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, f"{block.where}:\n{done.stderr}"


# ------------------------------------------------------------------ serve, with-server
#: The port the examples' servers listen on (tryon serve's default); the test uses a free one.
EXAMPLE_PORT = 8080
SERVER_READY_S = 300.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _commands(body: str) -> list[str]:
    """The block's commands, one per line (continuations joined, comments and blank lines dropped)."""
    joined = re.sub(r"[ \t]*\\\n\s*", " ", body)
    lines = [re.split(r"(?:^|\s+)#", line, maxsplit=1)[0].strip() for line in joined.splitlines()]
    return [line for line in lines if line]


def _on_port(text: str, port: int) -> str:
    """The examples' port 8080 replaced by ``port``; every ``tryon serve`` told to listen on it."""
    text = re.sub(rf"(127\.0\.0\.1|localhost):{EXAMPLE_PORT}\b", rf"\g<1>:{port}", text)
    text = re.sub(rf"--port {EXAMPLE_PORT}\b", f"--port {port}", text)
    return text.replace(".venv/bin/tryon serve", f".venv/bin/tryon serve --port {port}")


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _start_server(command: str, root: Path) -> subprocess.Popen[str]:
    """``command`` in the background, as a terminal would run it (Ctrl-C reaches it)."""
    return subprocess.Popen(
        ["bash", "-c", command],
        cwd=root,
        env=_environment(root, aws=False),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=ctrl_c_reaches_it,
    )


def _wait_ready(server: subprocess.Popen[str], port: int, what: str) -> None:
    deadline = time.monotonic() + SERVER_READY_S
    while not _ready(port):
        if server.poll() is not None:
            out, err = server.communicate()
            raise AssertionError(f"{what} exited {server.returncode} before answering /ping:\n{out}\n{err}")
        assert time.monotonic() < deadline, f"{what} did not answer /ping within {SERVER_READY_S:.0f} s"
        time.sleep(0.5)


def _ctrl_c(server: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Ctrl-C (SIGINT to its process group), then its exit code and output."""
    os.killpg(server.pid, signal.SIGINT)
    try:
        out, err = server.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        out, err = server.communicate()
        raise AssertionError(f"did not stop within 60 s of Ctrl-C:\n{out}\n{err}") from None
    return server.returncode, out, err


SERVE = [b for b in ALL if b.kind == "serve"]


def _files_from_earlier_blocks(block: Block, root: Path, tiny: dict[str, Path]) -> None:
    """Run the page's earlier ``run`` blocks when ``block`` names an ``out/`` file they write."""
    wanted = [name for name in re.findall(r"\bout/[\w./-]+", block.body) if not (root / name).exists()]
    if not wanted:
        return
    for earlier in (b for b in RUN if b.page == block.page and b.line < block.line):
        done = _run(_shell(earlier.body, root, tiny), root, lang=earlier.lang)
        assert done.returncode == 0, f"{earlier.where} (run first for {block.where}):\n{done.stderr}"


@pytest.mark.slow
@pytest.mark.parametrize("block", SERVE, ids=_ids(SERVE))
def test_serve_blocks_start_answer_and_stop_on_ctrl_c(block, world, tiny_models):
    _files_from_earlier_blocks(block, world, tiny_models)
    commands = _commands(_shell(block.body, world, tiny_models))
    assert any(".venv/bin/tryon serve" in command for command in commands), block.where
    for command in commands:
        if ".venv/bin/tryon serve" not in command:
            done = _run(command, world, lang="bash")
            assert done.returncode == 0, f"{block.where}: {command}\n{done.stderr}"
            continue
        port = _free_port()
        server = _start_server(_on_port(command, port), world)
        try:
            _wait_ready(server, port, f"{block.where}: {command}")
        finally:
            code, out, err = _ctrl_c(server)
        assert code == 0, f"{block.where}: {command} exited {code} on Ctrl-C:\n{out}\n{err}"
        assert out.startswith(f"serving on http://127.0.0.1:{port} "), out
        assert "Traceback" not in err, err


@pytest.fixture(scope="module")
def tiny_server(world, tiny_models) -> int:
    """`tryon serve --tiny` in the examples' folder, once for every ``with-server`` block; its port."""
    port = _free_port()
    server = _start_server(f".venv/bin/tryon serve --tiny --port {port}", world)
    try:
        _wait_ready(server, port, "tryon serve --tiny")
        yield port
    finally:
        _ctrl_c(server)


WITH_SERVER = [b for b in ALL if b.kind == "with-server"]


@pytest.mark.slow
@pytest.mark.parametrize("block", WITH_SERVER, ids=_ids(WITH_SERVER))
def test_with_server_blocks_succeed_against_tryon_serve(block, world, tiny_models, tiny_server):
    script = _on_port(_shell(block.body, world, tiny_models), tiny_server)
    done = _run(script, world, lang=block.lang, aws=True)  # no credentials but the block's own
    assert done.returncode == 0, f"{block.where} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, f"{block.where}:\n{done.stderr}"


# ------------------------------------------------------------------ aws
AWS = [b for b in ALL if b.kind == "aws"]


def _tryon_lines(body: str) -> list[str]:
    """The block's `.venv/bin/tryon` commands (continuations joined, comments dropped)."""
    joined = re.sub(r"\\\n\s*", " ", body)
    lines = [re.split(r"\s+#", line, maxsplit=1)[0].strip() for line in joined.splitlines()]
    return [line for line in lines if line.startswith(".venv/bin/tryon ")]


@pytest.mark.parametrize("block", AWS, ids=_ids(AWS))
def test_aws_blocks_fail_fast_with_one_error_line_without_aws(block, world, tiny_models):
    commands = _tryon_lines(block.body)
    for command in commands:
        script = _shell(command.replace("<", "").replace(">", "").replace("|", "-"), world, tiny_models)
        start = time.monotonic()
        done = _run(script, world, lang="bash", aws=True)
        took = time.monotonic() - start
        assert done.returncode in (2, 3), f"{block.where}: {command}\n{done.stdout}\n{done.stderr}"
        errors = done.stderr.splitlines()
        assert len(errors) == 1 and errors[0].startswith("error: "), (
            f"{block.where}: {command}\n{done.stderr}"
        )
        assert took < AWS_FAIL_FAST_S, f"{block.where}: {command} took {took:.0f} s to fail"


# ------------------------------------------------------------------ output
OUTPUT = [b for b in ALL if b.kind == "output"]
_NORMALISE = [
    (re.compile(r"\(\d+\.\d\d s\)"), "(N s)"),
    (re.compile(r"event-[0-9a-f]{20}"), "event-ID"),
    (re.compile(r"\b[0-9a-f]{20}\b"), "ID"),
    (re.compile(r"sha256 [0-9a-f]{8,64}\.*"), "sha256 HASH"),
    (re.compile(r"\(\d+\.\d MB from \d+\.\d MB in \d+ files\)"), "(SIZES)"),
    (re.compile(r"^\$ .*$"), ""),
]


def normalise(text: str, world: Path | None = None) -> list[str]:
    """The lines that matter: durations, ids, hashes and the scratch folder's path replaced."""
    out = []
    for line in text.splitlines():
        if world is not None:
            line = line.replace(str(world), "<repo>").replace(str(REPO), "<repo>")
        else:
            line = line.replace("/work/main", "<repo>")
        for pattern, replacement in _NORMALISE:
            line = pattern.sub(replacement, line)
        if line.strip():
            out.append(line.rstrip())
    return out


@pytest.mark.slow
@pytest.mark.parametrize("block", OUTPUT, ids=_ids(OUTPUT))
def test_output_blocks_show_what_the_command_prints(block, world, tiny_models):
    done = _run(_shell(block.arg, world, tiny_models), world, lang="bash")
    printed = normalise(done.stdout + done.stderr, world)
    shown = normalise(block.body)
    assert printed == shown, (
        f"{block.where}: the docs show\n"
        + "\n".join(shown)
        + "\nbut `"
        + block.arg
        + "` prints\n"
        + "\n".join(printed)
    )


def test_the_world_is_what_docs_doc_tests_md_lists():
    page = (REPO / "docs" / "doc-tests.md").read_text()
    for name in (
        "my-photo.jpg",
        "look.jpg",
        "packshot.png",
        "photos/",
        "/models/<name>",
        "out/train/adapter",
        "rows.csv",
        "metric-models/",
        "data/viton-hd/test",
    ):
        assert name in page, f"docs/doc-tests.md does not mention {name}"


def test_a_missing_directive_is_reported(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```bash\necho hi\n```\n\n<!-- doc-test: skip a diagram, nothing to run -->\n```\nA\n```\n"
    )
    found = blocks(page)
    assert [(b.line, b.kind) for b in found] == [(3, ""), (8, "skip")]
    assert shutil.which("bash")


def test_server_directives_and_the_examples_port(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- doc-test: serve -->\n```bash\n.venv/bin/tryon serve --tiny\n```\n\n"
        "<!-- doc-test: with-server -->\n```bash\ncurl -s localhost:8080/ping\n```\n"
    )
    assert [(b.kind, b.arg) for b in blocks(page)] == [("serve", ""), ("with-server", "")]
    assert _on_port(".venv/bin/tryon serve -e x=DIR \\\n  --port 8080 --default x", 5001) == (
        ".venv/bin/tryon serve --port 5001 -e x=DIR \\\n  --port 5001 --default x"
    )
    assert _on_port('rt = client(endpoint_url="http://127.0.0.1:8080")', 5001) == (
        'rt = client(endpoint_url="http://127.0.0.1:5001")'
    )
    assert _on_port("curl -s localhost:8080/ping", 5001) == "curl -s localhost:5001/ping"
    assert _commands("# start\n.venv/bin/tryon serve \\\n  -e a=B   # a comment\n\nls\n") == [
        ".venv/bin/tryon serve -e a=B",
        "ls",
    ]
