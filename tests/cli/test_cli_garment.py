"""``tryon run --garment`` and ``tryon submit --garment``: the CLI uploads the packshot and the job uses it.

Its own module: one local stack at a time (tests/workflow/test_workflow_garment.py holds one for its module).
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tryon.cli import EXIT_BAD_INPUT, run
from tryon.core.imaging import encode_png
from tryon.local.samples import sample_photo
from tryon.workflow import params

pytestmark = pytest.mark.slow

WIDTH, HEIGHT = 48, 64
PACKSHOT = Image.new("RGB", (30, 40), (200, 30, 60))


def test_tryon_run_uploads_the_garment_and_passes_it(tmp_path, capsys):
    """``tryon run --garment`` on the CLI's tiny models (their inpainting model has the tiny IP-Adapter)."""
    photo, packshot, out = tmp_path / "me.png", tmp_path / "packshot.png", tmp_path / "out"
    photo.write_bytes(sample_photo((WIDTH, HEIGHT), "PNG"))
    packshot.write_bytes(encode_png(PACKSHOT))
    assert run(["run", str(photo), "--garment", str(tmp_path / "nope.png")]) == EXIT_BAD_INPUT
    assert "--garment: " in capsys.readouterr().err
    code = run(
        ["run", str(photo), "--garment", str(packshot), "--preset", "upper-body",
         "--set", "negative_queries=", "--set", "threshold=0",
         "--no-upscale", "--no-progress", "--json", "--out", str(out)]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert captured.out, captured.err[-3000:]
    answer = json.loads(captured.out)
    assert code == 0 and answer["outcome"] == "succeeded", answer
    manifest = json.loads((out / "manifest.json").read_text())
    assert (
        manifest["garment"]["key"] == "garments/packshot.png" and manifest["garment"]["used"]["scale"] == 0.6
    )
    assert manifest["params"]["query"] == params.GARMENT_CLASSES["upper-body"]["query"]
    with Image.open(out / "preview.jpg") as preview:
        assert preview.size == (4 * WIDTH, HEIGHT)  # input | garment | mask | result, one width each
    assert packshot.read_bytes() == encode_png(PACKSHOT)


def test_tryon_submit_uploads_the_garment_under_the_stacks_garment_prefix(tiny_models, tmp_path, capsys):
    """``tryon submit --garment`` against a stack on moto (the local harness behind its Outputs)."""
    from tryon.local import LocalWorkflow
    from tryon.local.deployed import publish_stack
    from tryon.local.runner import TINY_PARAMETERS

    photo, packshot, out = tmp_path / "look.png", tmp_path / "packshot.png", tmp_path / "out"
    photo.write_bytes(sample_photo((WIDTH, HEIGHT), "PNG"))
    packshot.write_bytes(encode_png(PACKSHOT))
    dirs = {"clipseg": tiny_models["clipseg"], "sd_inpaint": tiny_models["sd-inpaint-ip"]}
    # threshold 0, nothing kept out: the tiny CLIPSeg's mask is never empty, so the job reaches Inpaint
    parameters = {**TINY_PARAMETERS, "DefaultThreshold": 0.0, "DefaultNegativeQueries": ""}
    with LocalWorkflow(dirs, parameters=parameters, upscale=False, deliver_events=True) as wf:
        publish_stack(wf, "tryon-garment")
        publish_stack(wf, "tryon-old", {"GarmentPrefix": None})  # deployed before garment images
        argv = ["submit", str(photo), "--stack", "tryon-old", "--garment", str(packshot)]
        argv += ["--region", wf.region]
        assert run(argv) == EXIT_BAD_INPUT
        assert "--garment: stack 'tryon-old' has no output GarmentPrefix" in capsys.readouterr().err
        assert wf.list_keys("", wf.input_bucket) == []  # refused before anything was uploaded

        argv[3] = "tryon-garment"
        code = run([*argv, "--json", "--out", str(out)])
        captured = capsys.readouterr()
        assert captured.out, captured.err[-3000:]
        answer = json.loads(captured.out)
        assert code == 0 and answer["outcome"] == "succeeded", answer
        s3 = wf.client("s3")
        put = s3.head_object(Bucket=wf.input_bucket, Key="garments/packshot.png")
        pinned = f"s3://{wf.input_bucket}/garments/packshot.png?versionId={put['VersionId']}"
        head = s3.head_object(Bucket=wf.input_bucket, Key="inputs/look.png")
        assert head["Metadata"] == {"garment-image": pinned}
        assert f"uploaded the garment {pinned}" in captured.err
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["garment"]["uri"] == pinned and manifest["garment"]["used"]["scale"] == 0.6
        assert wf.read_bytes(pinned.split("?")[0]) == encode_png(PACKSHOT)
    assert packshot.read_bytes() == encode_png(PACKSHOT)
