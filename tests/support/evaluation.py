"""Shared by the evaluation and training-validation tests: tiny metric networks and test images."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw


def metric_models(root: Path) -> Path:
    """Tiny random CLIP, DINOv2 and Inception networks in the ``--metric-models`` layout (built once)."""
    from tryon.evaluation.tiny_metrics import build_metric_models

    if not (root / "inception").is_dir():
        build_metric_models(root)
    return root


def person(size=(64, 96), shade=0, box=(16, 30, 48, 70)) -> tuple[Image.Image, Image.Image]:
    """A synthetic photo with a red 'garment' rectangle, and its mask."""
    photo = Image.new("RGB", size, (90 + shade, 120, 140))
    ImageDraw.Draw(photo).rectangle(box, fill=(200, 30, 30 + shade))
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return photo, mask


def docs_world(root: Path, tiny_metric_models: Path) -> None:
    """What docs/evaluation.md's examples name, in the documentation test's world (docs/doc-tests.md).

    ``metric-models/``: the tiny random metric networks (a link); ``rows.csv``: a row to run (the world's
    ``photos/anna.jpg``); ``scored.csv``: two existing results with the masks they were painted in, ground
    truths and reference masks; ``data/viton-hd/test``: two people in VITON-HD's test layout;
    ``out/catvton``: another model's results on them. Needs the world's ``photos/`` and ``packshot.png``.
    """
    (root / "metric-models").symlink_to(tiny_metric_models)
    rows = ["id,photo,prompt,query,class,packshot"]
    job = "a red plaid flannel shirt,an orange space suit,upper-body,packshot.png"
    rows.append(f"anna,photos/anna.jpg,{job}")  # one row: the examples run it with 2 seeds, 3 times
    (root / "rows.csv").write_text("\n".join(rows) + "\n")
    scored = ["id,photo,result,mask,ground_truth,reference_mask,class,prompt,packshot"]
    viton = root / "data" / "viton-hd" / "test"
    for sub in ("results", "masks", "reference-masks"):
        (root / sub).mkdir()
    for sub in ("image", "cloth", "image-parse-v3"):
        (viton / sub).mkdir(parents=True)
    (root / "out" / "catvton").mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(("anna", "ben")):
        with Image.open(root / "photos" / f"{name}.jpg") as img:
            photo = img.convert("RGB")
        width, height = photo.size
        box = (width // 4, height // 3, 3 * width // 4, 5 * height // 6)
        mask = Image.new("L", photo.size, 0)
        ImageDraw.Draw(mask).rectangle(box, fill=255)
        mask.save(root / "masks" / f"{name}.png")
        mask.save(root / "reference-masks" / f"{name}.png")
        result = photo.copy()
        ImageDraw.Draw(result).rectangle(box, fill=(180, 30, 40))
        result.save(root / "results" / f"{name}.png")
        scored.append(
            f"{name},photos/{name}.jpg,results/{name}.png,masks/{name}.png,photos/{name}.jpg,"
            f"reference-masks/{name}.png,upper-body,a red plaid flannel shirt,packshot.png"
        )
        stem = f"0000{index}_00"
        photo.save(viton / "image" / f"{stem}.jpg")
        photo.crop(box).save(viton / "cloth" / f"{stem}.jpg")
        parse = Image.new("L", photo.size, 0)
        parse.paste(5, box)  # label 5: upper clothes
        parse.save(viton / "image-parse-v3" / f"{stem}.png")
        result.save(root / "out" / "catvton" / f"{stem}.png")
    (root / "scored.csv").write_text("\n".join(scored) + "\n")
    (viton / "test_pairs.txt").write_text("00000_00.jpg 00001_00.jpg\n00001_00.jpg 00000_00.jpg\n")
