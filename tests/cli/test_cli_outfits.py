"""``tryon run`` / ``tryon submit`` with --garment [CLASS=]... and --mask-mode [CLASS=]...: an outfit from the
command line, files uploaded first, refusals before any model loads or anything uploads. Its own module: one
local stack at a time."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from support.outfits import ADAPTERS, HEIGHT, PACKSHOT, PHOTO, WIDTH, png

from tryon.cli import EXIT_BAD_INPUT, run
from tryon.local.samples import assemble_inpaint_model

pytestmark = pytest.mark.slow


@pytest.fixture
def files(tmp_path):
    photo, packshot, painted = tmp_path / "me.png", tmp_path / "top.png", tmp_path / "feet.png"
    photo.write_bytes(PHOTO)
    packshot.write_bytes(PACKSHOT)
    feet = Image.new("L", (WIDTH // 2, HEIGHT // 2), 0)  # half the photo's size: resized to it
    feet.paste(255, (0, 28, WIDTH // 2, HEIGHT // 2))
    painted.write_bytes(png(feet))
    return photo, packshot, painted


def _json(capsys) -> dict:
    captured = capsys.readouterr()
    assert captured.out, captured.err[-3000:]
    return json.loads(captured.out)


def test_tryon_run_dresses_an_outfit_from_the_command_line(tiny_models, tmp_path, files, capsys):
    photo, packshot, painted = files
    adapters = {name: tiny_models[folder] for name, folder in ADAPTERS.items()}
    inpaint = assemble_inpaint_model(tiny_models["sd-inpaint-ip"], adapters, tmp_path / "inpaint")
    out = tmp_path / "out"
    code = run(
        ["run", str(photo), "--models", f"sd_inpaint={inpaint}",
         "--garment", f"upper={packshot}", "--garment", "lower=adapter:garment-a",
         "--mask-mode", "lower=box:0,0.5,1,0.875", "--mask-mode", "upper=box:0,0,1,0.5",
         "--mask-mode", f"shoes=image:{painted}", "--set", "upper.prompt=a silk blouse",
         "--set", "negative_queries=", "--no-upscale", "--no-progress", "--json", "--out", str(out)]
    )  # fmt: skip
    answer = _json(capsys)
    assert code == 0 and answer["outcome"] == "succeeded", answer
    manifest = json.loads((out / "manifest.json").read_text())
    lower, upper, shoes = manifest["garments"]
    assert [g["garment_class"] for g in manifest["garments"]] == ["lower-body", "upper-body", "footwear"]
    assert lower["adapter"] == {"name": "garment-a", "scale": 1.0} and lower["mask"]["box"] == [0, 32, 48, 56]
    assert upper["packshot"]["key"] == "garments/top.png" and upper["params"]["prompt"] == "a silk blouse"
    assert shoes["mask"]["painted"].startswith(
        f"s3://{manifest['input']['bucket']}/masks/feet.png?versionId="
    )
    for name in (
        "mask.png",
        "mask-lower-body.png",
        "mask-upper-body.png",
        "mask-footwear.png",
        "preview.jpg",
    ):
        assert (out / name).is_file(), name
    assert packshot.read_bytes() == PACKSHOT  # inputs are never modified


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--garment", "hat=top.png"], "unknown garment class 'hat'"),
        (["--mask-mode", "upper=lasso"], "unknown mask mode 'lasso'"),
        (["--mask-mode", "lower=box:0,0,1"], "four numbers"),
        (["--mask-mode", "lower=image"], "image needs a mask file"),
        (["--garment", "NOPE.png"], "--garment: "),
        (["--mask-mode", "upper=image:NOPE.png"], "--mask-mode: "),
        ([f"--garment={c}=adapter:a" for c in ("upper", "lower", "shoes", "dress")],
         "has 4 garments; the limit is 3"),
        (["--mask-mode", "box:0,0,1,1", "--garment", "upper=adapter:a"], "mixes a lone garment"),
        (["--mask-mode", "upper=image:s3://b/masks/m.png", "--mask-mode", "lower=box:0,0,1,1",
          "--set", "upper.steps=500"], "upper-body.steps (from metadata): must be <= 150"),
        (["--set", "upper.mask_mode=box"], "upper-body.mask_box: is required with mask_mode box"),
    ],
)  # fmt: skip
def test_bad_outfits_are_refused_before_any_model_loads(files, capsys, argv, message):
    photo, _, _ = files
    argv = [a.replace("NOPE.png", str(photo.parent / "nope.png")) for a in argv]
    assert run(["run", str(photo), *argv, "--no-progress"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert message in err and "models:" not in err, err


def test_tryon_submit_uploads_packshots_and_masks_under_the_stacks_prefixes(
    tiny_models, tmp_path, files, capsys
):
    from tryon.local import LocalWorkflow
    from tryon.local.deployed import publish_stack
    from tryon.local.runner import TINY_PARAMETERS

    photo, packshot, painted = files
    dirs = {"clipseg": tiny_models["clipseg"], "sd_inpaint": tiny_models["sd-inpaint-ip"]}
    parameters = {**TINY_PARAMETERS, "DefaultThreshold": 0.0, "DefaultNegativeQueries": ""}
    with LocalWorkflow(dirs, parameters=parameters, upscale=False, deliver_events=True) as wf:
        publish_stack(wf, "tryon-outfits")
        publish_stack(wf, "tryon-old", {"MaskPrefix": None})  # deployed before painted masks
        argv = ["submit", str(photo), "--stack", "tryon-old", "--region", wf.region,
                "--garment", f"upper={packshot}", "--mask-mode", f"upper=image:{painted}"]  # fmt: skip
        assert run(argv) == EXIT_BAD_INPUT
        assert "--mask-mode: stack 'tryon-old' has no output MaskPrefix" in capsys.readouterr().err

        argv[3] = "tryon-outfits"
        code = run([*argv, "--json", "--out", str(tmp_path / "out")])
        answer = _json(capsys)
        assert code == 0 and answer["outcome"] == "succeeded", answer
        s3 = wf.client("s3")
        head = s3.head_object(Bucket=wf.input_bucket, Key="inputs/me.png")
        mask = s3.head_object(Bucket=wf.input_bucket, Key="masks/feet.png")
        pinned = f"s3://{wf.input_bucket}/masks/feet.png?versionId={mask['VersionId']}"
        assert head["Metadata"]["upper-body.mask-image"] == pinned
        assert head["Metadata"]["upper-body.garment-image"].startswith(
            f"s3://{wf.input_bucket}/garments/top.png"
        )
        manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
        [upper] = manifest["garments"]
        assert upper["mask_mode"] == "image" and upper["mask"]["painted"] == pinned
