"""tryon run and tryon submit share one set of job options, made from the schema's rows."""

from __future__ import annotations

from typing import Any

import pytest
import typer.main
from PIL import Image

from tryon.cli import EXIT_BAD_INPUT, app, jobs, run
from tryon.cli.job_options import PANEL, cli_rows
from tryon.core import schema


def _options(command: str) -> dict[str, Any]:
    assert jobs.run_ and jobs.submit  # importing tryon.cli.jobs registers the commands
    group = typer.main.get_command(app)
    params = group.commands[command].params  # type: ignore[attr-defined]
    return {p.name: p for p in params if getattr(p, "rich_help_panel", None) == PANEL}


def test_run_and_submit_have_one_option_per_job_parameter():
    run_options, submit_options = _options("run"), _options("submit")
    rows = cli_rows()
    assert list(run_options) == list(submit_options) == [row.name for row in rows]
    # --garment [CLASS=]FILE|adapter:NAME and --mask-mode [CLASS=]MODE[:ARG] set these
    by_garment_specs = {"garment_image", "mask_mode", "garment_class", "mask_box", "mask_image"}
    assert {row.name for row in schema.PARAMS} - set(run_options) == by_garment_specs
    for row in rows:
        for option in (run_options[row.name], submit_options[row.name]):
            assert option.help == row.help_text()
            assert option.default is None  # unset: the template's default applies
            spelled = row.cli_option.split("/")
            assert option.opts == [spelled[0]] and option.secondary_opts == spelled[1:]


def test_the_help_states_each_rows_limits():
    options = _options("run")
    assert options["steps"].help == "Diffusion steps (1..150)."
    assert options["guidance_scale"].help.endswith("(0..50).")  # the contract's limit, not a copy
    assert options["strength"].help.endswith("((0, 1]).")
    assert options["refiner_steps"].help.endswith("unset: the endpoint's 30 (1..150).")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--guidance-scale", "50.5"], "guidance_scale (from metadata): must be <= 50.0, got 50.5"),
        (["--noise-level", "351"], "noise_level (from metadata): must be <= 350, got 351"),
        (["--negative-queries", ",".join(["x"] * 17)], "negative_queries (from metadata): has 17 items"),
        (["--adapter", "../up"], "adapter (from metadata): '../up' is not a valid adapter name"),
        (["--mode", "sd_inpaint=serverless"], "sd_inpaint endpoints serve realtime or async, not serverless"),
    ],
)
def test_every_job_option_is_checked_before_models_load(args, message, tmp_path, capsys):
    photo = tmp_path / "p.png"
    Image.new("RGB", (64, 48), "white").save(photo)
    assert run(["run", str(photo), *args]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
