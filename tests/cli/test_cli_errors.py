"""The CLI's one error policy: every failure is one `error:` line and a documented exit code.

Each case here once ended in a traceback, minutes of Hub retries, or a misleading message.
"""

from __future__ import annotations

import time

import pytest
from support.images import save_photo

from tryon.cli import EXIT_AWS, EXIT_BAD_INPUT, EXIT_WORKFLOW_FAILED, run


def _refused(capsys, argv: list[str], code: int = EXIT_BAD_INPUT) -> str:
    """Run ``argv``; assert the exit code and that stderr is clean; return stderr."""
    assert run(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Exception" not in err
    return err


@pytest.fixture
def no_aws_config(monkeypatch, tmp_path):
    """No region and no profile from the environment or config files."""
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


# -------------------------------------------------------------- the central guard
def test_an_unexpected_exception_is_one_line_not_a_traceback(monkeypatch, capsys, tmp_path):
    import tryon.weights.tiny

    def broken(*_args, **_kwargs):
        raise RuntimeError("the disk caught fire")

    monkeypatch.setattr(tryon.weights.tiny, "ensure_tiny_models", broken)
    err = _refused(capsys, ["tiny-models", "--out", str(tmp_path / "m")], EXIT_WORKFLOW_FAILED)
    assert err.startswith("error: the disk caught fire") and "TRYON_DEBUG=1" in err
    assert "RuntimeError" not in err

    monkeypatch.setenv("TRYON_DEBUG", "1")
    assert run(["tiny-models", "--out", str(tmp_path / "m")]) == EXIT_WORKFLOW_FAILED
    assert "Traceback" in capsys.readouterr().err  # for a bug report


def test_os_errors_name_the_file_without_errno(monkeypatch, capsys, tmp_path):
    import tryon.weights.tiny

    def denied(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied", "/root/secret")

    monkeypatch.setattr(tryon.weights.tiny, "ensure_tiny_models", denied)
    err = _refused(capsys, ["tiny-models", "--out", str(tmp_path / "m")])
    assert "error: Permission denied: /root/secret" in err and "Errno" not in err


# -------------------------------------------------------------- specific checks
def test_serve_refuses_a_port_out_of_range(capsys):
    err = _refused(capsys, ["serve", "--tiny", "--port", "99999"])
    assert "'--port'" in err and "65535" in err


def test_tiny_models_refuses_a_file_as_out(capsys, tmp_path):
    target = tmp_path / "a-file"
    target.write_text("x")
    assert "--out: " in _refused(capsys, ["tiny-models", "--out", str(target)])
    assert target.read_text() == "x"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("/nonexistent", "pretrained_model: /nonexistent does not exist"),
        ("{clipseg}", "is not a diffusers pipeline folder (no model_index.json"),
        ("{empty}", "has no config.json or model_index.json"),
    ],
)
def test_train_local_checks_the_base_model_first(source, message, capsys, tmp_path, tiny_models):
    (tmp_path / "empty").mkdir()
    photos = tmp_path / "photos"
    photos.mkdir()
    save_photo(photos / "a.png")
    pretrained = source.format(clipseg=tiny_models["clipseg"], empty=tmp_path / "empty")
    argv = ["train", "local", "--pretrained-model", pretrained, "--instance-data-dir", str(photos),
            "--instance-prompt", "a photo of sks skirt", "--output-dir", str(tmp_path / "out")]  # fmt: skip
    assert message in _refused(capsys, argv)
    assert not (tmp_path / "out").exists()


