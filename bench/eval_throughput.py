"""Evaluation throughput: rows per second of each metric family on this CPU.

Full-size random networks (CLIP ViT-L/14, DINOv2-base, FID's Inception-v3; ``--tiny`` for the test
networks) built by :mod:`tryon.evaluation.tiny_metrics` and loaded through ``--metric-models``, so
the figures are the real compute. Baseline in the same run: the weight-free family (SSIM + PSNR),
printed as a ratio. Rows are 512x512 synthetic try-ons.

    .venv/bin/python -m bench.eval_throughput --rows 8
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--tiny", action="store_true", help="tiny networks instead of full-size ones")
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    from tryon.evaluation import feature_metrics as fm
    from tryon.evaluation import pixel_metrics as pm
    from tryon.evaluation.metric_models import MetricModels
    from tryon.evaluation.set_metrics import fid_kid
    from tryon.evaluation.tiny_metrics import build_metric_models

    rng = np.random.default_rng(0)
    photos, results, masks = [], [], []
    for _ in range(args.rows):
        photo = Image.fromarray(rng.integers(0, 255, (args.size, args.size, 3), dtype=np.uint8))
        mask = Image.new("L", photo.size, 0)
        ImageDraw.Draw(mask).rectangle(
            (args.size // 4, args.size // 4, 3 * args.size // 4, 3 * args.size // 4), 255
        )
        result = photo.copy()
        patch = rng.integers(0, 255, (args.size // 2, args.size // 2, 3), dtype=np.uint8)
        result.paste(Image.fromarray(patch), (args.size // 4, args.size // 4))
        photos.append(photo)
        results.append(result)
        masks.append(mask)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        build_metric_models(Path(tmp), full=not args.tiny)
        models = MetricModels(folder=Path(tmp))
        clip, dino, inception = models.clip(), models.dino(), models.inception()
        built = time.perf_counter() - started
        sizes = {name: sum(p.numel() for p in m.parameters()) / 1e6
                 for name, m in (("clip", clip[0]), ("dino", dino[0]), ("inception", inception))}  # fmt: skip
        print(
            f"networks built and loaded in {built:.1f} s: "
            + ", ".join(f"{k} {v:.1f} M" for k, v in sizes.items())
        )
        torch.set_grad_enabled(False)

        def timed(name, fn):
            fn(0)  # warm-up
            start = time.perf_counter()
            for i in range(args.rows):
                fn(i)
            seconds = time.perf_counter() - start
            return name, args.rows / seconds

        refs = fm.clip_image_embeddings(clip, [photos[0]]), fm.dino_embeddings(dino, [photos[0]])
        text = fm.clip_text_embeddings(clip, ["a red plaid flannel shirt"])

        def paired(i):
            return pm.ssim(results[i], photos[i]), pm.psnr(results[i], photos[i])

        def mask(i):
            return pm.mask_iou(masks[i], masks[0]), pm.boundary_f(masks[i], masks[0])

        def garment(i):
            region = fm.garment_region(results[i], masks[i])
            clip_i = fm.mean_similarity(fm.clip_image_embeddings(clip, [region]), refs[0])
            return clip_i, fm.mean_similarity(fm.dino_embeddings(dino, [region]), refs[1])

        def prompt(i):
            region = fm.garment_region(results[i], masks[i])
            return fm.mean_similarity(fm.clip_image_embeddings(clip, [region]), text)

        figures = [
            timed("paired (SSIM+PSNR)", paired),
            timed("mask (IoU+boundary F)", mask),
            timed("preservation", lambda i: pm.changed_outside(photos[i], results[i], masks[i])),
            timed("garment (CLIP-I+DINO)", garment),
            timed("prompt (CLIP-T)", prompt),
        ]
        start = time.perf_counter()
        fid_kid(inception, photos, results)
        figures.append(("unpaired (FID+KID)", 2 * args.rows / (time.perf_counter() - start)))
        baseline = figures[0][1]
        print(f"{args.rows} rows, {args.size}x{args.size}, torch threads {torch.get_num_threads()}")
        print(f"{'family':<24}{'rows/s':>10}{'vs SSIM+PSNR':>14}")
        for name, rate in figures:
            print(f"{name:<24}{rate:>10.2f}{rate / baseline:>14.3f}")
        print("(unpaired counts real + result images: both pass through Inception)")


if __name__ == "__main__":
    main()
