"""The fine-tuning loop on the tiny SD inpainting checkpoint: LoRA, full, resume, masks, the endpoint.

A few optimizer steps at 64 px on synthetic photos; the trained adapter is then loaded by
the inpainting endpoint handler (default adapter and by name) and must change its output.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from PIL import Image, ImageDraw
from support.training import quick_config

from tryon.core import imaging
from tryon.training.config import TrainingConfig
from tryon.training.loop import find_checkpoint, train

pytestmark = pytest.mark.slow
N_PHOTOS = 5


def _photos(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_PHOTOS):
        size = (72 + 8 * i, 96 - 4 * i)
        img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
        ImageDraw.Draw(img).ellipse((10, 10, size[0] - 10, size[1] - 10), fill=(180, 20, 40 * i))
        img.save(folder / f"skirt{i}.{'jpg' if i % 2 else 'png'}")
    (folder / "skirt0.txt").write_text("a photo of sks skirt, flat lay")
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return _photos(tmp_path_factory.mktemp("data") / "photos")


def _config(tiny_models, photos, out, **changes):
    return quick_config(tiny_models["sd-inpaint"], photos, out, **{"seed": 5, **changes})


@pytest.fixture(scope="module")
def lora_run(tiny_models, photos, tmp_path_factory):
    """4 LoRA steps with --mask-query (CLIPSeg handler spied on), checkpoints every 2 steps."""
    from tryon.handlers import clipseg

    calls = []
    real_predict = clipseg.predict_fn

    def spy(request, model):
        calls.append(list(request.queries))
        return real_predict(request, model)

    config = _config(
        tiny_models,
        photos,
        tmp_path_factory.mktemp("lora"),
        mask_query="a skirt",
        clipseg_model=str(tiny_models["clipseg"]),
        mask_threshold=0.5,
        garment_mask_ratio=0.5,
        checkpointing_steps=2,
        validation_steps=4,
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(clipseg, "predict_fn", spy)
        result = train(config, progress=False)
    return config, result, calls


def _tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def test_lora_training_writes_a_trained_adapter(lora_run):
    config, result, _ = lora_run
    assert result.global_step == 4 and len(result.losses) == 4
    assert all(math.isfinite(loss) and loss > 0 for loss in result.losses)
    weights = _tensors(result.adapter_dir / "pytorch_lora_weights.safetensors")
    assert weights and all(k.startswith("unet.") for k in weights)
    targets = {"to_q", "to_k", "to_v", "to_out.0"}
    assert {k.split(".lora")[0].rsplit(".", 1)[-1] for k in weights} <= targets | {"0"}
    # peft's "gaussian" init starts lora_B at zero: non-zero B weights were trained.
    ups = [v for k, v in weights.items() if "lora.up" in k or "lora_B" in k]
    assert ups and all(float(v.abs().max()) > 0 for v in ups)
    saved = json.loads(result.config_path.read_text())
    assert saved["global_step"] == 4 and saved["learning_rate"] == 5e-3 and saved["lora_alpha"] == 4.0
    assert saved["instance_images"] == N_PHOTOS
    grid = Image.open(result.validation_path)
    assert grid.size == (64 * 4, 64)  # image | mask | masked image | 1 result
    assert (result.output_dir / "validation" / "step-000004.png").is_file()
    checkpoints = sorted(p.name for p in config.effective_checkpoint_dir.iterdir())
    assert checkpoints == ["checkpoint-2", "checkpoint-4"]
    # checkpoints hold the LoRA layers, not a copy of the frozen base UNet
    assert (config.effective_checkpoint_dir / "checkpoint-2" / "pytorch_lora_weights.safetensors").is_file()


def test_mask_query_masks_come_from_the_clipseg_handler(lora_run, tiny_models, photos):
    from tryon.handlers import clipseg

    _, result, calls = lora_run
    assert calls == [["a skirt"]] * N_PHOTOS
    assert set(result.mask_sources.values()) <= {"clipseg", "clipseg (empty: random used)"}
    model = clipseg.model_fn(str(tiny_models["clipseg"]))
    for path in sorted(photos.glob("skirt*.*g")):
        body = json.dumps(
            {"image": imaging.b64encode(path.read_bytes()), "queries": ["a skirt"], "threshold": 0.5}
        )
        response = clipseg.predict_fn(clipseg.input_fn(body, "application/json"), model)
        expected = imaging.decode_image(imaging.b64decode(response["mask"], field="mask"))
        used = Image.open(result.output_dir / "masks" / f"{path.stem}.png")
        assert used.size == expected.size
        assert np.array_equal(np.asarray(used) >= 128, np.asarray(expected.convert("L")) >= 128)


def test_resume_continues_with_the_same_step_and_optimizer_state(lora_run, tiny_models, photos, tmp_path):
    import torch

    config, result, _ = lora_run
    resumed = train(
        _config(
            tiny_models,
            photos,
            tmp_path / "resumed",
            mask_query="a skirt",
            clipseg_model=str(tiny_models["clipseg"]),
            mask_threshold=0.5,
            garment_mask_ratio=0.5,
            checkpointing_steps=2,
            resume_from_checkpoint=str(config.effective_checkpoint_dir / "checkpoint-2"),
            skip_final_validation=True,
        ),
        progress=False,
    )
    assert resumed.resumed_from.name == "checkpoint-2"
    assert resumed.global_step == 4 and resumed.losses == pytest.approx(result.losses[2:], rel=1e-5)
    original = _tensors(result.adapter_dir / "pytorch_lora_weights.safetensors")
    again = _tensors(resumed.adapter_dir / "pytorch_lora_weights.safetensors")
    assert original.keys() == again.keys()
    for key in original:
        torch.testing.assert_close(again[key], original[key], rtol=1e-5, atol=1e-6)
    # Adam moments after step 4 match only if the step-2 optimizer state was restored.
    a = torch.load(config.effective_checkpoint_dir / "checkpoint-4" / "optimizer.bin", weights_only=False)
    b = torch.load(
        tmp_path / "resumed" / "checkpoints" / "checkpoint-4" / "optimizer.bin", weights_only=False
    )
    assert a["state"].keys() == b["state"].keys()
    for index, state in a["state"].items():
        assert float(state["step"]) == float(b["state"][index]["step"]) == 4.0
        torch.testing.assert_close(
            b["state"][index]["exp_avg_sq"], state["exp_avg_sq"], rtol=1e-4, atol=1e-10
        )
    # "latest" finds the newest checkpoint
    latest = TrainingConfig(**{**config.to_dict(), "resume_from_checkpoint": "latest"})
    assert find_checkpoint(latest).name == "checkpoint-4"


def _model_dir_with_adapters(tmp_path, base, adapter_dir):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for item in base.iterdir():
        os.symlink(item, model_dir / item.name)
    for target in (model_dir / "adapter", model_dir / "adapters" / "sks-skirt"):
        target.mkdir(parents=True)
        (target / "pytorch_lora_weights.safetensors").write_bytes(
            (adapter_dir / "pytorch_lora_weights.safetensors").read_bytes()
        )
    return model_dir


def test_trained_adapter_loads_in_the_inpainting_handler_and_changes_its_output(
    lora_run, tiny_models, tmp_path
):
    from tryon.handlers import sd_inpaint

    _, result, _ = lora_run
    model = sd_inpaint.model_fn(
        str(_model_dir_with_adapters(tmp_path, tiny_models["sd-inpaint"], result.adapter_dir))
    )
    photo = Image.new("RGB", (96, 80), (120, 90, 60))
    mask = Image.new("L", (96, 80), 0)
    mask.paste(255, (24, 16, 72, 64))
    base_request = {
        "image": imaging.b64encode(imaging.encode_png(photo)),
        "mask": imaging.b64encode(imaging.encode_png(mask)),
        "prompt": "a photo of sks skirt",
        "steps": 2,
        "seed": 7,
        "guidance_scale": 1.0,
    }

    def run(**extra):
        parsed = sd_inpaint.input_fn(json.dumps({**base_request, **extra}), "application/json")
        response = sd_inpaint.predict_fn(parsed, model)
        image = imaging.decode_image(imaging.b64decode(response["images"][0], field="image"))
        return response, np.asarray(image.convert("RGB"), dtype=np.int16)

    base_response, base = run(adapter="none")
    default_response, default = run()  # the model folder's adapter/ is the default
    named_response, named = run(adapter="sks-skirt")
    assert base_response["adapter"] is None
    assert default_response["adapter"] == {"name": "default", "scale": 1.0}
    assert named_response["adapter"] == {"name": "sks-skirt", "scale": 1.0}
    assert base.shape == default.shape == (80, 96, 3)
    assert np.abs(default - base).max() > 0, "the trained adapter did not change the output"
    assert np.array_equal(named, default)  # same weights, same seed
    assert np.array_equal(run(adapter="none")[1], base)  # fixed seed: reproducible


def test_full_finetune_changes_the_unet_only(tiny_models, photos, tmp_path):
    import torch
    from diffusers import UNet2DConditionModel

    result = train(
        _config(
            tiny_models,
            photos,
            tmp_path / "full",
            train_mode="full",
            max_train_steps=2,
            learning_rate=1e-3,
            skip_final_validation=True,
        ),
        progress=False,
    )
    assert result.adapter_dir is None and all(math.isfinite(x) for x in result.losses)
    assert not (tmp_path / "full" / "text_encoder").exists()
    base = UNet2DConditionModel.from_pretrained(tiny_models["sd-inpaint"] / "unet").state_dict()
    tuned = UNet2DConditionModel.from_pretrained(tmp_path / "full" / "unet").state_dict()
    assert base.keys() == tuned.keys()
    changed = [k for k in base if not torch.equal(base[k], tuned[k])]
    assert len(changed) > len(base) // 2


def test_adapter_uploaded_to_s3_is_loaded_by_uri(lora_run, tiny_models, tmp_path, monkeypatch):
    import boto3
    from moto import mock_aws

    from tryon.handlers import sd_inpaint
    from tryon.training.outputs import upload_adapter

    _, result, _ = lora_run
    monkeypatch.setenv("TRYON_ADAPTER_CACHE_DIR", str(tmp_path / "adapter-cache"))
    photo = Image.new("RGB", (64, 64), (90, 120, 60))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    request = {
        "image": imaging.b64encode(imaging.encode_png(photo)),
        "mask": imaging.b64encode(imaging.encode_png(mask)),
        "prompt": "a photo of sks skirt",
        "steps": 2,
        "seed": 3,
        "guidance_scale": 1.0,
    }
    model = sd_inpaint.model_fn(str(tiny_models["sd-inpaint"]))
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="adapters")
        uri = upload_adapter(result.adapter_dir, "s3://adapters/garments/sks-skirt")
        outputs = {}
        for spec in (None, uri):
            payload = {**request, **({"adapter": spec} if spec else {})}
            response = sd_inpaint.predict_fn(
                sd_inpaint.input_fn(json.dumps(payload), "application/json"), model
            )
            outputs[spec] = response["images"][0]
    assert uri == "s3://adapters/garments/sks-skirt/"
    assert response["adapter"] == {"name": uri, "scale": 1.0}
    assert outputs[uri] != outputs[None]


def test_text_encoder_lora_and_prior_preservation(tiny_models, photos, tmp_path):
    classes = tmp_path / "classes"
    classes.mkdir()
    Image.new("RGB", (80, 80), (10, 200, 10)).save(classes / "mine.png")
    result = train(
        _config(
            tiny_models,
            photos,
            tmp_path / "prior",
            max_train_steps=1,
            train_text_encoder=True,
            with_prior_preservation=True,
            class_prompt="a photo of a skirt",
            class_data_dir=str(classes),
            num_class_images=2,
            class_generation_steps=2,
            skip_final_validation=True,
        ),
        progress=False,
    )
    generated = sorted((tmp_path / "prior" / "class_images").glob("*.png"))
    assert [p.name for p in generated] == ["class-00000.png"]  # 1 supplied + 1 generated
    assert [p.name for p in classes.iterdir()] == ["mine.png"]  # the supplied folder is not written
    assert Image.open(generated[0]).size == (64, 64)
    assert math.isfinite(result.losses[0])
    keys = _tensors(result.adapter_dir / "pytorch_lora_weights.safetensors").keys()
    assert any(k.startswith("text_encoder.") for k in keys) and any(k.startswith("unet.") for k in keys)


@pytest.mark.parametrize("installed", [False, True])
def test_8bit_adam_uses_bitsandbytes_or_falls_back_with_a_notice(installed, monkeypatch, capsys):
    """Both branches run whether or not bitsandbytes is installed here (it is faked or hidden)."""
    import sys
    import types

    import torch

    from tryon.training.loop import _make_optimizer

    class AdamW8bit(torch.optim.AdamW):
        """Stands in for bitsandbytes' optimizer (same constructor)."""

    if installed:
        fake = types.ModuleType("bitsandbytes")
        fake.optim = types.SimpleNamespace(AdamW8bit=AdamW8bit)  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "bitsandbytes", fake)
    else:
        monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import bitsandbytes -> ImportError
    config = TrainingConfig(
        pretrained_model="b", instance_data_dir="d", instance_prompt="p", use_8bit_adam=True
    )
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = _make_optimizer(config, [{"params": [param], "lr": 1e-4}])
    notice = "needs bitsandbytes" in capsys.readouterr().out
    assert (type(optimizer), notice) == ((AdamW8bit, False) if installed else (torch.optim.AdamW, True))
    group = optimizer.param_groups[0]
    assert group["lr"] == 1e-4 and group["betas"] == (config.adam_beta1, config.adam_beta2)
    assert (group["eps"], group["weight_decay"]) == (config.adam_epsilon, config.adam_weight_decay)


