"""Each endpoint step's requests, and how their answers become the step's result (light: no Pillow).

The real-time path (:func:`tryon.workflow.steps.run_realtime`) and the asynchronous one
(:mod:`tryon.workflow.async_calls`, :mod:`tryon.workflow.async_completion`) both use these, so
a step has one definition (:data:`tryon.workflow.steps.STEP_CALLS`).

- **Segment** sends one request per garment that asks CLIPSeg
  (:attr:`tryon.workflow.state.OutfitGarment.segment`), all on the original photo: the garment's
  query minus its keep-regions, or (box, painted mask) only its keep-regions. A lone job in
  text or class mode sends exactly the request it always did and its mask is final.
- **Inpaint** runs once per garment whose mask is not empty, in pass order; each run is one
  state entry (the ASL loops while ``$.inpaint.done`` is false). The first pass inpaints the
  photo (``num_images`` images in one request); each later pass inpaints each image of the
  previous pass (one request per image, seed + i), inside its own mask. The last pass writes
  ``inpainted-<i>.png``; earlier passes ``inpainted-<garment>-<i>.png``.
- **Upscale** sends one request per final image (same seed as its inpainting).

Only keys and small JSON travel; the endpoints read and write S3 themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tryon.core import schema
from tryon.core.contract import COMPUTE_SECONDS, MAX_SEED
from tryon.core.s3uri import s3_uri
from tryon.workflow import layout, params
from tryon.workflow.state import (
    GarmentMask,
    InpaintInput,
    InpaintResult,
    Job,
    OutfitGarment,
    PassResult,
    SegmentInput,
    SegmentResult,
    UpscaleInput,
    UpscaleResult,
)
from tryon.workflow.step_errors import EndpointUnavailable


def input_uri(job: Job) -> str:
    """The upload as the endpoints read it: the object version the job was prepared from."""
    inp = job["input"]
    return s3_uri(inp["bucket"], inp["key"], inp.get("version_id"))


def output_prefix(job: Job) -> str:
    """``s3://<output-bucket>/<pending prefix>``: where the endpoints write this job's images.

    Not the result prefix: nothing reaches it before moderation passed it and Finalize
    published it (:mod:`tryon.workflow.moderate`, :mod:`tryon.workflow.publish`).
    """
    return s3_uri(job["output"]["bucket"], job["output"]["pending_prefix"])


def written_keys(result: Mapping[str, Any], *, endpoint: str, job: Job, count: int) -> list[str]:
    """Keys of the images the endpoint wrote, checked to lie under the job's pending prefix."""
    outputs = result.get("outputs")
    out = job["output"]
    if not isinstance(outputs, list) or len(outputs) != count:
        raise EndpointUnavailable(
            f"endpoint {endpoint} reported {outputs!r} instead of {count} written image(s)"
        )
    keys = [o.get("key") if isinstance(o, Mapping) else None for o in outputs]
    if not all(isinstance(k, str) and k.startswith(out["pending_prefix"]) for k in keys):
        raise EndpointUnavailable(f"endpoint {endpoint} wrote outside {output_prefix(job)}: {keys!r}")
    return keys


def control_report(result: Mapping[str, Any], *, endpoint: str, job: Job, values: Mapping[str, Any]) -> Any:
    """The endpoint's ``controls`` report (keep_body), each control image checked to lie under the
    pending prefix; ``values`` are the pass's parameters."""
    reported = result.get("controls")
    kept = params.kept_controls(values)
    if not kept:
        return reported  # None: keep_body unset or none
    written = (
        [(reported.get(c) or {}).get("output") for c in kept] if isinstance(reported, Mapping) else [None]
    )
    keys = [w.get("key") if isinstance(w, Mapping) else None for w in written]
    if not all(isinstance(k, str) and k.startswith(job["output"]["pending_prefix"]) for k in keys):
        raise EndpointUnavailable(
            f"endpoint {endpoint} reported controls {reported!r} instead of the {'+'.join(kept)} "
            f"control image(s) written under {output_prefix(job)}"
        )
    return reported


def _stem(key: str) -> str:
    """``mask`` of ``results/x/<id>/mask.png``: the file stem an endpoint is asked to write."""
    return key.rsplit("/", 1)[-1].removesuffix(".png")


def _segmented(job: Job) -> list[OutfitGarment]:
    return [g for g in job["garments"] if g["segment"]]


