"""SDXL through the same fine-tuning loop: LoRA (UNet and both text encoders), resume, the endpoint.

A few optimizer steps at 64 px on the tiny SDXL inpainting checkpoint; the adapter is then
served by the inpainting handler (and loaded by the serving image's diffusers) and must
change the output.
"""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest
from PIL import Image, ImageDraw
from support.training import quick_config

from tryon.core import imaging
from tryon.training.loop import train

pytestmark = pytest.mark.slow
PROMPT = "a photo of sks skirt"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Five photos of different sizes; one has a garment mask file."""
    root = tmp_path_factory.mktemp("sdxl-data")
    photos, masks = root / "photos", root / "masks"
    photos.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(1)
    for i in range(5):
        size = (72 + 8 * i, 96 - 4 * i)
        img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
        ImageDraw.Draw(img).ellipse((8, 8, size[0] - 8, size[1] - 8), fill=(20, 40 * i, 180))
        img.save(photos / f"skirt{i}.png")
    mask = Image.new("L", (72, 96), 0)
    ImageDraw.Draw(mask).rectangle((16, 30, 56, 90), fill=255)
    mask.save(masks / "skirt0.png")
    return photos, masks


def _config(tiny_models, data, out, **changes):
    photos, masks = data
    values = {
        "mask_dir": str(masks),
        "instance_prompt": PROMPT,
        "train_text_encoder": True,
        "lora_alpha": 8.0,  # scale 2: folded into the saved adapter, divided out again on resume
        "checkpointing_steps": 2,
        "seed": 3,
    }
    return quick_config(tiny_models["sdxl-inpaint"], photos, out, **{**values, **changes})


@pytest.fixture(scope="module")
def sdxl_run(tiny_models, data, tmp_path_factory):
    config = _config(tiny_models, data, tmp_path_factory.mktemp("sdxl-lora"))
    return config, train(config, progress=False)


def _tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def test_sdxl_lora_trains_the_unet_and_both_text_encoders(sdxl_run):
    _, result = sdxl_run
    assert result.global_step == 4 and all(math.isfinite(x) and x > 0 for x in result.losses)
    weights = _tensors(result.adapter_dir / "pytorch_lora_weights.safetensors")
    assert {k.split(".")[0] for k in weights} == {"unet", "text_encoder", "text_encoder_2"}
    ups = [v for k, v in weights.items() if k.startswith("unet.") and ("lora.up" in k or "lora_B" in k)]
    assert ups and all(float(v.abs().max()) > 0 for v in ups)  # B starts at zero: these were trained
    saved = json.loads(result.config_path.read_text())
    assert saved["base_family"] == "sdxl" and saved["global_step"] == 4
    assert result.mask_sources["skirt0.png"] == "file"
    assert Image.open(result.validation_path).size == (64 * 4, 64)  # image | mask | masked | result


def test_sdxl_size_and_crop_ids_follow_each_photo():
    from tryon.training import data as data_mod
    from tryon.training.families import time_ids

    photo = Image.fromarray(np.arange(96 * 72 * 3, dtype=np.uint8).reshape(96, 72, 3))
    top, left = data_mod.square_crop_origin(photo.size, 64)
    # the crop fit_square takes is the one the ids describe
    resized = photo.resize((64, round(96 * 64 / 72)), Image.Resampling.BICUBIC)
    expected = resized.crop((left, top, left + 64, top + 64))
    assert np.array_equal(np.asarray(data_mod.fit_square(photo, 64)), np.asarray(expected))
    assert time_ids((photo.height, photo.width), (top, left), 64) == [96, 72, top, 0, 64, 64]
    assert top == (85 - 64) // 2
    assert data_mod.square_crop_origin(photo.size, 64, center_crop=False) == (0, 0)


def test_sdxl_resume_continues_exactly(sdxl_run, tiny_models, data, tmp_path):
    import torch

    config, result = sdxl_run
    resumed = train(
        _config(
            tiny_models,
            data,
            tmp_path / "resumed",
            resume_from_checkpoint=str(config.effective_checkpoint_dir / "checkpoint-2"),
            skip_final_validation=True,
        ),
        progress=False,
    )
    assert resumed.global_step == 4 and resumed.losses == pytest.approx(result.losses[2:], rel=1e-5)
    original = _tensors(result.adapter_dir / "pytorch_lora_weights.safetensors")
    again = _tensors(resumed.adapter_dir / "pytorch_lora_weights.safetensors")
    assert original.keys() == again.keys()
    for key in original:
        torch.testing.assert_close(again[key], original[key], rtol=1e-5, atol=1e-6)


def test_sdxl_adapter_changes_the_inpainting_endpoints_output(sdxl_run, tiny_models, tmp_path):
    from tryon.handlers import sd_inpaint

    _, result = sdxl_run
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for item in tiny_models["sdxl-inpaint"].iterdir():
        (model_dir / item.name).symlink_to(item)
    (model_dir / "adapters").mkdir()
    (model_dir / "adapters" / "sks-skirt").symlink_to(result.adapter_dir)
    model = sd_inpaint.model_fn(str(model_dir))
    photo = Image.new("RGB", (96, 80), (120, 90, 60))
    mask = Image.new("L", photo.size, 0)
    mask.paste(255, (24, 16, 72, 64))
    request = {
        "image": imaging.b64encode(imaging.encode_png(photo)),
        "mask": imaging.b64encode(imaging.encode_png(mask)),
        "prompt": PROMPT,
        "steps": 1,
        "seed": 7,
        "guidance_scale": 1.0,
    }

    def run(adapter):
        response = sd_inpaint.predict_fn({**request, "adapter": adapter}, model)
        image = imaging.decode_image(imaging.b64decode(response["images"][0], field="image"))
        return response, np.asarray(image.convert("RGB"), dtype=np.int16)

    base_response, base = run("none")
    tuned_response, tuned = run("sks-skirt")
    assert base_response["adapter"] is None and tuned_response["adapter"] == {
        "name": "sks-skirt",
        "scale": 1.0,
    }
    assert np.abs(tuned - base).max() > 0, "the trained SDXL adapter did not change the output"
    assert np.array_equal(run("none")[1], base)


#: Runs under both interpreters: the UNet output and prompt embeddings with the adapter loaded.
_LOAD_SCRIPT = """
import json, sys, torch
from diffusers import StableDiffusionXLInpaintPipeline
base, adapter = sys.argv[1:3]
pipe = StableDiffusionXLInpaintPipeline.from_pretrained(base)
def answer():
    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt("a photo of sks skirt", do_classifier_free_guidance=False)
        sample = torch.randn(1, 9, 8, 8, generator=torch.Generator().manual_seed(0))
        ids = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]])
        out = pipe.unet(sample, 10, embeds, added_cond_kwargs={"text_embeds": pooled, "time_ids": ids}).sample
    return {k: v.flatten().tolist() for k, v in (("unet", out), ("embeds", embeds), ("pooled", pooled))}
