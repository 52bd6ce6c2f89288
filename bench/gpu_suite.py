"""GPU suite: images per GPU-second of every endpoint, in one command, against the physical floor.

On a CUDA machine it builds random-initialised pipelines with the real shapes
(:mod:`bench.full_models`: SD 2 inpainting, SD 1.5 inpainting, SDXL inpainting, the x4
upscaler; nothing downloaded) in float16 with SDPA attention, serves them through the real
handlers' ``predict_fn`` and prints, in a few minutes:

- ``matmul``: the GPU's measured bf16 dense matmul rate (TFLOP/s);
- ``floor``: FLOPs of one 512 px / 25 step SD 2 inpainting request (counted by
  ``torch.utils.flop_counter`` on the real request) and the time they take at that rate;
- ``sd2-inpaint`` / ``sd15-inpaint``: 512 px, 25 steps, 1 and 4 images (4 = one batch),
  plus, for SD 2 and 1 image, channels-last against the plain run;
- ``sdxl-inpaint``: 1024 px, 25 steps, 1 image;
- ``keep-body``: SD 1.5 inpainting, 512 px, 25 steps, 1 image, with each body control (full-size
  random SD 1.5 depth and pose ControlNets, Depth Anything V2 small, ViTPose base, RT-DETR R50vd)
  against plain inpainting on the same request (``cost_vs_plain``: latency ratio), and the
  estimators' time (``estimate_s``);
- ``x4-upscaler``: 512 -> 2048 px, 20 steps, one pass (512 px tiles) and 256 px tiles, the
  latter batched (4 per call, the handler's default) and one per call;
- ``train``: LoRA vs full fine-tune step rate of the SD 2 inpainting UNet at 512 px (bf16);
- ``sd2-compile``: SD 2, 1 image, ``torch.compile`` (inductor) against the plain run, last;
- peak GPU memory of each. Rows are written to ``--json`` as they come, so a run cut short
  keeps what it measured.

Without CUDA (or with ``--reduced``) the same code runs with reduced widths at 64 px and 2
steps on the CPU, which is what ``tests/serving/test_gpu_suite.py`` does so the suite cannot rot.

    .venv/bin/python -m bench.gpu_suite --json out/gpu-suite.json     # on the GPU machine
    .venv/bin/python -m bench.gpu_suite --reduced                     # anywhere, seconds
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Answers stay inline (no S3 in the loop) at an asynchronous endpoint's limits: random-noise
# PNGs are incompressible and would pass a real-time endpoint's 6 MiB.
os.environ.setdefault("TRYON_ENDPOINT_MODE", "async")

#: Every case the suite runs, in order (``--only`` / ``--skip`` take these names).
#: ``sd2-compile`` runs last: compilation takes minutes and must not cost the other cases.
CASES = (
    "matmul",
    "floor",
    "sd2-inpaint",
    "sd15-inpaint",
    "sdxl-inpaint",
    "keep-body",
    "x4-upscaler",
    "train",
    "sd2-compile",
)


@dataclass(frozen=True)
class Sizes:
    """Working sizes, steps and repeats of a full (GPU) or reduced (CPU) run."""

    inpaint_px: int
    sdxl_px: int
    steps: int
    upscale_in_px: int
    upscale_tiles: tuple[int, int]
    upscale_steps: int
    matmul_n: int
    train_px: int
    train_steps: int
    repeats: int


FULL = Sizes(512, 1024, 25, 512, (512, 256), 20, 8192, 512, 10, 3)
#: SDXL keeps 1024 px even reduced: the handler refuses any size but Stability's SDXL ones.
REDUCED = Sizes(64, 1024, 2, 64, (64, 32), 2, 256, 64, 2, 1)


class Suite:
    """Runs the cases on one device and collects one row (a dict) per measurement."""

    def __init__(
        self,
        device: Any,
        reduced: bool,
        sizes: Sizes,
        compile_backend: str,
        header: dict[str, Any],
        json_path: str | None,
    ) -> None:
        import torch

        self.device = device
        self.reduced = reduced
        self.sizes = sizes
        self.compile_backend = compile_backend
        self.dtype = torch.float16 if device.type == "cuda" else torch.float32
        self.rows: list[dict[str, Any]] = []
        self.header = header
        self.json_path = json_path

    # --- helpers ---------------------------------------------------------------------------

    def _timed(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        from bench.gpu_unet_throughput import sync

        sync(self.device)
        start = time.perf_counter()
        result = fn()
        sync(self.device)
        return time.perf_counter() - start, result

    def measure(self, case: str, variant: str, fn: Callable[[], Any], **extra: Any) -> dict[str, Any]:
        """Warm-up (timed apart: it includes compilation), then the median of ``repeats`` runs."""
        from bench.gpu_unet_throughput import peak_mib, peak_reset

        peak_reset(self.device)
        first, _ = self._timed(fn)
        runs = [self._timed(fn) for _ in range(self.sizes.repeats)]
        row = {
            "case": case,
            "variant": variant,
            "latency_s": round(statistics.median(t for t, _ in runs), 4),
            "first_call_s": round(first, 3),
            "peak_mib": round(peak_mib(self.device)),
            **extra,
        }
        answers = [a for _, a in runs if isinstance(a, dict) and "timings_ms" in a]
        if answers:  # the handler's own inference phase, without decode/encode of the images
            row["inference_s"] = round(
                statistics.median(a["timings_ms"]["inference"] for a in answers) / 1000, 4
            )
            if all("estimate" in a["timings_ms"] for a in answers):  # keep_body's estimators
                row["estimate_s"] = round(
                    statistics.median(a["timings_ms"]["estimate"] for a in answers) / 1000, 4
                )
        if "images" in row:
            row["images_per_s"] = round(row["images"] / row["latency_s"], 3)
        return self.add(row)

    def add(self, row: dict[str, Any]) -> dict[str, Any]:
        """Record and print one row."""
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        self.flush()
        return row

    def flush(self) -> None:
        """Rewrite the ``--json`` file with every row so far."""
        if self.json_path:
            with open(self.json_path, "w") as fh:
                json.dump({**self.header, "rows": self.rows}, fh, indent=1)

    def pipeline(self, name: str) -> Any:
        from bench.full_models import build_pipeline

        return build_pipeline(name, device=self.device, dtype=self.dtype, reduced=self.reduced)

    def release(self) -> None:
        """Free what the last case left on the device."""
        import torch

        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def inpaint_request(self, size: int, num_images: int) -> dict[str, Any]:
        """An inpainting request: a 1.5x-working-size photo, a central mask, the working size."""
        from PIL import Image

        from bench.handler_overhead import synthetic_photo
        from tryon.core.imaging import b64encode, encode_png

        side = size * 3 // 2
        mask = Image.new("L", (side, side), 0)
        mask.paste(255, (side // 4, side // 4, side * 3 // 4, side * 3 // 4))
        return {
            "image": b64encode(encode_png(synthetic_photo(side, side))),
            "mask": b64encode(encode_png(mask)),
            "prompt": "a photo of a red linen shirt",
            "steps": self.sizes.steps,
            "width": size,
            "height": size,
            "seed": 1,
            "num_images": num_images,
        }

    # --- cases -----------------------------------------------------------------------------

    def matmul(self) -> None:
        """Dense matmul rate: bf16 on a GPU (float32 on CPU)."""
        import torch

        n = self.sizes.matmul_n
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        a = torch.randn(n, n, device=self.device, dtype=dtype)
        b = torch.randn(n, n, device=self.device, dtype=dtype)
        row = self.measure("matmul", str(dtype).removeprefix("torch."), lambda: [a @ b for _ in range(10)])
        row["tflops"] = round(10 * 2 * n**3 / row["latency_s"] / 1e12, 2)
        print(json.dumps({"matmul_tflops": row["tflops"]}), flush=True)

    def floor(self) -> None:
        """FLOPs of one SD 2 inpainting request (1 image) and the time they take at the matmul rate."""
        from torch.utils.flop_counter import FlopCounterMode

        from bench.batched_images import inpaint_model
        from tryon.handlers import sd_inpaint

        rate = next((r["tflops"] for r in self.rows if r["case"] == "matmul"), None)
        model = inpaint_model(self.pipeline("sd2-inpaint"), name="sd2-inpaint")
        request = self.inpaint_request(self.sizes.inpaint_px, 1)
        with FlopCounterMode(display=False) as counter:
            sd_inpaint.predict_fn(request, model)
        flops = counter.get_total_flops()
        row = {"case": "floor", "variant": f"{self.sizes.inpaint_px} px, {self.sizes.steps} steps, 1 image"}
        row["tflop_per_request"] = float(f"{flops / 1e12:.4g}")
        if rate:
            row["floor_ms"] = round(flops / (rate * 1e12) * 1000, 2)
        self.add(row)

    def inpaint(self, name: str, size: int, counts: tuple[int, ...], variants: bool) -> None:
        """Latency of ``counts`` images per request; channels-last (``variants``) against plain."""
        import torch

        from bench.batched_images import inpaint_model
        from tryon.handlers import sd_inpaint

        pipe = self.pipeline(name)
        model = inpaint_model(pipe, name=name)
        extra = {"px": size, "steps": self.sizes.steps, "attention": type(pipe.unet.attn_processors[
            next(iter(pipe.unet.attn_processors))]).__name__}  # fmt: skip
        plain = {}
        for count in counts:
            request = self.inpaint_request(size, count)
            plain[count] = self.measure(
                name, "plain", lambda r=request: sd_inpaint.predict_fn(r, model), images=count, **extra
            )
        if variants:
            request = self.inpaint_request(size, 1)
            pipe.unet.to(memory_format=torch.channels_last)
            row = self.measure(
                name, "channels-last", lambda: sd_inpaint.predict_fn(request, model), images=1, **extra
            )
            row["vs_plain"] = round(plain[1]["latency_s"] / row["latency_s"], 3)
            pipe.unet.to(memory_format=torch.contiguous_format)
        if 4 in plain and 1 in plain:
            self.add({"case": name, "variant": "batch gain", "batched_4_vs_1_each": round(
                4 * plain[1]["latency_s"] / plain[4]["latency_s"], 3)})  # fmt: skip

    def keep_body(self) -> None:
        """SD 1.5, 1 image: each keep_body variant against plain inpainting, same model and request."""
        from bench.batched_images import inpaint_model
        from bench.body_controls import VARIANTS
        from bench.full_models import build_body_controls
        from tryon.handlers import sd_inpaint

        pipe = self.pipeline("sd15-inpaint")
        model = inpaint_model(pipe, name="sd15-inpaint")
        model.family = "sd15"
        model.controls = build_body_controls(pipe, device=self.device, dtype=self.dtype, reduced=self.reduced)
        size = self.sizes.inpaint_px
        extra = {"px": size, "steps": self.sizes.steps, "images": 1}
        plain = None
        for variant in VARIANTS:
            request = {**self.inpaint_request(size, 1), "keep_body": variant}
            row = self.measure(
                "keep-body", variant, lambda r=request: sd_inpaint.predict_fn(r, model), **extra
            )
            plain = plain or row
            row["cost_vs_plain"] = round(row["latency_s"] / plain["latency_s"], 3)  # latency ratio

    def compiled(self) -> None:
        """SD 2, 1 image: ``torch.compile`` of the UNet against the plain run, same process and input."""
        import torch

        from bench.batched_images import inpaint_model
        from tryon.handlers import sd_inpaint

        pipe = self.pipeline("sd2-inpaint")
        model = inpaint_model(pipe, name="sd2-inpaint")
        request = self.inpaint_request(self.sizes.inpaint_px, 1)
        extra = {"px": self.sizes.inpaint_px, "steps": self.sizes.steps, "images": 1}
        plain = self.measure("sd2-compile", "plain", lambda: sd_inpaint.predict_fn(request, model), **extra)
        pipe.unet = torch.compile(pipe.unet, backend=self.compile_backend)
        variant = f"compile ({self.compile_backend})"
        row = self.measure("sd2-compile", variant, lambda: sd_inpaint.predict_fn(request, model), **extra)
        row["vs_plain"] = round(plain["latency_s"] / row["latency_s"], 3)

    def upscaler(self) -> None:
        """The x4 upscaler through its handler: one pass and tiles, same input."""
        import torch

        from bench.handler_overhead import synthetic_photo
        from tryon.core.imaging import b64encode, encode_png
        from tryon.handlers import sd_upscale

        pipe = self.pipeline("x4-upscaler")
        model = sd_upscale.UpscaleModel(
            pipe=pipe, device=self.device, dtype=self.dtype, model_id="x4-upscaler"
        )
        side = self.sizes.upscale_in_px
        photo = b64encode(encode_png(synthetic_photo(side, side, seed=2)))
        small = self.sizes.upscale_tiles[-1]
        # the smaller tiles twice: batched (the handler's default) and one per call (a budget of one tile)
        for tile, budget in [*((t, None) for t in self.sizes.upscale_tiles), (small, small)]:
            body = json.dumps(
                {
                    "image": photo,
                    "prompt": "a dress",
                    "steps": self.sizes.upscale_steps,
                    "seed": 0,
                    "tile_size": tile,
                }
            )
            answer: dict[str, Any] = {}

            def run(body: str = body, answer: dict[str, Any] = answer) -> dict[str, Any]:
                answer.update(sd_upscale.predict_fn(sd_upscale.input_fn(body, "application/json"), model))
                return answer

            variant = f"tile {tile}" + (", one per call" if budget else "")
            if budget:
                os.environ["TRYON_UPSCALE_MAX_INPUT_SIDE"] = str(budget)
            try:
                with torch.inference_mode():
                    row = self.measure("x4-upscaler", variant, run, images=1, px=f"{side}->{side * 4}")
            finally:
                os.environ.pop("TRYON_UPSCALE_MAX_INPUT_SIDE", None)
            row["tiles"] = answer["tiles"]
            row["tiles_per_call"] = sd_upscale.tiles_per_call(tile, tile, model) if not budget else 1

    def train(self) -> None:
        """LoRA vs full fine-tune of the SD 2 inpainting UNet (bench.gpu_unet_throughput.measure)."""
        from bench.gpu_unet_throughput import SD2_INPAINT_UNET, SMALL_UNET, measure

        args = argparse.Namespace(
            mixed_precision="bf16" if self.device.type == "cuda" else "no",
            rank=4,
            gradient_checkpointing=False,
            use_8bit_adam=False,
            batch_size=1,
            resolution=self.sizes.train_px,
            warmup=1,
            steps=self.sizes.train_steps,
        )
        config = SMALL_UNET if self.reduced else SD2_INPAINT_UNET
        rows = {}
        for mode in ("full", "lora"):
            result = measure(mode, args, config, self.device)
            rows[mode] = self.add(
                {
                    "case": "train",
                    "variant": mode,
                    "px": self.sizes.train_px,
                    "steps_per_s": round(result["steps_per_s"], 3),
                    "trainable_m": round(result["trainable_m"], 2),
                    "peak_mib": round(result["peak_mib"]),
                }
            )
            self.release()
        rows["lora"]["vs_full"] = round(rows["lora"]["steps_per_s"] / rows["full"]["steps_per_s"], 3)

    def run(self, cases: list[str]) -> None:
        """Run ``cases`` in order; a failing case is reported as an ``error`` row and the rest go on."""
        sizes = self.sizes
        plans: dict[str, Callable[[], None]] = {
            "matmul": self.matmul,
            "floor": self.floor,
            "sd2-inpaint": lambda: self.inpaint("sd2-inpaint", sizes.inpaint_px, (1, 4), variants=True),
            "sd15-inpaint": lambda: self.inpaint("sd15-inpaint", sizes.inpaint_px, (1, 4), variants=False),
            "sdxl-inpaint": lambda: self.inpaint("sdxl-inpaint", sizes.sdxl_px, (1,), variants=False),
            "keep-body": self.keep_body,
            "x4-upscaler": self.upscaler,
            "train": self.train,
            "sd2-compile": self.compiled,
        }
        for case in cases:
            start = time.perf_counter()
            try:
                plans[case]()
            except Exception as exc:  # one broken case must not cost the whole (rare) GPU run
                traceback.print_exc()
                self.add({"case": case, "error": f"{type(exc).__name__}: {exc}"[:500]})
            self.release()  # the case's pipelines are gone with its frame
            self.flush()  # with what the case added to its rows after recording them
            print(f"# {case} took {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """The headline lines: single-image latency against the floor and the 1 s goal."""
    lines = []
    floor = next((r for r in rows if r["case"] == "floor"), None)
    single = next((r for r in rows if r["case"] == "sd2-inpaint" and r.get("images") == 1), None)
    if floor and "floor_ms" in floor:
        lines.append(
            f"physical floor: {floor['tflop_per_request']} TFLOP per request at the measured matmul rate "
            f"= {floor['floor_ms']} ms"
        )
    if single and floor and "floor_ms" in floor:
        best = min(
            (r for r in rows if r["case"] in ("sd2-inpaint", "sd2-compile") and r.get("images") == 1),
            key=lambda r: r["latency_s"],
        )
        lines.append(
            f"sd2-inpaint 1 image: {single['latency_s']} s plain, best {best['latency_s']} s "
            f"({best['variant']}): {floor['floor_ms'] / 1000 / best['latency_s']:.1%} of the floor's speed; "
            f"goal < 1 s {'met' if best['latency_s'] < 1 else 'missed'}"
        )
    return lines


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reduced", action="store_true", help="reduced widths, 64 px (default without CUDA)")
    parser.add_argument("--only", default=",".join(CASES), help="comma-separated cases to run")
    parser.add_argument("--skip", default="", help="comma-separated cases to leave out")
    parser.add_argument("--repeats", type=int, help="timed runs per measurement (after one warm-up)")
    parser.add_argument("--compile-backend", help="torch.compile backend (inductor on CUDA, eager on CPU)")
    parser.add_argument("--json", help="also write every row to this file")
    args = parser.parse_args(argv)
    cases = [c for c in args.only.split(",") if c and c not in args.skip.split(",")]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    import torch
    from diffusers.utils import logging as diffusers_logging

    cuda = torch.cuda.is_available()
    reduced = args.reduced or not cuda
    sizes = REDUCED if reduced else FULL
    if args.repeats:
        sizes = Sizes(**{**sizes.__dict__, "repeats": args.repeats})
    diffusers_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # random fp16 weights may give NaN pixels
    device = torch.device("cuda" if cuda else "cpu")
    where = torch.cuda.get_device_name(device) if cuda else f"CPU ({os.cpu_count()} cores)"
    header = {
        "suite": "gpu_suite",
        "device": where,
        "reduced": reduced,
        "torch": torch.__version__,
        "dtype": "float16" if cuda else "float32",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cases": cases,
    }
    print(json.dumps(header), flush=True)
    backend = args.compile_backend or ("inductor" if cuda else "eager")
    suite = Suite(device, reduced, sizes, backend, header, args.json)
    started = time.perf_counter()
    suite.run(cases)
    for line in summary(suite.rows):
        print(line)
    print(f"total {time.perf_counter() - started:.0f} s")
    return suite.rows


if __name__ == "__main__":
    main()
