"""Validation while fine-tuning: held-out photos rendered every N steps, scored, logged to TensorBoard,
the best adapter kept, the grid and the curve written beside the adapter."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw
from support.training import quick_config

from tryon.core.errors import RequestError
from tryon.training.loop import train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("garment")
    rng = np.random.default_rng(3)
    for i in range(7):
        img = Image.fromarray(rng.integers(0, 255, (80, 72, 3), dtype=np.uint8))
        ImageDraw.Draw(img).ellipse((12, 12, 60, 68), fill=(30 * i, 40, 160))
        img.save(folder / f"jacket{i}.png")
        mask = Image.new("L", img.size, 0)
        ImageDraw.Draw(mask).ellipse((12, 12, 60, 68), fill=255)
        mask.save(folder / f"jacket{i}.mask.png")
    return folder


def _scalars(logs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = [p.parent for p in logs.rglob("events.out.tfevents.*")]
    assert runs, f"no TensorBoard event file under {logs}"
    accumulator = EventAccumulator(str(runs[0]), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def test_validation_renders_held_out_photos_scores_logs_and_keeps_the_best(
    tiny_models, photos, tiny_metric_models, tmp_path, capsys
):
    out = tmp_path / "run"
    config = quick_config(
        tiny_models["sd-inpaint"], photos, out, mask_dir=str(photos), max_train_steps=4, validation_steps=2,
        validation_metric_models=str(tiny_metric_models), best_metric="dino",
    )  # fmt: skip
    result = train(config, progress=False)
    printed = capsys.readouterr().out
    # two photos held out of training (the default for 6 or more), rendered with their masks
    assert result.held_out == ["jacket5.png", "jacket6.png"]
    saved = json.loads(result.config_path.read_text())
    assert saved["instance_images"] == 5 and saved["held_out"] == ["jacket5.png", "jacket6.png"]
    history = json.loads((out / "validation.json").read_text())
    assert [r["step"] for r in history["rounds"]] == [2, 4]  # the last step's round is not repeated
    for record in history["rounds"]:
        assert set(record) >= {"clip_i", "dino", "clip_t"} and -1 <= record["dino"] <= 1
        assert record["seconds"] > record["score_seconds"] > 0  # what each round cost
    # the final grid is the last step's round: the same weights are not rendered twice
    assert result.validation_path.read_bytes() == (out / "validation" / "step-000004.png").read_bytes()
    best = max(history["rounds"], key=lambda r: r["dino"])
    assert history["best"]["step"] == best["step"] and history["best"]["metric"] == "dino"
    assert result.best_dir == out / "best"
    assert (out / "best" / "pytorch_lora_weights.safetensors").is_file()
    assert json.loads((out / "best" / "best.json").read_text())["value"] == pytest.approx(best["dino"])
    # the grid (one row per held-out photo) and the curve beside the adapter
    grid = Image.open(result.validation_path)
    assert grid.size == (64 * (3 + config.num_validation_images), 64 * 2)
    assert (out / "validation_curve.png").is_file() and (out / "adapter").is_dir()
    assert (out / "validation" / "step-000002.png").is_file()
    # metric lines for SageMaker's metric definitions
    assert "tryon-metrics step=2 validation_clip_i=" in printed and "validation_dino=" in printed
    # TensorBoard: the loss every step, the metrics and the images every round
    events = _scalars(out / "logs")
    tags = events.Tags()
    assert {"train/loss", "validation/clip_i", "validation/dino", "validation/clip_t"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]
    assert [e.step for e in events.Scalars("validation/dino")] == [2, 4]
    assert "validation" in tags["images"]


def test_without_metric_networks_validation_renders_grids_only(tiny_models, photos, tmp_path):
    config = quick_config(
        tiny_models["sd-inpaint"], photos, tmp_path / "run", max_train_steps=2, validation_steps=1,
        validation_holdout=1, report_to="none",
    )  # fmt: skip
    result = train(config, progress=False)
    assert result.held_out == ["jacket6.png"] and result.best_dir is None
    history = json.loads(result.validation_history.read_text())
    assert [r["step"] for r in history["rounds"]] == [1, 2] and "clip_i" not in history["rounds"][0]
    assert not (tmp_path / "run" / "logs").exists()


def test_by_default_validation_runs_when_photos_are_held_out_in_one_batched_call_per_round(
    tiny_models, photos, tmp_path, monkeypatch
):
    from tryon.training import config as config_module
    from tryon.training import loop

    monkeypatch.setattr(config_module, "DEFAULT_VALIDATION_STEPS", 2)  # the default interval, scaled down
    from diffusers import StableDiffusionInpaintPipeline

    calls, built = [], []
    real_call, real_pipeline = loop._ValidationRenderer.__call__, loop._ValidationRenderer.pipeline
    real_render = StableDiffusionInpaintPipeline.__call__

    def spy_pipeline(self):
        pipe = real_pipeline(self)
        if not any(seen is pipe for seen in built):
            built.append(pipe)
        return pipe

    monkeypatch.setattr(loop._ValidationRenderer, "pipeline", spy_pipeline)
    monkeypatch.setattr(
        StableDiffusionInpaintPipeline, "__call__", lambda p, **kw: calls.append(kw) or real_render(p, **kw)
    )
    rounds = []
    monkeypatch.setattr(
        loop._ValidationRenderer, "__call__", lambda s, path: rounds.append(path) or real_call(s, path)
    )
    defaults = {"validation_steps": None, "num_validation_images": None, "report_to": "none"}
    config = quick_config(tiny_models["sd-inpaint"], photos, tmp_path / "held", max_train_steps=4, **defaults)
    result = train(config, progress=False)
    history = json.loads(result.validation_history.read_text())
    assert [r["step"] for r in history["rounds"]] == [2, 4] and len(rounds) == 2
    # one pipeline, built once; each round one call rendering both held-out photos, one render each
    assert len(built) == 1 and len(calls) == 2
    assert [len(call["image"]) for call in calls] == [2, 2] and len(calls[0]["generator"]) == 2
    assert Image.open(result.validation_path).size == (64 * 4, 64 * 2)  # image | mask | masked | 1 render
    saved = json.loads(result.config_path.read_text())
    assert saved["validation_steps"] == 2 and saved["num_validation_images"] == 1

    # no photo held out: no rounds while training (as before held-out photos), the final grid of the
    # first training photo with 2 renders
    calls.clear(), rounds.clear()
    config = quick_config(
        tiny_models["sd-inpaint"],
        photos,
        tmp_path / "none",
        max_train_steps=4,
        validation_holdout=0,
        **defaults,
    )
    result = train(config, progress=False)
    assert len(rounds) == 1 and json.loads(result.config_path.read_text())["validation_steps"] == 0
    assert [len(call["image"]) for call in calls] == [2]
    assert Image.open(result.validation_path).size == (64 * 5, 64)
    assert not (tmp_path / "none" / "validation").exists()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"validation_holdout": 7}, "validation_holdout"),
        ({"best_metric": "fid"}, "best_metric"),
        ({"report_to": "wandb"}, "report_to"),
        ({"validation_steps": -1}, "validation_steps"),
        ({"num_validation_images": 0}, "num_validation_images"),
        ({"validation_metric_models": "/no/such/folder"}, "validation_metric_models"),
    ],
)
def test_validation_options_are_checked_before_training(tiny_models, photos, tmp_path, changes, field):
    config = quick_config(tiny_models["sd-inpaint"], photos, tmp_path / "run", **changes)
    with pytest.raises(RequestError) as raised:
        train(config, progress=False)
    assert raised.value.field == field
    assert not (tmp_path / "run" / "adapter").exists()


def test_sagemaker_entry_script_maps_the_metric_models_channel(repo_root, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_entry", repo_root / "training" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = module.sagemaker_arguments({"SM_CHANNEL_METRIC_MODELS": "/opt/ml/input/data/metric_models"})
    assert args == ["--validation-metric-models", "/opt/ml/input/data/metric_models"]