# --------------------------------------------------------------------------------- Segment


def _ask_fields(garment: OutfitGarment) -> dict[str, Any]:
    """The garment's CLIPSeg fields by the schema's send rules; a keep-only ask sends its keep-regions
    as the queries (and nothing to subtract)."""
    fields = schema.request_fields("clipseg", garment["params"])
    ask = garment["segment"]
    assert ask is not None
    if ask["role"] == "keep":
        del fields["query"]
        fields.update(queries=ask["queries"], negative_queries=[])
    return fields


def segment_requests(state: SegmentInput) -> list[dict[str, Any]]:
    """One CLIPSeg request per garment that asks CLIPSeg, on the original photo."""
    job = state["job"]
    return [
        {
            "image": input_uri(job),
            **_ask_fields(garment),
            "output": output_prefix(job),
            "output_name": _stem(garment["files"]["clipseg"] or garment["files"]["mask"]),
        }
        for garment in _segmented(job)
    ]


def compute_seconds(results: list[Mapping[str, Any]]) -> float:
    """The instance time a step's endpoint calls took: their answers' ``compute_seconds``, summed."""
    return round(sum(float(result.get(COMPUTE_SECONDS) or 0.0) for result in results), 3)


def segment_result(state: SegmentInput, results: list[dict[str, Any]], elapsed_ms: float) -> SegmentResult:
    """Each garment's CLIPSeg mask; for a lone text or class job (nothing to compose) the job's mask."""
    job = state["job"]
    endpoint = job["endpoints"]["clipseg"]
    garments: list[GarmentMask] = []
    for garment, result in zip(_segmented(job), results, strict=True):
        [key] = written_keys(result, endpoint=endpoint, job=job, count=1)
        coverage = float(result.get("coverage", 0.0))
        ask = garment["segment"]
        garments.append(
            {
                "name": garment["name"],
                "mask_key": key,
                "coverage": coverage,
                "empty": coverage <= garment["params"]["min_coverage"],
                "clipseg": {
                    "role": ask["role"] if ask else "garment",
                    "scores": result.get("scores", {}),
                    "compute_seconds": compute_seconds([result]),
                },
            }
        )
    first, first_result = garments[0], results[0]
    return {
        "mask_key": first["mask_key"],
        "coverage": first["coverage"],
        # composed masks are judged by the Masks state; a lone CLIPSeg mask here
        "empty": first["empty"] and not job["compose_masks"],
        "garments": garments,
        "composed": False,
        "scores": first_result.get("scores", {}),
        "model": results[-1].get("model"),
        "timings_ms": first_result.get("timings_ms", {}),
        "elapsed_ms": elapsed_ms,
        "compute_seconds": compute_seconds(results),
    }


# --------------------------------------------------------------------------------- Inpaint


def _masks(state: InpaintInput) -> dict[str, GarmentMask]:
    return {mask["name"]: mask for mask in state["segment"]["garments"]}


def remaining(job: Job, segment: SegmentResult, passes: list[PassResult]) -> list[OutfitGarment]:
    """The garments whose pass is still to run, in pass order (empty masks are skipped)."""
    masks = {mask["name"]: mask for mask in segment["garments"]}
    done = {p["index"] for p in passes}
    return [g for g in job["garments"] if g["index"] not in done and not masks[g["name"]]["empty"]]


def _pass_request(job: Job, garment: OutfitGarment, mask_key: str) -> dict[str, Any]:
    """What every request of a garment's pass carries: the inpainting fields of its own parameters
    over the job's, by the schema's send rules (an optional one, such as the SDXL refiner's, only
    when set, so an SD 2 endpoint is never sent a field it would refuse)."""
    fields = schema.request_fields("sd_inpaint", {**job["params"], **garment["params"]})
    return {"mask": s3_uri(job["output"]["bucket"], mask_key), **fields, "output": output_prefix(job)}


