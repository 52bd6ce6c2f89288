"""Outfits without models: the <class>.<name> convention, garment layers, pass order, refusals."""

from __future__ import annotations

import re

import pytest

from tryon.core.errors import RequestError
from tryon.workflow import garment_keys, outfit, params


def _resolve(console=None, garments=None, metadata=None, metadata_garments=None, preset=None):
    return outfit.resolve_outfit(
        defaults=params.template_defaults({}),
        preset_table=params.presets({}),
        preset=preset,
        metadata=metadata or {},
        console=params.validate_layer(console or {}, "input"),
        metadata_garments=metadata_garments,
        console_garments=outfit.console_garments(garments) if garments is not None else None,
    )


def test_a_job_without_garments_is_one_garment_of_its_own_parameters():
    resolved = _resolve({"query": "a skirt", "prompt": "red"})
    assert not resolved.outfit and len(resolved.garments) == 1
    [garment] = resolved.garments
    assert (garment.name, garment.mode, garment.label, garment.garment_class) == ("", "text", "", None)
    assert garment.params["query"] == "a skirt" and resolved.params["prompt"] == "red"
    # nothing new set: the job id hashes exactly what it always did
    assert resolved.id_params() == resolved.params
    assert all(
        resolved.params[name] is None for name in ("mask_mode", "garment_class", "mask_box", "mask_image")
    )


def test_a_lone_garment_class_is_class_mode_with_the_class_layer_below_the_presets():
    resolved = _resolve({"garment_class": "lower"}, preset="draft")
    [garment] = resolved.garments
    assert garment.mode == "class" and garment.garment_class == "lower-body" and garment.name == ""
    assert resolved.params["query"] == params.GARMENT_CLASSES["lower-body"]["query"]
    assert resolved.params["garment_class"] == "lower-body" and resolved.params["steps"] == 15
    # a later layer replaces what the class set (negative_queries [] keeps nothing out)
    mine = _resolve({"garment_class": "lower-body", "negative_queries": []})
    assert mine.params["negative_queries"] == [] and mine.params["query"] == "pants or a skirt"


def test_garments_run_in_the_order_they_are_worn_whatever_the_order_given():
    resolved = _resolve(
        {"prompt": "job prompt", "steps": 7},
        [
            {"garment_class": "footwear", "adapter": "boots"},
            {"garment_class": "upper", "prompt": "a silk blouse", "garment_scale": 0.8},
            {"garment_class": "lower-body", "mask_mode": "box", "mask_box": "0,0.5,1,1"},
        ],
    )
    assert resolved.outfit
    assert [g.garment_class for g in resolved.garments] == ["lower-body", "upper-body", "footwear"]
    assert [g.index for g in resolved.garments] == [0, 1, 2]
    assert [g.name for g in resolved.garments] == ["lower-body", "upper-body", "footwear"]
    lower, upper, shoes = resolved.garments
    assert (lower.mode, upper.mode, shoes.mode) == ("box", "class", "class")
    # job-level values are every garment's default; a garment's own win
    assert upper.params["prompt"] == "a silk blouse" and lower.params["prompt"] == "job prompt"
    assert {g.params["steps"] for g in resolved.garments} == {7}
    assert shoes.params["adapter"] == "boots" and upper.params["adapter"] is None
    # each garment's class layer: its own query and keep-regions
    assert shoes.params["query"] == "shoes" and shoes.params["dilate"] == 4
    assert "face" in upper.params["negative_queries"] and "pants" in upper.params["negative_queries"]
    # the job id covers every garment
    ids = resolved.id_params()
    assert [g["garment_class"] for g in ids["garments"]] == ["lower-body", "upper-body", "footwear"]
    assert ids["garments"][1]["garment_scale"] == 0.8


