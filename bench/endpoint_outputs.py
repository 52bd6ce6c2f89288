"""Benchmark the inpainting endpoint's non-inference time on a 4000x3000 photo with four images.

What a request costs besides the denoising itself: decode, crop, paste-back, encode and
delivery. Two ways of answering, measured in the same run on the same request:

- before: the images come back base64 in the JSON answer (PNG at zlib level 6, one after
  the other), as the endpoint answered until results went to S3 (that path still serves
  requests without ``output``; ``TRYON_ENDPOINT_MODE=async`` lifts the 6 MB real-time limit
  so it can answer this request);
- after: the endpoint writes the images to the request's ``output`` prefix itself (PNG at
  zlib level 1, encoded and uploaded in parallel) and answers with their URIs.

S3 is moto, in-process. Every figure comes from the handler's own ``timings_ms``; the ratio
is before/after, and the inference time of the same requests is printed beside it. Pixels
outside the mask are checked byte-identical to the photo in both answers.

Run: ``.venv/bin/python -m bench.endpoint_outputs [--repeats 3] [--size 4000x3000]``
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
from pathlib import Path

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
        request = {**base, "image": "s3://bench-in/inputs/p.jpg", "mask": "s3://bench-out/r/mask.png"}

        def before() -> dict:
            os.environ["TRYON_ENDPOINT_MODE"] = "async"
            try:
                data = sd_inpaint.input_fn(json.dumps(request), "application/json")
                answer = sd_inpaint.predict_fn(data, model)
            finally:
                del os.environ["TRYON_ENDPOINT_MODE"]
            first = np.asarray(imaging.decode_image(base64.b64decode(answer["images"][0])))
            assert np.array_equal(first[outside], photo[outside])
            return answer

        def after() -> dict:
            data = sd_inpaint.input_fn(
                json.dumps({**request, "output": "s3://bench-out/r/"}), "application/json"
            )
            answer = sd_inpaint.predict_fn(data, model)
            body = s3.get_object(Bucket="bench-out", Key=answer["outputs"][0]["key"])["Body"].read()
            first = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
            assert np.array_equal(first[outside], photo[outside])
            return answer

        rows = {"before": [], "after": []}
        after(), before()  # warm-up
        for i in range(args.repeats):
            for name, fn in (
                (("before", before), ("after", after))
                if i % 2 == 0
                else (("after", after), ("before", before))
            ):
                answer = fn()
                timings = answer["timings_ms"]
                rows[name].append(
                    (sum(timings.get(k, 0.0) for k in NON_INFERENCE), timings["inference"], timings["encode"])
                )

    print(
        f"inpainting endpoint, {size[0]}x{size[1]} JPEG photo, {args.num_images} images, tiny checkpoint, "
        f"median of {args.repeats}"
    )
    med = {
        name: [statistics.median(col) for col in zip(*values, strict=True)] for name, values in rows.items()
    }
    for name, (overhead, inference, encode) in med.items():
        print(
            f"  {name:6}  non-inference {overhead / 1000:6.2f} s  (encode+deliver {encode / 1000:5.2f} s)  "
            f"inference {inference / 1000:5.2f} s"
        )
    print(f"  ratio before/after (non-inference): {med['before'][0] / med['after'][0]:.1f}x")


if __name__ == "__main__":
    main()