def inpaint_requests(state: InpaintInput) -> list[dict[str, Any]]:
    """The next pass's requests: the photo (``num_images`` in one), or each image of the previous pass."""
    job = state["job"]
    passes = state["inpaint"]["passes"]
    todo = remaining(job, state["segment"], passes)
    if not todo:
        raise EndpointUnavailable("no garment's pass is left to run")  # the ASL loops only while one is
    garment = todo[0]
    base = _pass_request(job, garment, _masks(state)[garment["name"]]["mask_key"])
    stem, count, seed = (
        garment["files"]["output_stem"],
        job["params"]["num_images"],
        garment["params"]["seed"],
    )
    if not passes:  # the first pass paints the photo
        return [{"image": input_uri(job), **base, "num_images": count, "seed": seed, "output_name": stem}]
    out = job["output"]
    previous = state["inpaint"]["keys"]  # type: ignore[typeddict-item]
    return [
        {
            "image": s3_uri(out["bucket"], key),
            **base,
            "num_images": 1,
            "seed": (seed + i) % (MAX_SEED + 1),
            "output_name": stem if len(previous) == 1 else f"{stem}-{i}",
        }
        for i, key in enumerate(previous)
    ]


def inpaint_result(state: InpaintInput, results: list[dict[str, Any]], elapsed_ms: float) -> InpaintResult:
    """The passes so far with this one added; the images so far are this pass's."""
    job = state["job"]
    before = state["inpaint"]["passes"]
    garment = remaining(job, state["segment"], before)[0]
    endpoint = job["endpoints"]["sd_inpaint"]
    per_request = job["params"]["num_images"] if not before else 1
    keys: list[str] = []
    seeds: list[int] = []
    for result in results:
        keys += written_keys(result, endpoint=endpoint, job=job, count=per_request)
        seeds += list(result.get("seeds", []))
    first = results[0]
    values = {**job["params"], **garment["params"]}
    this: PassResult = {
        "garment": garment["name"],
        "index": garment["index"],
        "keys": keys,
        "seeds": seeds,
        "adapter": first.get("adapter"),
        "packshot": first.get("garment"),
        "refiner": first.get("refiner"),
        # keep_body: what the endpoint kept and its control images (the first request's)
        "controls": control_report(first, endpoint=endpoint, job=job, values=values),
        "crop_box": first.get("crop_box"),
        "model": first.get("model"),
        "timings_ms": [result.get("timings_ms", {}) for result in results],
        "elapsed_ms": elapsed_ms,
        "compute_seconds": compute_seconds(results),
    }
    passes = [*before, this]
    return {
        "keys": keys,
        "seeds": seeds,
        "passes": passes,
        "done": not remaining(job, state["segment"], passes),
        "adapter": this["adapter"],
        "garment": this["packshot"],
        "refiner": this["refiner"],
        "controls": this["controls"],
        "crop_box": this["crop_box"],
        "model": this["model"],
        "timings_ms": first.get("timings_ms", {}),
        "elapsed_ms": round(sum(p["elapsed_ms"] for p in passes), 1),
        "compute_seconds": round(sum(p["compute_seconds"] for p in passes), 3),
    }


# --------------------------------------------------------------------------------- Upscale


def _upscale_seeds(state: UpscaleInput) -> list[int]:
    """The seed of each image: the one its inpainting used, else the job's."""
    seeds = state["inpaint"].get("seeds") or []
    keys = state["inpaint"]["keys"]
    return [seeds[i] if i < len(seeds) else state["job"]["params"]["seed"] for i in range(len(keys))]


def upscale_requests(state: UpscaleInput) -> list[dict[str, Any]]:
    """One x4 upscaler request per final image."""
    job = state["job"]
    out = job["output"]
    fields = schema.request_fields("sd_upscale", job["params"])
    return [
        {
            "image": s3_uri(out["bucket"], source_key),
            **fields,
            "seed": seed,  # each image's own: the one its inpainting used
            "output": output_prefix(job),
            "output_name": layout.upscaled_stem(i),
        }
        for i, (source_key, seed) in enumerate(
            zip(state["inpaint"]["keys"], _upscale_seeds(state), strict=True)
        )
    ]


def upscale_result(state: UpscaleInput, results: list[dict[str, Any]], elapsed_ms: float) -> UpscaleResult:
    """The upscaled images, one per request."""
    job = state["job"]
    endpoint = job["endpoints"]["sd_upscale"] or ""
    keys: list[str] = []
    for result in results:
        keys += written_keys(result, endpoint=endpoint, job=job, count=1)
    seeds = _upscale_seeds(state)
    return {
        "keys": keys,
        "seeds": [result.get("seed", seed) for result, seed in zip(results, seeds, strict=True)],
        "model": results[-1].get("model") if results else None,
        "timings_ms": [result.get("timings_ms", {}) for result in results],
        "elapsed_ms": elapsed_ms,
        "compute_seconds": compute_seconds(results),
    }
