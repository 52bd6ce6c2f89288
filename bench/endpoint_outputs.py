"""Benchmark the inpainting endpoint's non-inference time on a 4000x3000 photo with four images.

What a request costs besides the denoising itself: decode, crop, paste-back, PNG encoding and
the upload to the request's ``output`` prefix (the workflow's path). Two versions of the
post-inference path, measured in the same run on the same request and taking turns:

- today (the baseline, as the handler was before ``png_writer``): each image blended into
  a full copy of the photo in float32, then Pillow's PNG encoder at zlib level 1 (five filters
  tried per row) and the upload, one task per image on ``min(images, CPUs, 4)`` threads;
- now: the blend in Pillow's C code on the window only, rows above and below the window
  compressed once for all images (starting while the model runs), Up filter + zlib's
  run-length strategy in fragments on the PNG threads, each upload as soon as its PNG is ready.

The baseline runs through the same ``predict_fn`` with those three pieces swapped back in
(:func:`todays_path`), so decode and preprocessing are the same code. S3 is moto, in-process.
Every time comes from the handler's own ``timings_ms``, besides the CPU seconds the whole
process spent in ``predict_fn`` (all threads, the model's and moto's included: far less
sensitive to other jobs on the machine than wall time); pixels outside the mask are checked
byte-identical to the photo in both answers, and the bytes written are reported beside the time.

Run: ``.venv/bin/python -m bench.endpoint_outputs [--repeats 3] [--size 4000x3000]``
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for _var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
    os.environ.setdefault(_var, "bench")

NON_INFERENCE = ("decode", "preprocess", "postprocess", "encode")
REPO = Path(__file__).resolve().parent.parent


def _photo(size: tuple[int, int]):
    """The sample portrait (a real photo) resized to ``size``, as JPEG bytes, and its mask."""
    from PIL import Image

    from tryon.core import imaging

    photo = (
        Image.open(REPO / "assets" / "astronaut.jpg").convert("RGB").resize(size, Image.Resampling.BICUBIC)
    )
    w, h = size
    mask = Image.new("L", size, 0)
    mask.paste(255, (w * 3 // 10, h * 4 // 10, w * 7 // 10, h * 9 // 10))  # a garment-sized box
    return imaging.encode_jpeg(photo, quality=92), imaging.encode_png(mask, compress_level=1)


# ---------------------------------------------------------------- today's path (the baseline)
def _todays_paste_back(original, generated, box, mask, feather=4):
    """crop.paste_back as it was: float32 blend of the window, pasted into a full copy."""
    import numpy as np
    from PIL import Image

    from tryon.handlers.crop import feather_weights

    left, top, right, bottom = box
    patch = generated.convert("RGB").resize((right - left, bottom - top), Image.Resampling.LANCZOS)
    weights = feather_weights(mask.crop(box), feather)[..., None]
    base = np.asarray(original.crop(box), dtype=np.float32)
    blended = base + (np.asarray(patch, dtype=np.float32) - base) * weights
    out_region = np.where(weights > 0, np.clip(np.rint(blended), 0, 255), base).astype(np.uint8)
    result = original.copy()
    result.paste(Image.fromarray(out_region, "RGB"), (left, top))
    return result


class _TodaysPaste:
    def __init__(self, original, box, mask) -> None:
        self.args = (original, box, mask)

    def region(self, generated):
        original, box, mask = self.args
        return _todays_paste_back(original, generated, box, mask)  # the whole image


class _TodaysEncoder:
    """No shared rows: each whole image is encoded by Pillow (zlib level 1) when uploaded."""

    def __init__(self, image, box) -> None:
        pass

    def start(self, image):
        from tryon.handlers.png_writer import PendingPNG

        class PillowPNG(PendingPNG):
            def result(self) -> bytes:
                from tryon.core import imaging

                return imaging.encode_png(image, compress_level=1)

        return PillowPNG(image.width, image.height, image.mode, [])

    def cancel(self) -> None:
        pass


def _todays_write_pngs(target, pngs: Sequence[Any], *, indexed: bool) -> list[dict[str, Any]]:
    """s3io.write_pngs as it was: encode + upload per image on min(images, CPUs, 4) threads."""
    from tryon.handlers import s3io

    client = s3io.s3_client()
    keys = [target.key(i if indexed else None) for i in range(len(pngs))]
    workers = min(len(pngs), os.cpu_count() or 1, 4)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="today-output") as pool:
        futures = [
            pool.submit(s3io._put_png, client, target.bucket, k, p) for k, p in zip(keys, pngs, strict=True)
        ]
        return [f.result() for f in futures]


@contextmanager
def todays_path() -> Iterator[None]:
    """The inpainting handler with its post-inference path as it was before png_writer."""
    from unittest import mock

    from tryon.handlers import sd_inpaint

    with (
        mock.patch.object(sd_inpaint.crop, "PasteBack", _TodaysPaste),
        mock.patch.object(sd_inpaint.png_writer, "WindowEncoder", _TodaysEncoder),
        mock.patch.object(sd_inpaint, "write_pngs", _todays_write_pngs),
    ):
        yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", default="4000x3000")
    parser.add_argument("--num-images", type=int, default=4)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))

    import boto3
    import numpy as np
    import torch
    from moto import mock_aws
    from PIL import Image

    from tryon.core import imaging
    from tryon.handlers import sd_inpaint
    from tryon.weights.tiny import ensure_tiny_models

    torch.set_num_threads(1)
    model = sd_inpaint.model_fn(str(ensure_tiny_models(REPO / ".cache" / "tiny-models")["sd-inpaint"]))
    jpeg, mask_png = _photo(size)
    photo = np.asarray(imaging.decode_image(jpeg).convert("RGB"))
    outside = np.asarray(Image.open(io.BytesIO(mask_png))) == 0
    base = {"prompt": "a red skirt", "steps": 2, "seed": 1, "num_images": args.num_images}

    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="bench-in")
        s3.create_bucket(Bucket="bench-out")
        s3.put_object(Bucket="bench-in", Key="inputs/p.jpg", Body=jpeg)
        s3.put_object(Bucket="bench-out", Key="r/mask.png", Body=mask_png)
        request = {
            **base,
            "image": "s3://bench-in/inputs/p.jpg",
            "mask": "s3://bench-out/r/mask.png",
            "output": "s3://bench-out/r/",
        }

        def run() -> dict:
            data = sd_inpaint.input_fn(json.dumps(request), "application/json")
            cpu = time.process_time()
            answer = sd_inpaint.predict_fn(data, model)
            answer["cpu_s"] = (
                time.process_time() - cpu
            )  # every thread of the process: far less load-sensitive
            for written in answer["outputs"]:
                body = s3.get_object(Bucket="bench-out", Key=written["key"])["Body"].read()
                pixels = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
                assert np.array_equal(pixels[outside], photo[outside]), "pixels outside the mask changed"
            return answer

        def today() -> dict:
            with todays_path():
                return run()

        rows: dict[str, list[tuple[float, ...]]] = {"today": [], "now": []}
        run(), today()  # warm-up
        for i in range(args.repeats):
            for name, fn in (
                (("today", today), ("now", run)) if i % 2 == 0 else (("now", run), ("today", today))
            ):
                answer = fn()
                timings = answer["timings_ms"]
                rows[name].append(
                    (
                        sum(timings.get(k, 0.0) for k in NON_INFERENCE),
                        timings["inference"],
                        timings["postprocess"],
                        timings["encode"],
                        sum(timings.values()),
                        sum(o["bytes"] for o in answer["outputs"]),
                        answer["cpu_s"],
                    )
                )

    print(
        f"inpainting endpoint, {size[0]}x{size[1]} JPEG photo, {args.num_images} images written to S3 (moto, "
        f"in-process), tiny checkpoint, {os.cpu_count()} CPUs, median of {args.repeats}"
    )
    med = {
        name: [statistics.median(col) for col in zip(*values, strict=True)] for name, values in rows.items()
    }
    for name, (overhead, inference, post, encode, wall, written, cpu) in med.items():
        print(
            f"  {name:6} non-inference {overhead / 1000:5.2f} s (paste-back {post / 1000:4.2f} s, "
            f"encode+upload {encode / 1000:4.2f} s)  inference {inference / 1000:4.2f} s  "
            f"handler wall {wall / 1000:5.2f} s  CPU {cpu:5.2f} s  bytes written {written / 1e6:6.2f} MB"
        )
    print(
        f"  ratio today/now: non-inference {med['today'][0] / med['now'][0]:.2f}x, "
        f"handler wall {med['today'][4] / med['now'][4]:.2f}x, "
        f"bytes {med['now'][5] / med['today'][5]:.3f} of today's, "
        f"CPU seconds {med['today'][6] / med['now'][6]:.2f}x"
    )


if __name__ == "__main__":
    main()
