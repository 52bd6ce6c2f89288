"""The metrics on cases with known answers, on images the tests make and tiny metric networks."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from support.evaluation import person
from support.images import box_mask

from tryon.core.errors import RequestError
from tryon.evaluation import feature_metrics, inception, pixel_metrics
from tryon.evaluation.metric_models import MetricModels, torchvision_available
from tryon.evaluation.set_metrics import fid_kid


def _square(offset: int = 0, size: int = 100) -> Image.Image:
    return box_mask((size, size), (20 + offset, 30, 40 + offset, 50))  # 20 x 20


def test_identical_images_give_ssim_1_and_capped_psnr():
    photo, _ = person()
    assert pixel_metrics.ssim(photo, photo.copy()) == pytest.approx(1.0, abs=1e-6)
    assert pixel_metrics.psnr(photo, photo.copy()) == pixel_metrics.PSNR_CAP_DB
    other, _ = person(shade=40)
    assert pixel_metrics.ssim(other, photo) < 0.99
    assert pixel_metrics.psnr(other, photo) < 40


@pytest.mark.skipif(not torchvision_available(), reason="LPIPS loads its backbone through torchvision")
def test_identical_images_give_lpips_0(tmp_path):
    photo, _ = person()
    metric = MetricModels(download=True).lpips()
    assert pixel_metrics.lpips(metric, photo, photo.copy()) == pytest.approx(0.0, abs=1e-6)


def test_a_shifted_mask_lowers_iou_by_the_expected_amount():
    reference = _square()
    assert pixel_metrics.mask_iou(_square(), reference) == 1.0
    # 20x20 squares 5 px apart: intersection 15x20 = 300, union 500
    assert pixel_metrics.mask_iou(_square(5), reference) == pytest.approx(300 / 500)
    assert pixel_metrics.mask_iou(_square(40), reference) == 0.0
    assert pixel_metrics.boundary_f(_square(), reference) == 1.0
    # tolerance 0.008 x diagonal (141 px) = 1 px: a contour 5 px away misses except where the edges overlap
    assert pixel_metrics.boundary_f(_square(5), reference) < 0.6
    assert pixel_metrics.boundary_f(_square(1), reference) == pytest.approx(1.0)


def test_a_changed_pixel_outside_the_mask_is_counted_and_one_inside_is_not():
    photo, mask = person()
    outside = int((pixel_metrics.binary(mask) == 0).sum())
    assert pixel_metrics.changed_outside(photo, photo.copy(), mask) == (0.0, 0, outside)
    result = photo.copy()
    result.putpixel((2, 2), (0, 0, 0))  # outside the garment
    result.putpixel((20, 40), (0, 0, 0))  # inside
    assert pixel_metrics.changed_outside(photo, result, mask) == (1 / outside, 1, outside)
    faint = photo.copy()
    r, g, b = faint.getpixel((3, 3))
    faint.putpixel((3, 3), (r + 1, g, b))
    assert pixel_metrics.changed_outside(photo, faint, mask)[1] == 1
    assert pixel_metrics.changed_outside(photo, faint, mask, tolerance=1)[1] == 0


def test_a_set_scored_against_itself_gives_fid_of_about_0(tiny_metric_models):
    network = MetricModels(folder=tiny_metric_models).inception()
    images = [person(shade=i * 9, box=(10 + i, 20, 40 + i, 60))[0] for i in range(6)]
    same = fid_kid(network, images, [img.copy() for img in images])
    assert same.fid == pytest.approx(0.0, abs=1e-3) and abs(same.kid) < 1e-3
    noise = [Image.effect_noise((64, 96), 80 + 10 * i).convert("RGB") for i in range(6)]
    assert fid_kid(network, images, noise).fid > same.fid + 1e-3


def test_clip_and_dino_similarity_of_an_image_to_itself_is_1(tiny_metric_models):
    models = MetricModels(folder=tiny_metric_models)
    photo, mask = person()
    region = feature_metrics.garment_region(photo, mask)
    assert region.size == (37, 45)  # the 33x41 box plus a 2 px margin (5% of 41)
    for embed in (feature_metrics.clip_image_embeddings, feature_metrics.dino_embeddings):
        model = models.clip() if embed is feature_metrics.clip_image_embeddings else models.dino()
        query = embed(model, [region])
        assert feature_metrics.mean_similarity(query, embed(model, [region.copy()])) == pytest.approx(
            1.0, abs=1e-5
        )
    text = feature_metrics.clip_text_embeddings(models.clip(), ["a red shirt"])
    assert -1.0 <= feature_metrics.mean_similarity(text, text) <= 1.0 + 1e-6


def test_fid_inception_loads_the_reference_weights_layout(tmp_path):
    """A full-size state dict as the 2015 FID file stores it (no config.json, no batch counters) loads."""
    full = inception.FIDInceptionV3()
    assert full.num_features == 2048 and full.fc.out_features == 1008
    state = {k: v for k, v in full.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / inception.FID_WEIGHTS_NAME)
    loaded = inception.load_inception(tmp_path)
    assert loaded.width == 1.0
    image = torch.randint(0, 255, (1, 3, 80, 60), dtype=torch.uint8)
    assert torch.allclose(loaded(image), full(image))
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / inception.FID_WEIGHTS_NAME)
    with pytest.raises(ValueError, match="not an FID Inception-v3 state dict"):
        inception.load_inception(tmp_path)


def test_missing_metric_weights_are_refused_naming_the_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(
        RequestError, match=r"--metric-models: .*not in the local Hugging Face cache: pass --download"
    ):
        MetricModels().check({"garment"})
    with pytest.raises(RequestError, match=r"pt_inception-2015-12-05-6726825d.pth.*pass --download"):
        MetricModels().check({"unpaired"})
    with pytest.raises(RequestError, match=r"empty/clip/config.json is missing"):
        MetricModels(folder=tmp_path / "empty").check({"prompt"})
    MetricModels().check({"mask", "preservation"})  # no weights needed
