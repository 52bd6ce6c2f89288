"""An outfit on asynchronous endpoints (its own stack): one SegmentAsync for every garment's CLIPSeg
request, one InpaintAsync per pass, each pass only inside its mask."""

from __future__ import annotations

import pytest
from support.outfits import PHOTO, changed, mask_of, outfit_stack, photo_pixels, pixels, run_ok
from support.workflow import ASYNC_FAST

pytestmark = pytest.mark.slow


def test_an_outfit_on_asynchronous_endpoints(tiny_models, tmp_path_factory, one_torch_thread):
    modes = {"clipseg": "async", "sd_inpaint": "async"}
    with outfit_stack(
        tiny_models, tmp_path_factory, parameters=ASYNC_FAST, modes=modes, stack_name="tryon-outfit-async"
    ) as wf:
        wf.upload(PHOTO, "inputs/model.png")
        console = {
            "num_images": 2,
            "negative_queries": [],
            "garments": [
                {"garment_class": "upper-body", "mask_box": "0,0,1,0.5", "adapter": "garment-a"},
                {"garment_class": "lower-body", "query": "jeans", "mask_box": "0,0.5,1,1"},
                {"garment_class": "footwear", "mask_mode": "box", "mask_box": "0,0.9,1,1"},
            ],
        }
        result, manifest = run_ok(wf, console)
        states = result.states()
        assert states.count("SegmentAsync") == 1 and states.count("InpaintAsync") == 3
        assert "Segment" not in states and "Inpaint" not in states
        assert [g["status"] for g in manifest["garments"]] == ["painted"] * 3
        assert [len(g["outputs"]) for g in manifest["garments"]] == [2, 2, 2]
        assert manifest["garments"][0]["mask"]["clipseg"]["role"] == "garment"
        final = pixels(wf, manifest["outputs"]["inpainted"][1])
        assert not changed(photo_pixels(), final)[~mask_of(wf, manifest["outputs"]["mask"])].any()