before = answer()
pipe.load_lora_weights(adapter, weight_name="pytorch_lora_weights.safetensors", adapter_name="trained")
print(json.dumps({"before": before, "after": answer()}))
"""


def test_sdxl_adapter_loads_alike_on_the_serving_image_libraries(sdxl_run, tiny_models, repo_root):
    serving = repo_root / ".venv-serving" / "bin" / "python"
    if not serving.exists():
        pytest.skip(f"{serving} is missing: build it with `make serving-venv`")
    _, result = sdxl_run
    answers = {}
    for name, python in (("ours", repo_root / ".venv" / "bin" / "python"), ("serving", serving)):
        done = subprocess.run(
            [str(python), "-c", _LOAD_SCRIPT, str(tiny_models["sdxl-inpaint"]), str(result.adapter_dir)],
            capture_output=True,
            text=True,
            timeout=300,
            env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        )
        assert done.returncode == 0, done.stderr[-3000:]
        answers[name] = json.loads(done.stdout.strip().splitlines()[-1])
    for part in ("unet", "embeds", "pooled"):
        ours, theirs = (np.asarray(answers[n]["after"][part]) for n in ("ours", "serving"))
        assert not np.allclose(ours, np.asarray(answers["ours"]["before"][part])), part
        np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-5, err_msg=part)


def test_sagemaker_entry_script_trains_sdxl(tiny_models, data, tmp_path, repo_root, monkeypatch, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("sm_entry_sdxl", repo_root / "training" / "train.py")
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    photos, masks = data
    monkeypatch.setenv("SM_CHANNEL_INSTANCE", str(photos))
    monkeypatch.setenv("SM_CHANNEL_MASKS", str(masks))
    monkeypatch.setenv("SM_CHANNEL_BASE_MODEL", str(tiny_models["sdxl-inpaint"]))
    monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path / "model"))
    argv = ["--instance_prompt", PROMPT, "--resolution", "64", "--max_train_steps", "1"]
    assert entry.main([*argv, "--skip_final_validation", "true"]) == 0
    weights = _tensors(tmp_path / "model" / "adapter" / "pytorch_lora_weights.safetensors")
    assert weights and all(k.startswith("unet.") for k in weights)
    saved = json.loads((tmp_path / "model" / "training_config.json").read_text())
    assert saved["base_family"] == "sdxl" and saved["mask_dir"] == str(masks)
    assert "adapter:" in capsys.readouterr().out


def test_a_refiner_is_not_a_base_to_fine_tune(tiny_models, data, tmp_path):
    from tryon.core.errors import RequestError

    base = tmp_path / "refiner-as-base"
    base.mkdir()
    for item in tiny_models["sdxl-inpaint"].iterdir():
        if item.name != "unet":
            (base / item.name).symlink_to(item)
    (base / "unet").symlink_to(tiny_models["sdxl-refiner"] / "unet")
    with pytest.raises(RequestError, match=r"^pretrained_model: .*in_channels 4, need 9"):
        train(_config(tiny_models, data, tmp_path / "out", pretrained_model=str(base)), progress=False)


def test_cli_trains_sdxl_with_generated_class_images_and_a_one_step_validation(
    tiny_models, data, tmp_path, capsys
):
    """SDXL inpainting defaults to strength 0.9999: one validation or class-image step must still run."""
    from tryon.cli import run

    photos, _ = data
    options = {
        "--pretrained-model": str(tiny_models["sdxl-inpaint"]),
        "--instance-data-dir": str(photos),
        "--instance-prompt": PROMPT,
        "--output-dir": str(tmp_path / "out"),
        "--resolution": "64",
        "--max-train-steps": "1",
        "--validation-inference-steps": "1",
        "--num-validation-images": "1",
        "--with-prior-preservation": "true",
        "--class-prompt": "a photo of a skirt",
        "--num-class-images": "1",
        "--class-generation-steps": "1",
    }
    code = run(["train", "local", *[part for item in options.items() for part in item]])
    out = capsys.readouterr().out
    assert code == 0, out
    assert Image.open(tmp_path / "out" / "class_images" / "class-00000.png").size == (64, 64)
    assert Image.open(tmp_path / "out" / "validation.png").size == (64 * 4, 64)


def test_sdxl_full_finetune_writes_the_unet_and_both_text_encoders(tiny_models, data, tmp_path):
    import torch
    from transformers import CLIPTextModelWithProjection

    result = train(
        _config(
            tiny_models,
            data,
            tmp_path / "full",
            train_mode="full",
            max_train_steps=1,
            learning_rate=1e-3,
            checkpointing_steps=0,
            skip_final_validation=True,
        ),
        progress=False,
    )
    assert result.adapter_dir is None and {"unet", "text_encoder", "text_encoder_2"} <= {
        p.name for p in (tmp_path / "full").iterdir()
    }
    base = CLIPTextModelWithProjection.from_pretrained(tiny_models["sdxl-inpaint"] / "text_encoder_2")
    tuned = CLIPTextModelWithProjection.from_pretrained(tmp_path / "full" / "text_encoder_2")
    changed = [k for k, v in base.state_dict().items() if not torch.equal(v, tuned.state_dict()[k])]
    assert changed and "text_projection.weight" in changed
