"""Helpers for the tests of mask modes and outfits on the local stack: a small photo, a packshot, pixels."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from support.images import encode, noise_image
from support.images import pixels as image_pixels
from support.workflow import DEADLINE_S
from tryon.local import LocalWorkflow
from tryon.local.samples import assemble_inpaint_model, sample_photo

WIDTH, HEIGHT = 48, 64
PHOTO = sample_photo((WIDTH, HEIGHT), "PNG")
#: The inpainting model's LoRA adapters, by name (the tiny checkpoints lora-a and lora-b).
ADAPTERS = {"garment-a": "lora-a", "garment-b": "lora-b"}
#: No keep-regions and threshold 0: the tiny CLIPSeg's random mask is the whole photo, so every
#: mask is the box it is cut to (and a keep-region would be the whole photo too).
EXACT_MASKS = {"DefaultSteps": 1, "DefaultThreshold": 0.0, "DefaultNegativeQueries": ""}


#: PNG bytes of an image
png = encode
PACKSHOT = png(noise_image((30, 40), seed=5))


def outfit_stack(tiny_models: Any, tmp_path_factory: Any, **kwargs: Any) -> LocalWorkflow:
    """The local stack (not entered) with an inpainting model carrying the tiny IP-Adapter and two LoRAs."""
    adapters = {name: tiny_models[folder] for name, folder in ADAPTERS.items()}
    inpaint = assemble_inpaint_model(
        tiny_models["sd-inpaint-ip"], adapters, tmp_path_factory.mktemp("inpaint")
    )
    models = {"clipseg": tiny_models["clipseg"], "sd_inpaint": inpaint}
    parameters = {**EXACT_MASKS, **kwargs.pop("parameters", {})}
    kwargs.setdefault("stack_name", "tryon-outfits")  # beside the workflow tests' shared stack
    return LocalWorkflow(models, upscale=False, parameters=parameters, **kwargs)


def record_requests(wf: Any) -> dict[str, list[dict[str, Any]]]:
    """Every CLIPSeg and inpainting request the workflow sends from now on, by endpoint kind."""
    sent: dict[str, list[dict[str, Any]]] = {"clipseg": [], "sd_inpaint": []}
    for kind, bodies in sent.items():
        wf.before_endpoint_call(
            kind, lambda request, bodies=bodies: bodies.append(json.loads(request["body"]))
        )
    return sent


def as_sent(manifest: dict[str, Any], uri: str) -> str:
    """A published URI of the manifest as the endpoints were sent it: under the job's pending
    prefix (Finalize publishes to the result prefix once moderation passed the images)."""
    published = manifest["outputs"]["prefix"]
    assert uri.startswith(published), uri
    bucket = published.removeprefix("s3://").split("/", 1)[0]
    return f"s3://{bucket}/pending/{manifest['job_id']}/" + uri[len(published) :]


def photo_pixels() -> np.ndarray:
    return image_pixels(PHOTO, "RGB").astype(int)


def pixels(wf: Any, uri_or_key: str) -> np.ndarray:
    """An image the workflow wrote, as RGB ints (so pixels compare exactly)."""
    return image_pixels(wf.read_bytes(uri_or_key), "RGB").astype(int)


def mask_of(wf: Any, uri: str) -> np.ndarray:
    """A mask the workflow wrote, as booleans (painted: > 127)."""
    return image_pixels(wf.read_bytes(uri), "L") > 127


def box(left: int, top: int, right: int, bottom: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[top:bottom, left:right] = True
    return mask


def changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return (before != after).any(axis=2)


def largest_state(result: Any) -> int:
    """The largest state input or output of an execution, in bytes (Step Functions' limit: 256 KiB)."""
    sizes = [0]
    for event in result.history:
        for details in event.values():
            if isinstance(details, dict):
                sizes += [
                    len(details[k].encode()) for k in ("input", "output") if isinstance(details.get(k), str)
                ]
    return max(sizes)


def run_ok(wf: Any, console: dict[str, Any], photo: str = "inputs/model.png") -> tuple[Any, dict[str, Any]]:
    """Run a console input on ``photo``; it must paint. (result, manifest)."""
    result = wf.run({"image": f"s3://{wf.input_bucket}/{photo}", **console}, timeout=DEADLINE_S)
    assert result.succeeded and result.output["status"] == "succeeded", (result.error, result.cause)
    return result, wf.read_json(result.output["manifest"])
