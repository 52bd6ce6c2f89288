"""Fine-tuning inputs: options, data folders, captions, mask files and mask sampling (no torch)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from PIL import Image

from tryon.core.errors import RequestError
from tryon.training import data, masks
from tryon.training.config import TrainingConfig, config_from_args

REQUIRED = {
    "pretrained_model": "base",
    "instance_data_dir": "photos",
    "instance_prompt": "a photo of sks skirt",
}


def _photo(path, size=(48, 40), color=(200, 30, 30), fmt=None, **save_kwargs):
    img = Image.new("RGB", size, (240, 240, 240))
    img.paste(color, (size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4))
    img.save(path, format=fmt, **save_kwargs)
    return path


def _folder(tmp_path, count=5):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(count):
        _photo(folder / f"p{i}.png", size=(40 + 4 * i, 48))
    return folder


# ---------------------------------------------------------------------- config
def test_config_json_round_trip_and_effective_values(tmp_path):
    config = TrainingConfig(**REQUIRED, lora_targets=["to_q", "to_v"], max_train_steps=7).validate()
    path = tmp_path / "c.json"
    config.to_json(path)
    assert TrainingConfig.from_json(path) == config
    effective = config.effective_dict()
    assert effective["learning_rate"] == 1e-4 and effective["lora_alpha"] == 4.0
    assert TrainingConfig(**REQUIRED, train_mode="full").effective_learning_rate == 5e-6


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"resolution": 65}, "resolution", "multiple of 8"),
        ({"train_mode": "dora"}, "train_mode", "lora, full"),
        ({"mask_query": "a skirt"}, "clipseg_model", "required with mask_query"),
        ({"with_prior_preservation": True}, "class_prompt", "required"),
        ({"garment_mask_ratio": 1.5}, "garment_mask_ratio", "[0, 1]"),
        ({"lora_rank": 0}, "lora_rank", ">= 1"),
        ({"mixed_precision": "fp8"}, "mixed_precision", "must be one of"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(changes, field, words):
    with pytest.raises(RequestError) as info:
        TrainingConfig(**REQUIRED, **changes).validate()
    assert info.value.field == field and words in str(info.value)


def test_config_unknown_and_missing_keys():
    with pytest.raises(RequestError, match="learning_rat: is not a training option"):
        TrainingConfig.from_dict({**REQUIRED, "learning_rat": 1})
    with pytest.raises(RequestError, match="instance_prompt: is required"):
        TrainingConfig.from_dict({"pretrained_model": "b", "instance_data_dir": "d"})


def test_arguments_in_cli_and_sagemaker_styles(tmp_path):
    saved = tmp_path / "c.json"
    saved.write_text(json.dumps({**REQUIRED, "max_train_steps": 5, "seed": 3}))
    config = config_from_args(
        [
            "--config",
            str(saved),
            "--max_train_steps",
            "800",  # SageMaker passes hyperparameters as --key value strings
            "--train_text_encoder",
            "true",
            "--lora-targets",
            '["to_q", "to_k"]',
            "--gradient-checkpointing",
            "--learning-rate",
            "2e-4",
            "--lora-alpha",
            "none",
        ]
    )
    assert config.max_train_steps == 800 and config.seed == 3
    assert config.train_text_encoder is True and config.gradient_checkpointing is True
    assert (
        config.lora_targets == ["to_q", "to_k"] and config.learning_rate == 2e-4 and config.lora_alpha is None
    )
    with pytest.raises(SystemExit):
        config_from_args([f"--{k}={v}" for k, v in REQUIRED.items()] + ["--use-8bit-adam", "maybe"])


# ---------------------------------------------------------------------- data folders
def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(RequestError, match=r"instance_data_dir: no usable images in .*the folder is empty"):
        data.load_instance_images(tmp_path)
    with pytest.raises(RequestError, match="is not a folder"):
        data.load_instance_images(tmp_path / "missing")


def test_unusable_files_are_skipped_and_listed(tmp_path):
    folder = _folder(tmp_path)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.md").write_text("hello")
    _photo(folder / "scan.bmp", fmt="BMP")
    report = data.load_instance_images(folder)
    assert len(report.samples) == 5
    skipped = dict(report.skipped)
    assert set(skipped) == {"broken.jpg", "notes.md", "scan.bmp"}
    assert "not a decodable" in skipped["broken.jpg"]
    assert "unsupported extension .md" in skipped["notes.md"]
    assert "unsupported extension .bmp" in skipped["scan.bmp"]


def test_folder_with_only_unreadable_files_lists_each(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "b.txt").write_text("a caption without an image")
    (tmp_path / "c.gif").write_bytes(b"GIF89a")
    with pytest.raises(RequestError) as info:
        data.load_instance_images(tmp_path)
    message = str(info.value)
    assert "no usable images" in message and "skipped 2 file(s)" in message
    assert "- a.png: is not a decodable PNG, JPEG or WebP image" in message
    assert "- c.gif: unsupported extension .gif" in message


def test_few_images_warn(tmp_path):
    folder = _folder(tmp_path, count=3)
    with pytest.warns(data.FewImagesWarning, match="only 3 usable image"):
        report = data.load_instance_images(folder)
    assert len(report.samples) == 3


def test_exif_orientation_captions_and_masks(tmp_path):
    folder = _folder(tmp_path, count=5)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: a 60x30 file is a 30x60 photo
    _photo(folder / "rotated.jpg", size=(60, 30), fmt="JPEG", exif=exif)
    _photo(folder / "side.webp", size=(50, 40), fmt="WEBP")
    (folder / "rotated.txt").write_text("a photo of sks skirt on a chair\n")
    Image.new("L", (30, 60), 255).save(folder / "rotated.mask.png")
    mask_dir = tmp_path / "masks"
    mask_dir.mkdir()
    Image.new("L", (50, 40), 0).save(mask_dir / "side.png")
    report = data.load_instance_images(folder, mask_dir=mask_dir)
    by_name = {s.path.name: s for s in report.samples}
    assert "rotated.mask.png" not in by_name and not report.skipped
    rotated = by_name["rotated.jpg"]
    assert rotated.image.size == (30, 60) and rotated.image.mode == "RGB"
    assert rotated.caption == "a photo of sks skirt on a chair"
    assert rotated.mask is not None and rotated.mask.size == (30, 60)
    assert by_name["side.webp"].mask_path == mask_dir / "side.png"
    assert by_name["p0.png"].mask is None and by_name["p0.png"].caption is None


def test_mask_that_does_not_match_its_image_fails(tmp_path):
    folder = _folder(tmp_path)
    Image.new("L", (10, 10), 255).save(folder / "p1.mask.png")
    with pytest.raises(RequestError) as info:
        data.load_instance_images(folder)
    assert "mask p1.mask.png is 10x10 but its image is 44x48" in str(info.value)


def test_fit_square_crops_and_resizes():
    img = Image.new("RGB", (100, 50))
    assert data.fit_square(img, 64).size == (64, 64)
    assert data.fit_square(img, 64, center_crop=False).size == (64, 64)


# ---------------------------------------------------------------------- masks
def test_random_masks_are_seeded_binary_shapes():
    first = [masks.random_mask((64, 48), random.Random(f"7:{i}")) for i in range(20)]
    again = [masks.random_mask((64, 48), random.Random(f"7:{i}")) for i in range(20)]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(first, again, strict=True))
    for mask in first:
        assert mask.mode == "L" and mask.size == (64, 48)
        assert set(np.unique(np.asarray(mask))) <= {0, 255}
        assert masks.coverage(mask) > 0.03
    assert any(masks.coverage(m) == 1.0 for m in first)  # the whole-image case occurs
    assert any(masks.coverage(m) < 1.0 for m in first)


def test_mask_sampler_mixes_garment_and_random_masks():
    garment = Image.new("L", (32, 32), 0)
    garment.paste(255, (8, 8, 24, 24))
    empty = Image.new("L", (32, 32), 0)
    rng = random.Random(0)
    always = masks.MaskSampler([garment, empty, None], ratio=1.0)
    mask, from_garment = always.sample(0, (32, 32), rng)
    assert from_garment and mask is garment
    assert not always.sample(1, (32, 32), rng)[1]  # an empty garment mask falls back to random
    assert not always.sample(2, (32, 32), rng)[1]
    never = masks.MaskSampler([garment], ratio=0.0)
    assert not any(never.sample(0, (32, 32), rng)[1] for _ in range(10))
    half = masks.MaskSampler([garment], ratio=0.5)
    used = sum(half.sample(0, (32, 32), rng)[1] for _ in range(400))
    assert 150 < used < 250
