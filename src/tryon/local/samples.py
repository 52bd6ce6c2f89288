"""Inputs for local runs, tests and benchmarks: synthetic photos and masks, an inpainting model folder."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path

from PIL import Image


def sample_photo(size: tuple[int, int] = (48, 64), fmt: str = "PNG") -> bytes:
    """A deterministic gradient "photo" (encoded as ``fmt``) for smoke runs without real photos."""
    img = Image.linear_gradient("L").resize(size).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def noise_image(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A deterministic RGB noise image of ``size`` (width, height): no two regions alike, so any
    change a model makes shows."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def box_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    """An ``L`` mask of ``size``: 255 inside ``box`` (left, top, right, bottom), 0 elsewhere."""
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return mask


def inpaint_request(
    photo: Image.Image, mask: Image.Image, *, seed: int, **fields: object
) -> dict[str, object]:
    """A fast inpainting request (one step, no guidance) with the photo and mask inline as base64 PNG."""
    from tryon.core.imaging import b64encode, encode_png

    request: dict[str, object] = {
        "image": b64encode(encode_png(photo)),
        "mask": b64encode(encode_png(mask)),
        "prompt": "a denim jacket",
        "steps": 1,
        "guidance_scale": 1.0,
        "seed": seed,
    }
    return request | fields


def assemble_inpaint_model(
    base: str | os.PathLike[str],
    adapters: Mapping[str, str | os.PathLike[str]],
    dest: str | os.PathLike[str],
    *,
    refiner: str | os.PathLike[str] | None = None,
    ip_adapter: str | os.PathLike[str] | None = None,
) -> Path:
    """Lay out an inpainting model folder as the endpoint expects it, with symlinks, not copies.

    Base weights at the root (diffusers layout) and each LoRA adapter in ``adapters/<name>/``,
    so a request (or an upload's ``x-amz-meta-adapter``) can pick one by name; an SDXL base's
    ``refiner`` (an SDXL refiner pipeline folder) in ``refiner/``; an ``ip_adapter`` folder
    (weights and ``image_encoder/``, for garment images) in ``ip_adapter/``.
    """
    base, dest = Path(base), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for child in base.iterdir():
        if child.name != "adapters" and not (dest / child.name).exists():
            (dest / child.name).symlink_to(child.resolve(), target_is_directory=child.is_dir())
    for name, folder in adapters.items():
        (dest / "adapters").mkdir(exist_ok=True)
        link = dest / "adapters" / name
        if not link.exists():
            link.symlink_to(Path(folder).resolve(), target_is_directory=True)
    for name, folder in (("refiner", refiner), ("ip_adapter", ip_adapter)):
        if folder is not None and not (dest / name).exists():
            (dest / name).symlink_to(Path(folder).resolve(), target_is_directory=True)
    return dest