def test_sagemaker_entry_script_trains_from_the_channel_environment(
    tiny_models, photos, tmp_path, repo_root, monkeypatch, capsys
):
    import importlib.util

    spec = importlib.util.spec_from_file_location("sm_entry", repo_root / "training" / "train.py")
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    monkeypatch.setenv("SM_CHANNEL_INSTANCE", str(photos))
    monkeypatch.setenv("SM_CHANNEL_BASE_MODEL", str(tiny_models["sd-inpaint"]))
    monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path / "model"))
    # hyperparameters arrive as --key value strings
    argv = ["--instance_prompt", "a photo of sks skirt", "--resolution", "64", "--max_train_steps", "1"]
    assert entry.main([*argv, "--skip_final_validation", "true"]) == 0
    assert (tmp_path / "model" / "adapter" / "pytorch_lora_weights.safetensors").is_file()
    saved = json.loads((tmp_path / "model" / "training_config.json").read_text())
    assert saved["instance_data_dir"] == str(photos) and saved["max_train_steps"] == 1
    assert "adapter:" in capsys.readouterr().out


def test_cli_local_trains_and_says_how_to_ship(tiny_models, photos, tmp_path, capsys):
    from tryon.cli import run

    code = run(
        [
            "train",
            "local",
            "--pretrained-model",
            str(tiny_models["sd-inpaint"]),
            "--instance-data-dir",
            str(photos),
            "--instance-prompt",
            "a photo of sks skirt",
            "--output-dir",
            str(tmp_path / "out"),
            "--resolution",
            "64",
            "--max-train-steps",
            "1",
            "--train-mode",
            "lora",
            "--lora-rank",
            "2",
            "--lora-targets",
            "to_q,to_v",
            "--validation-inference-steps",
            "1",
            "--num-validation-images",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"adapter:    {tmp_path / 'out' / 'adapter'}" in out and "tryon train package-adapter" in out
    keys = _tensors(tmp_path / "out" / "adapter" / "pytorch_lora_weights.safetensors").keys()
    assert keys and all(".to_q." in k or ".to_v." in k for k in keys)
    assert (tmp_path / "out" / "validation.png").is_file()