def test_the_job_id_changes_with_any_garment():
    from tryon.workflow.jobid import job_id_for

    base = [{"garment_class": "upper-body"}, {"garment_class": "lower-body", "adapter": "jeans"}]
    changed = [{"garment_class": "upper-body"}, {"garment_class": "lower-body", "adapter": "chinos"}]
    swapped = list(reversed(base))

    def job_id(garments):
        return job_id_for("b", "inputs/p.jpg", "v1", _resolve(garments=garments).id_params())

    assert job_id(base) != job_id(changed)
    assert job_id(base) == job_id(swapped)  # the listing order does not matter: the pass order does


def test_metadata_garments_lie_below_console_garments_of_the_same_class():
    metadata = {"x-amz-meta-lower-body.adapter": "jeans", "upper.prompt": "a tee", "lower-body.steps": "9"}
    from_metadata = outfit.metadata_garments(metadata)
    assert from_metadata == {
        "lower-body": {"adapter": "jeans", "steps": 9},
        "upper-body": {"prompt": "a tee"},
    }
    resolved = _resolve(
        garments=[{"garment_class": "lower-body", "adapter": "chinos"}], metadata_garments=from_metadata
    )
    lower, upper = resolved.garments
    assert (
        lower.params["adapter"] == "chinos"
        and lower.params["steps"] == 9
        and upper.params["prompt"] == "a tee"
    )
    # the job-level metadata reader leaves garment keys alone (they are not "ignored")
    values, _, ignored = params.metadata_overrides({**metadata, "x-amz-meta-other-tool": "x"})
    assert values == {} and ignored == ["x-amz-meta-other-tool"]


def test_split_flat_reads_class_prefixed_columns():
    job, garments = garment_keys.split_flat(
        {"prompt": "p", "upper.garment_image": "s3://b/garments/t.png", "Lower-Body.mask-box": "0,0,1,1"}
    )
    assert job == {"prompt": "p"}
    assert garments == {
        "upper-body": {"garment_image": "s3://b/garments/t.png"},
        "lower-body": {"mask_box": "0,0,1,1"},
    }
    assert garment_keys.to_flat([{"garment_class": "upper", "adapter": "a"}]) == {"upper-body.adapter": "a"}


@pytest.mark.parametrize(
    ("flat", "field", "message"),
    [
        ({"hat.adapter": "a"}, "hat.adapter (from batch)", "unknown garment class 'hat'"),
        ({"upper.num_images": "2"}, "upper.num_images (from batch)", "not a garment parameter"),
        ({"upper.garment_class": "dress"}, "upper.garment_class (from batch)", "the class is the prefix"),
    ],
)
def test_split_flat_refusals_name_the_key(flat, field, message):
    with pytest.raises(RequestError, match=message) as caught:
        garment_keys.split_flat(flat, "batch")
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("garments", "console", "field", "message"),
    [
        ([{"garment_class": c} for c in ("upper-body", "lower-body", "footwear", "dress")], {}, "garments",
         "has 4 garments; the limit is 3"),
        ([{"garment_class": "hat"}], {}, "garments[0].garment_class", "unknown garment class 'hat'"),
        ([{"garment_class": "upper-body"}, {"adapter": "a"}], {}, "garments[1].garment_class",
         "is required in an outfit of several garments"),
        ([{"garment_class": "upper-body"}, {"garment_class": "upper"}], {}, "garments[1].garment_class",
         "also garments[0]'s class"),
        ([{"garment_class": "upper-body", "num_images": 2}], {}, "garments[0]",
         "num_images belong(s) to the job"),
        ([{"garment_class": "upper-body", "mask_box": "0,0,1"}], {}, "upper-body.mask_box", "four numbers"),
        ([{"garment_class": "upper-body", "steps": 900}], {}, "upper-body.steps", "must be <= 150"),
        ([{"garment_class": "lower-body", "mask_mode": "image"}], {}, "lower-body.mask_image",
         "is required with mask_mode image"),
        ([{"garment_class": "lower-body", "mask_mode": "box"}], {}, "lower-body.mask_box",
         "is required with mask_mode box"),
        ([{"garment_class": "lower-body"}, {"garment_class": "upper-body"}], {"mask_box": "0,0,1,1"},
         "mask_box", "belongs to one garment of an outfit"),
        ([{"garment_class": "upper-body"}], {"mask_image": "s3://b/masks/m.png"}, "mask_image",
         "belongs to one garment of an outfit"),
        ("upper-body", {}, "garments", "must be a list"),
        ([], {}, "garments", "must be a list of 1..3"),
        (["upper-body"], {}, "garments[0]", "must be an object"),
    ],
)  # fmt: skip
def test_outfit_refusals_name_the_garment_and_the_field(garments, console, field, message):
    with pytest.raises(RequestError, match=re.escape(message)) as caught:
        _resolve(console, garments)
    assert caught.value.field == field