@pytest.fixture
def hub_unreachable(monkeypatch):
    """Hub access allowed, but the Hub's address refuses connections (as with no network)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")


def test_run_with_a_hub_id_and_no_network_fails_in_seconds(hub_unreachable, capsys, tmp_path):
    photo = save_photo(tmp_path / "p.png")
    started = time.monotonic()
    err = _refused(capsys, ["run", str(photo), "--models", "clipseg=tryon-tests/never-cached-clipseg"])
    assert time.monotonic() - started < 15
    assert "--models clipseg: cannot reach the Hugging Face Hub at http://127.0.0.1:9" in err
    assert "--local-dir DIR" in err and "give the folder instead" in err


def test_run_with_a_hub_id_offline_says_it_is_not_cached(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    err = _refused(
        capsys, ["run", str(save_photo(tmp_path / "p.png")), "--models", "clipseg=tryon-tests/never-cached"]
    )
    assert "not in the local Hugging Face cache and HF_HUB_OFFLINE is set" in err


def test_serve_refuses_a_folder_without_weights_instead_of_the_hub(hub_unreachable, capsys, tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a model")
    started = time.monotonic()
    err = _refused(capsys, ["serve", "-e", f"clipseg={folder}", "--port", "0"])
    assert time.monotonic() - started < 15
    assert "has no config.json or model_index.json" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--preset", "nope"],
            "preset: unknown preset 'nope'; known: draft, dress, footwear, full-body, lower-body, outerwear, "
            "quality, standard, upper-body",
        ),
        (["--set", "threshold=2"], "threshold (from metadata): must be <= 1"),
        # the content policy (docs/responsible-use.md), as Prepare applies it
        (["--prompt", "a topless model"], "error: prompt: 'topless' asks for nudity or sexual content"),
        (["--negative-prompt", "clothes"], "error: negative_prompt: 'clothes' steers the painting away"),
        (["--query", "skin"], "error: query: 'skin' points the mask at skin or a body region"),
    ],
)
def test_run_validates_the_job_before_any_model_loads(args, message, monkeypatch, capsys, tmp_path):
    import tryon.local.runner

    def must_not_run(*_args, **_kwargs):
        raise AssertionError("the workflow ran")

    monkeypatch.setattr(tryon.local.runner, "run_photo", must_not_run)
    err = _refused(capsys, ["run", str(save_photo(tmp_path / "p.png")), *args])
    assert message in err and "Lambda" not in err


def test_run_moderation_off_takes_a_reason_and_reaches_the_local_stack(monkeypatch, capsys, tmp_path):
    import tryon.local.runner
    from tryon.aws.executions import ExecutionResult

    seen: dict = {}

    def fake_run(photo, **kwargs):
        seen.update(kwargs)
        done = ExecutionResult("arn:x", "SUCCEEDED", {"status": "succeeded"}, None, None)
        return tryon.local.runner.LocalRun(result=done, key="inputs/p.png", files=[])

    monkeypatch.setattr(tryon.local.runner, "run_photo", fake_run)
    photo = str(save_photo(tmp_path / "p.png"))
    err = _refused(capsys, ["run", photo, "--moderation-off", " "])
    assert err.startswith("error: --moderation-off needs a reason") and not seen
    assert run(["run", photo, "--moderation-off", "my own studio photos", "--no-progress"]) == 0
    assert seen["parameters"]["ContentModeration"] == "off"
    assert seen["parameters"]["ContentModerationOffReason"] == "my own studio photos"


def test_run_refuses_a_photo_the_event_rule_would_never_forward(capsys, tmp_path):
    photo = save_photo(tmp_path / "p.png").rename(tmp_path / "photo.gif")
    assert "IMAGE: photo.gif must end with one of .jpg, .jpeg, .png, .webp" in _refused(
        capsys, ["run", str(photo)]
    )


def test_run_refuses_a_truncated_photo(capsys, tmp_path):
    photo = save_photo(tmp_path / "p.png")
    photo.write_bytes(photo.read_bytes()[:-40])
    assert "IMAGE:" in _refused(capsys, ["run", str(photo)])


# -------------------------------------------------------------- AWS conventions
def test_aws_region_wins_over_aws_default_region_and_region_wins_over_both(monkeypatch, no_aws_config):
    from tryon.cli.sessions import session

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert session().region_name == "eu-west-1"
    assert session("ap-southeast-2").region_name == "ap-southeast-2"
    monkeypatch.delenv("AWS_REGION")
    assert session().region_name == "us-east-1"


def test_profile_gives_its_region_and_an_unknown_profile_is_refused(
    monkeypatch, capsys, no_aws_config, tmp_path
):
    from tryon.cli.sessions import session

    config = tmp_path / "config"
    config.write_text("[profile dev]\nregion = eu-central-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    assert session(profile="dev").region_name == "eu-central-1"
    err = _refused(capsys, ["status", "job", "--stack", "s", "--profile", "nope"], EXIT_AWS)
    assert "--profile: " in err and "nope" in err


def test_missing_region_says_so_not_credentials(capsys, no_aws_config):
    err = _refused(capsys, ["status", "job", "--stack", "s"], EXIT_AWS)
    assert "no region configured" in err and "credentials" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "job", "--stack", "s", "--region", "mars-1"],
        [
            "deploy-models",
            "--artifact",
            "clipseg=s3://a/m.tar.gz",
            "--role",
            "arn:aws:iam::123456789012:role/sagemaker-exec",
            "--region",
            "mars-1",
            "--dry-run",
        ],
    ],
)
def test_unknown_region_is_refused_before_any_call(argv, capsys):
    err = _refused(capsys, argv)
    assert "--region: unknown AWS region 'mars-1'" in err and "us-east-1" in err


def test_unknown_region_from_aws_region_names_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("AWS_REGION", "mars-1")
    assert "AWS_REGION: unknown AWS region 'mars-1'" in _refused(capsys, ["status", "job", "--stack", "s"])


def test_submit_checks_the_photo_before_calling_aws(capsys, no_aws_config, tmp_path):
    # No region and no credentials: an AWS call would exit 3; the missing photo is found first.
    err = _refused(capsys, ["submit", str(tmp_path / "missing.jpg"), "--stack", "s"])
    assert "IMAGE: " in err and "missing.jpg is not a file" in err


def test_submit_applies_the_content_policy_before_calling_aws(capsys, no_aws_config, tmp_path):
    # No region and no credentials: an AWS call would exit 3; the refused prompt is found first.
    err = _refused(
        capsys, ["submit", str(save_photo(tmp_path / "p.png")), "--stack", "s", "--prompt", "nsfw"]
    )
    assert err.startswith("error: prompt: 'nsfw' asks for nudity or sexual content")


def test_deploy_models_refuses_an_instance_type_without_ml_prefix(capsys):
    argv = ["deploy-models", "--artifact", "clipseg=s3://a/m.tar.gz", "--instance-type", "clipseg=m5.large",
            "--region", "us-east-1", "--dry-run"]  # fmt: skip
    assert "ml." in _refused(capsys, argv)


# -------------------------------------------------------------- library notices
_LOAD_MODELS = """
import sys
if sys.argv[1] == "cli":  # as in a command: the libraries are imported after the CLI starts
    from tryon.cli import run
    run(["tiny-models", "--out", sys.argv[2]])  # any command quiets the notices for the process
import torch
from diffusers import StableDiffusionInpaintPipeline
from transformers import AutoProcessor
AutoProcessor.from_pretrained(sys.argv[3])
StableDiffusionInpaintPipeline.from_pretrained(
    sys.argv[4], torch_dtype=torch.float32, safety_checker=None, requires_safety_checker=False
)
"""


def test_every_command_quiets_the_torchvision_and_torch_dtype_notices(tiny_models):
    import subprocess
    import sys

    root, clipseg, inpaint = (
        str(tiny_models["clipseg"].parent),
        str(tiny_models["clipseg"]),
        str(tiny_models["sd-inpaint"]),
    )
    env = {**__import__("os").environ, "TRANSFORMERS_VERBOSITY": "warning"}

    def stderr(mode: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", _LOAD_MODELS, mode, root, clipseg, inpaint],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return done.stderr

    plain = stderr("plain")  # the notices exist: without the CLI both show
    assert "requires torchvision" in plain and "`torch_dtype` is deprecated" in plain
    quiet = stderr("cli")
    assert "requires torchvision" not in quiet and "torch_dtype" not in quiet
