"""model.tar.gz packaging: layout, determinism, bad inputs, and a self-sufficient extracted archive."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
from pathlib import Path

import pytest

from tryon.aws.packaging import (
    ARCHIVE_MTIME,
    PackagingError,
    build_model_archive,
    plan_archive,
    vendored_files,
)
from tryon.cli import run
from tryon.core.errors import RequestError

WEIGHTS = {"clipseg": "clipseg", "sd_inpaint": "sd-inpaint", "sd_upscale": "sd-x4-upscaler"}
VENDORED = {
    "code/tryon/__init__.py",
    "code/tryon/core/__init__.py",
    "code/tryon/core/errors.py",
    "code/tryon/core/imaging.py",
    "code/tryon/core/validation.py",
    "code/tryon/handlers/__init__.py",
    "code/tryon/handlers/common.py",
    "code/tryon/handlers/clipseg.py",
    "code/tryon/handlers/sd_inpaint.py",
    "code/tryon/handlers/sd_upscale.py",
}


def members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return tar.getmembers()


def build_kind(kind: str, out: Path, tiny_models: dict[str, Path], **kwargs) -> Path:
    if kind == "sd_inpaint":
        kwargs.setdefault("adapter_dir", tiny_models["lora-a"])
        kwargs.setdefault("named_adapters", {"b": tiny_models["lora-b"]})
    kwargs.setdefault("model_dir", tiny_models[WEIGHTS[kind]])
    return build_model_archive(kind, out, **kwargs)


def test_vendored_code_is_the_handler_closure():
    names = {arcname for arcname, _ in vendored_files()}
    assert names >= VENDORED
    assert all(n.startswith("code/tryon/") and n.endswith(".py") for n in names)
    for excluded in ("cli", "server", "workflow", "training", "packaging", "deploy", "tiny_models"):
        assert not any(n.startswith(f"code/tryon/{excluded}") for n in names), excluded


@pytest.mark.parametrize("kind", ["clipseg", "sd_inpaint", "sd_upscale"])
def test_layout_and_determinism(kind, tiny_models, tmp_path):
    # Work on a copy of the weights so their mtimes can be changed between builds.
    weights = shutil.copytree(tiny_models[WEIGHTS[kind]], tmp_path / "weights")
    first = build_kind(kind, tmp_path / "a" / "model.tar.gz", tiny_models, model_dir=weights)
    for path in weights.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    second = build_kind(kind, tmp_path / "b" / "model.tar.gz", tiny_models, model_dir=weights)
    assert first.read_bytes() == second.read_bytes()

    infos = members(first)
    names = [m.name for m in infos]
    assert names == sorted(names)
    assert {"code/inference.py", *VENDORED} <= set(names)
    # the image has every library the handlers need: no start-up pip install (VPCs without internet)
    assert "code/requirements.txt" not in names
    # weights at the archive root, exactly as in the model folder
    weight_files = {p.relative_to(weights).as_posix() for p in weights.rglob("*") if p.is_file()}
    assert weight_files <= set(names)
    assert ("model_index.json" if kind != "clipseg" else "config.json") in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert all(m.mtime == ARCHIVE_MTIME and m.uid == 0 and m.gid == 0 and m.uname == "" for m in infos)
    with tarfile.open(first) as tar:
        inference = tar.extractfile("code/inference.py").read().decode()
    assert f"tryon.handlers.{kind}" in inference
    if kind == "sd_inpaint":
        assert "adapter/pytorch_lora_weights.safetensors" in names
        assert "adapters/b/pytorch_lora_weights.safetensors" in names
    else:
        assert not any(n.startswith("adapter") for n in names)


def test_without_weights_only_code(tmp_path):
    path = build_model_archive("clipseg", tmp_path / "code-only.tar.gz")
    names = [m.name for m in members(path)]
    assert names == [e.arcname for e in plan_archive("clipseg")]
    assert all(n == "code" or n.startswith("code/") for n in names)


def test_a_requirements_file_ships_only_when_the_kind_has_one(repo_root, tmp_path):
    models = shutil.copytree(repo_root / "models", tmp_path / "models")
    assert "code/requirements.txt" not in {e.arcname for e in plan_archive("clipseg", models_dir=models)}
    (models / "clipseg/code/requirements.txt").write_text("# extras the image lacks\n")
    path = build_model_archive("clipseg", tmp_path / "m.tar.gz", models_dir=models)
    with tarfile.open(path) as tar:
        assert tar.extractfile("code/requirements.txt").read() == b"# extras the image lacks\n"


def test_hidden_files_and_caches_skipped_symlinks_followed(tiny_models, tmp_path):
    weights = shutil.copytree(tiny_models["clipseg"], tmp_path / "weights")
    (weights / ".git").mkdir()
    (weights / ".git" / "HEAD").write_text("ref")
    (weights / ".cache" / "huggingface").mkdir(parents=True)
    (weights / ".cache" / "huggingface" / "lock").write_text("x")
    (weights / "__pycache__").mkdir()
    (weights / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    # Hugging Face cache snapshots hold symlinks to blobs: archive the bytes, not the link
    blob = tmp_path / "blob"
    (weights / "model.safetensors").rename(blob)
    (weights / "model.safetensors").symlink_to(blob)
    path = build_model_archive("clipseg", tmp_path / "m.tar.gz", model_dir=weights)
    infos = {m.name: m for m in members(path)}
    assert not any(n.startswith((".git", ".cache", "__pycache__")) for n in infos)
    assert infos["model.safetensors"].isfile()
    with tarfile.open(path) as tar:
        assert tar.extractfile("model.safetensors").read() == blob.read_bytes()


def test_bad_inputs(tiny_models, tmp_path):
    out = tmp_path / "m.tar.gz"
    with pytest.raises(
        PackagingError, match="kind: 'sdxl' is not a known kind; known: clipseg, sd_inpaint, sd_upscale"
    ):
        build_model_archive("sdxl", out)
    with pytest.raises(PackagingError, match=r"model_dir: .*missing is not a folder"):
        build_model_archive("clipseg", out, model_dir=tmp_path / "missing")
    with pytest.raises(
        PackagingError, match="adapter_dir: adapters are only served by the sd_inpaint endpoint, not clipseg"
    ):
        build_model_archive("clipseg", out, adapter_dir=tiny_models["lora-a"])
    with pytest.raises(
        PackagingError,
        match="named_adapters: adapters are only served by the sd_inpaint endpoint, not sd_upscale",
    ):
        build_model_archive("sd_upscale", out, named_adapters={"b": tiny_models["lora-b"]})
    with pytest.raises(PackagingError, match=r"named_adapters.x/y: 'x/y' is not a valid adapter name"):
        build_model_archive("sd_inpaint", out, named_adapters={"x/y": tiny_models["lora-b"]})
    with pytest.raises(PackagingError, match="not a valid adapter name"):
        build_model_archive("sd_inpaint", out, named_adapters={"default": tiny_models["lora-b"]})
    with pytest.raises(PackagingError, match=r"adapter_dir: .* must hold pytorch_lora_weights.safetensors"):
        build_model_archive("sd_inpaint", out, adapter_dir=tiny_models["clipseg"].parent)
    with pytest.raises(
        PackagingError, match=r"models_dir: .*clipseg/code/inference.py not found.*TRYON_MODELS_DIR"
    ):
        build_model_archive("clipseg", out, models_dir=tmp_path)
    with pytest.raises(PackagingError, match=r"out_path: .* is inside model_dir"):
        build_model_archive("clipseg", tiny_models["clipseg"] / "m.tar.gz", model_dir=tiny_models["clipseg"])
    weights = shutil.copytree(tiny_models["clipseg"], tmp_path / "weights")
    (weights / "code").mkdir()
    with pytest.raises(PackagingError, match=r"model_dir: .* has a code/ folder"):
        build_model_archive("clipseg", out, model_dir=weights)
    with pytest.raises(PackagingError, match=r"compresslevel: must be 0\.\.9, got 10"):
        build_model_archive("clipseg", out, compresslevel=10)
    assert not out.exists()
    assert issubclass(PackagingError, RequestError)  # the CLI reports it as one line, exit 2


def test_failed_build_leaves_no_partial_archive(tiny_models, tmp_path):
    out = tmp_path / "m.tar.gz"

    def explode(name, nbytes):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_model_archive("clipseg", out, model_dir=tiny_models["clipseg"], progress=explode)
    assert list(tmp_path.iterdir()) == []


def test_package_cli(tiny_models, tmp_path, capsys):
    out = tmp_path / "cli.tar.gz"
    assert run(["package", "clipseg", "--model-dir", str(tiny_models["clipseg"]), "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert f"wrote {out}" in stdout and "sha256 " in stdout
    assert (
        out.read_bytes()
        == build_model_archive(
            "clipseg", tmp_path / "api.tar.gz", model_dir=tiny_models["clipseg"]
        ).read_bytes()
    )

    code = run(
        ["package", "clipseg", "--adapter", str(tiny_models["lora-a"]), "--out", str(tmp_path / "x.tar.gz")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "error: adapter_dir: adapters are only served by the sd_inpaint endpoint" in err
    assert "Traceback" not in err
    assert (
        run(["package", "sd_inpaint", "--named-adapter", "nodir", "--out", str(tmp_path / "y.tar.gz")]) == 2
    )
    assert "expected NAME=DIR" in capsys.readouterr().err


PROBE = textwrap.dedent(
    """
    import importlib.util, json, sys
    from pathlib import Path

    sys.path.extend({site!r})
    import base64, io
    from PIL import Image

    def b64(img):
        buf = io.BytesIO(); img.save(buf, format="PNG"); return base64.b64encode(buf.getvalue()).decode()

    photo = Image.new("RGB", (48, 40), (200, 120, 80))
    mask = Image.new("L", (48, 40), 0); mask.paste(255, (10, 8, 30, 28))
    requests = {{
        "clipseg": {{"image": b64(photo), "queries": ["shirt", "skirt"]}},
        "sd_upscale": {{"image": b64(photo.resize((16, 12))), "prompt": "a shirt", "steps": 2, "seed": 3}},
        "sd_inpaint": {{"image": b64(photo), "mask": b64(mask), "prompt": "a shirt", "steps": 2, "seed": 3,
                        "adapter": "b", "adapter_scale": 0.5}},
    }}
    results = {{}}
    for kind, root in json.loads(sys.argv[1]).items():
        code = Path(root) / "code"
        for name in [m for m in sys.modules if m == "tryon" or m.startswith("tryon.")]:
            del sys.modules[name]
        sys.path.insert(0, str(code))
        spec = importlib.util.spec_from_file_location(f"inference_{{kind}}", code / "inference.py")
        inference = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(inference)
        import tryon
        assert Path(tryon.__file__).is_relative_to(code), tryon.__file__
        model = inference.model_fn(root)
        data = inference.input_fn(json.dumps(requests[kind]).encode(), "application/json")
        out = json.loads(inference.output_fn(inference.predict_fn(data, model), "application/json"))
        sys.path.remove(str(code))
        handler = sys.modules[f"tryon.handlers.{{kind}}"].__file__
        results[kind] = {{"tryon": tryon.__file__, "handler": handler, "out": out}}
    print("RESULTS " + json.dumps(results))
    """
)


@pytest.mark.slow
def test_extracted_archives_are_self_sufficient(tiny_models, tmp_path):
    """Each archive's code/ runs model_fn + predict with no access to the repository's src/."""
    roots = {}
    for kind in WEIGHTS:
        archive = build_kind(kind, tmp_path / f"{kind}.tar.gz", tiny_models)
        roots[kind] = tmp_path / kind
        with tarfile.open(archive) as tar:
            tar.extractall(roots[kind], filter="data")
    site = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    script = tmp_path / "probe.py"
    script.write_text(PROBE.format(site=site))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {
        "HF_HUB_OFFLINE": "1",
        "TRYON_DEVICE": "cpu",
    }
    # -I: no PYTHONPATH, no user site, no script dir; -S: no site-packages .pth files, so the
    # editable install of the repository's src/ is invisible (the probe adds plain site-packages).
    proc = subprocess.run(
        [sys.executable, "-I", "-S", str(script), json.dumps({k: str(v) for k, v in roots.items()})],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS "))
    results = json.loads(line.removeprefix("RESULTS "))
    for kind, root in roots.items():
        assert results[kind]["tryon"] == str(root / "code" / "tryon" / "__init__.py")
        assert results[kind]["handler"] == str(root / "code" / "tryon" / "handlers" / f"{kind}.py")

    from tryon.core import imaging

    clip = results["clipseg"]["out"]
    mask = imaging.decode_image(imaging.b64decode(clip["mask"], field="mask"), field="mask")
    assert mask.mode == "L" and mask.size == (48, 40)
    assert 0.0 <= clip["coverage"] <= 1.0 and set(clip["scores"]) == {"shirt", "skirt"}
    up = results["sd_upscale"]["out"]
    upscaled = imaging.decode_image(imaging.b64decode(up["image"], field="image"), field="image")
    assert upscaled.size == (64, 48) and up["seed"] == 3
    inpaint = results["sd_inpaint"]["out"]
    assert inpaint["adapter"] == {"name": "b", "scale": 0.5} and inpaint["seeds"] == [3]
    (image,) = inpaint["images"]
    assert imaging.decode_image(imaging.b64decode(image, field="image"), field="image").size == (48, 40)


def test_ip_adapter_ships_in_ip_adapter_folder(tiny_models, tmp_path, capsys):
    out = tmp_path / "ip.tar.gz"
    args = ["package", "sd_inpaint", "--model-dir", str(tiny_models["sd-inpaint"]), "--out", str(out)]
    assert run([*args, "--ip-adapter", str(tiny_models["ip-adapter"])]) == 0
    names = {m.name for m in members(out)}
    assert {"ip_adapter/ip-adapter.safetensors", "ip_adapter/image_encoder/config.json"} <= names
    assert "code/tryon/handlers/ip_adapter.py" in names
    # the archive is the one-folder tiny model with an IP-Adapter (sd-inpaint-ip)
    same = build_model_archive("sd_inpaint", tmp_path / "same.tar.gz", model_dir=tiny_models["sd-inpaint-ip"])
    assert {m.name for m in members(same)} == names
    capsys.readouterr()

    for kind, folder, message in [
        ("clipseg", tiny_models["ip-adapter"], "IP-Adapters are only served by the sd_inpaint endpoint"),
        ("sd_inpaint", tiny_models["lora-a"], "has no image_encoder/"),
        ("sd_inpaint", tmp_path / "missing", "is not a folder"),
    ]:
        with pytest.raises(PackagingError, match=f"^ip_adapter_dir: .*{message}"):
            build_model_archive(kind, tmp_path / "bad.tar.gz", ip_adapter_dir=folder)
    with pytest.raises(PackagingError, match=r"already has an ip_adapter/ folder"):
        build_model_archive(
            "sd_inpaint",
            tmp_path / "bad.tar.gz",
            model_dir=tiny_models["sd-inpaint-ip"],
            ip_adapter_dir=tiny_models["ip-adapter"],
        )
    assert (
        run([*args[:-2], "--out", str(tmp_path / "z.tar.gz"), "--ip-adapter", str(tiny_models["lora-b"])])
        == 2
    )
    err = capsys.readouterr().err
    assert "error: ip_adapter_dir:" in err and "Traceback" not in err


def test_sdxl_refiner_ships_without_the_parts_it_shares(tiny_models, tmp_path, capsys):
    from tryon.handlers import sd_inpaint

    downloaded = tmp_path / "refiner-download"  # as a hub download: with its own copies of the shared parts
    downloaded.mkdir()
    for item in tiny_models["sdxl-refiner"].iterdir():
        (downloaded / item.name).symlink_to(item)
    for shared in ("text_encoder_2", "tokenizer_2", "vae"):
        (downloaded / shared).symlink_to(tiny_models["sdxl-inpaint"] / shared)
    out = tmp_path / "sdxl.tar.gz"
    base = ["package", "sd_inpaint", "--model-dir", str(tiny_models["sdxl-inpaint"])]
    assert run([*base, "--out", str(out), "--refiner", str(downloaded)]) == 0
    names = {m.name for m in members(out)}
    assert {
        "refiner/model_index.json",
        "refiner/unet/config.json",
        "refiner/scheduler/scheduler_config.json",
    } <= names
    assert not [
        n for n in names if n.startswith(("refiner/text_encoder_2", "refiner/tokenizer_2", "refiner/vae"))
    ]
    assert "code/tryon/handlers/refiner.py" in names
    extracted = tmp_path / "extracted"
    with tarfile.open(out) as tar:
        tar.extractall(extracted, filter="data")
    model = sd_inpaint.model_fn(str(extracted))  # the shipped layout loads, sharing the base's parts
    assert model.refiner is not None and model.refiner.pipe.vae is model.pipe.vae
    capsys.readouterr()
    with_refiner = tmp_path / "with-refiner"
    with_refiner.mkdir()
    for item in [*tiny_models["sdxl-inpaint"].iterdir(), downloaded]:
        (with_refiner / ("refiner" if item == downloaded else item.name)).symlink_to(item)

    for kind, model_dir, folder, message in [
        ("clipseg", None, downloaded, "refiners are only served by the sd_inpaint endpoint"),
        ("sd_inpaint", None, downloaded, "needs --model-dir with an SDXL base"),
        ("sd_inpaint", tiny_models["sd-inpaint"], downloaded, "is not an SDXL base"),
        (
            "sd_inpaint",
            tiny_models["sdxl-inpaint"],
            tiny_models["lora-a"],
            "is not a complete SDXL refiner folder",
        ),
        ("sd_inpaint", with_refiner, downloaded, "already has a refiner/ folder"),
    ]:
        with pytest.raises(PackagingError, match=f"^refiner_dir: .*{message}"):
            plan_archive(kind, model_dir=model_dir, refiner_dir=folder)
    assert run([*base, "--out", str(tmp_path / "z.tar.gz"), "--refiner", str(tiny_models["lora-b"])]) == 2
    err = capsys.readouterr().err
    assert "error: refiner_dir:" in err and "Traceback" not in err


CONTROL_OPTIONS = {
    "--controlnet": ["depth=controlnet-depth", "pose=controlnet-pose"],
    "--depth": ["depth-estimator"],
    "--pose": ["pose-estimator"],
    "--person-detector": ["person-detector"],
}


def _control_args(tiny_models) -> list[str]:
    args = []
    for option, values in CONTROL_OPTIONS.items():
        for value in values:
            name, _, tiny = value.rpartition("=")
            args += [option, f"{name}={tiny_models[tiny]}" if name else str(tiny_models[tiny])]
    return args


def test_body_controls_ship_in_their_folders_and_load(tiny_models, tmp_path, capsys):
    from tryon.handlers import sd_inpaint

    out = tmp_path / "controls.tar.gz"
    base = ["package", "sd_inpaint", "--model-dir", str(tiny_models["sd-inpaint"])]
    args = [*base, "--ip-adapter", str(tiny_models["ip-adapter"]), *_control_args(tiny_models)]
    assert run([*args, "--out", str(out)]) == 0
    names = {m.name for m in members(out)}
    assert {
        "controlnet_depth/config.json",
        "controlnet_pose/diffusion_pytorch_model.safetensors",
        "depth_estimator/preprocessor_config.json",
        "pose_estimator/model.safetensors",
        "person_detector/config.json",
        "code/tryon/handlers/controls.py",
        "code/tryon/handlers/body_estimators.py",
        "code/tryon/handlers/control_images.py",
    } <= names
    # the archive is the one-folder model the CLI's tiny default is (sd-inpaint-controls)
    same = build_model_archive(
        "sd_inpaint", tmp_path / "same.tar.gz", model_dir=tiny_models["sd-inpaint-controls"]
    )
    assert {m.name for m in members(same)} == names
    extracted = tmp_path / "extracted"
    with tarfile.open(out) as tar:
        tar.extractall(extracted, filter="data")
    model = sd_inpaint.model_fn(str(extracted))
    assert (
        model.controls.available == ("depth", "pose")
        and model.controls.estimators["pose"].detector is not None
    )
    capsys.readouterr()


def test_body_control_mistakes_are_refused_before_packaging(tiny_models, tmp_path, capsys):
    controls_model = tiny_models["sd-inpaint-controls"]
    depth = {
        "controlnet_depth": tiny_models["controlnet-depth"],
        "depth_estimator": tiny_models["depth-estimator"],
    }
    for kind, model_dir, folders, field, message in [
        (
            "clipseg",
            tiny_models["clipseg"],
            depth,
            "controlnet_depth",
            "only served by the sd_inpaint endpoint",
        ),
        (
            "sd_inpaint",
            None,
            depth,
            "controlnet_depth",
            "needs --model-dir with an SD 1.5 or SDXL inpainting base",
        ),
        ("sd_inpaint", tiny_models["sd2-inpaint"], depth, "controlnet_depth", "is an SD 2 inpainting base"),
        (
            "sd_inpaint",
            tiny_models["sd-inpaint"],
            {**depth, "controlnet_depth": tiny_models["sdxl-controlnet-depth"]},
            "controlnet_depth",
            "is a ControlNet for another base .*cross-attention width 64 \\(the base: 32\\)",
        ),
        (
            "sd_inpaint",
            tiny_models["sd-inpaint"],
            {"controlnet_pose": tiny_models["controlnet-pose"]},
            "controlnet_pose",
            "needs both controlnet_pose/ and pose_estimator/",
        ),
        (
            "sd_inpaint",
            tiny_models["sd-inpaint"],
            {**depth, "person_detector": tiny_models["person-detector"]},
            "person_detector",
            "serves the pose control",
        ),
        (
            "sd_inpaint",
            tiny_models["sd-inpaint"],
            {**depth, "controlnet_depth": tiny_models["depth-estimator"]},
            "controlnet_depth",
            "is not a diffusers ControlNetModel folder",
        ),
        (
            "sd_inpaint",
            tiny_models["sd-inpaint"],
            {**depth, "depth_estimator": tiny_models["lora-a"]},
            "depth_estimator",
            "is not a model folder",
        ),
        ("sd_inpaint", controls_model, depth, "controlnet_depth", "already has a controlnet_depth/ folder"),
    ]:
        with pytest.raises(PackagingError, match=f"^{field}: .*{message}"):
            plan_archive(kind, model_dir=model_dir, control_dirs=folders)
    base = [
        "package",
        "sd_inpaint",
        "--model-dir",
        str(tiny_models["sd2-inpaint"]),
        "--out",
        str(tmp_path / "z.tgz"),
    ]
    assert run([*base, *_control_args(tiny_models)]) == 2
    err = capsys.readouterr().err
    assert "error: controlnet_depth:" in err and "SD 2" in err and "Traceback" not in err
    assert run([*base, "--controlnet", f"skeleton={tiny_models['controlnet-pose']}"]) == 2
    assert "--controlnet 'skeleton=" in capsys.readouterr().err