def test_a_single_garment_list_is_an_outfit_of_one():
    resolved = _resolve(garments=[{"query": "a scarf"}])
    [garment] = resolved.garments
    assert resolved.outfit and garment.name == "garment" and garment.label == "garments[0]."
    assert garment.mode == "text" and garment.params["query"] == "a scarf"


def test_to_metadata_spells_garments_with_their_class_and_reads_back():
    overrides = {"num_images": 2, "upper.prompt": "a silk blouse", "lower-body.mask_box": "0,0.5,1,1"}
    metadata = params.to_metadata(overrides)
    assert metadata == {
        "num-images": "2",
        "upper-body.prompt": "a silk blouse",
        "lower-body.mask-box": "0,0.5,1,1",
    }
    values, _, ignored = params.metadata_overrides(metadata)
    assert values == {"num_images": 2} and ignored == []
    assert outfit.metadata_garments(metadata) == {
        "upper-body": {"prompt": "a silk blouse"},
        "lower-body": {"mask_box": "0,0.5,1,1"},
    }
    with pytest.raises(RequestError, match="four numbers") as caught:
        params.to_metadata({"lower.mask_box": "0,1"})
    assert caught.value.field == "lower-body.mask_box (from metadata)"


def test_to_metadata_refuses_more_than_s3_keeps():
    three_prompts = {f"{cls}.prompt": "x" * 700 for cls in ("upper", "lower", "shoes")}
    with pytest.raises(RequestError, match="S3 allows 2048") as caught:
        params.to_metadata(three_prompts)
    assert caught.value.field == "metadata"


def _docs_block(page: str, after: str, lang: str) -> str:
    """The first ``lang`` code block after the line ``after`` in ``docs/<page>``."""
    from support.paths import REPO

    text = (REPO / "docs" / page).read_text()
    start = text.index(f"```{lang}\n", text.index(after)) + len(lang) + 4
    return text[start : text.index("```", start)]


def test_the_docs_outfit_console_input_is_what_prepare_reads():
    import json

    from tryon.workflow import job

    example = json.loads(_docs_block("workflow.md", "## Outfits", "json").replace("<input-bucket>", "in"))
    trigger = job.parse_trigger(example)
    resolved = _resolve(trigger.overrides, example["garments"])
    assert [g.garment_class for g in resolved.garments] == ["lower-body", "upper-body"]
    assert [g.mode for g in resolved.garments] == ["box", "class"]


def test_the_docs_outfit_columns_are_what_a_batch_reads():
    from tryon.workflow import batch_manifest as bm

    text = _docs_block("batches.md", "### Outfits", "csv").replace("<input-bucket>", "in")
    rows = [bm.row_console_input(row, "in", "inputs/") for row in bm.parse_manifest(text.encode(), "o.csv")]
    assert [[g["garment_class"] for g in r.get("garments", [])] for r in rows] == [
        ["lower-body", "upper-body"],
        ["lower-body"],
        [],
    ]
    assert rows[0]["garments"][0] == {
        "garment_class": "lower-body",
        "adapter": "jeans-0412",
        "mask_mode": "box",
        "mask_box": "0,0.5,1,1",
    }
