"""The content policy (tryon.core.content_policy): text rules, labels, settings, refusals, version."""

from __future__ import annotations

import json

import pytest

from tryon.core import content_policy as cp
from tryon.core.content_policy import ContentRefused, Label, ModerationConfig


def refusal(check, text):
    with pytest.raises(ContentRefused) as caught:
        check(text)
    return caught.value


@pytest.mark.parametrize(
    "prompt",
    [
        "a nude woman",
        "NAKED man on a beach",
        "topless model",
        "n u d e",  # spaced out
        "a n u d e woman",  # spaced out after a one-letter word
        "n.u.d.e photo",
        "nud3 body",  # look-alike digits
        "Nüde",  # accents
        "a woman without a shirt",
        "take off all of her red shirt",
        "remove the dress",
        "no clothes",
        "wearing nothing but a smile",
        "nsfw",
        "an underage girl",
    ],
)
def test_prompts_asking_for_nudity_or_undressing_are_refused_naming_the_field(prompt):
    exc = refusal(cp.check_prompt, prompt)
    assert exc.field == "prompt" and exc.stage == "prompt" and exc.policy_version == cp.POLICY_VERSION
    assert str(exc).startswith("prompt: ") and cp.POLICY_VERSION in str(exc)


@pytest.mark.parametrize(
    "prompt",
    [
        "a photo of a person wearing the garment",
        "a red plaid flannel shirt",
        "a summer dress, no jacket",  # "no" before a garment that is not the covering layer
        "a dress without sleeves",
        "remove wrinkles from the shirt",
        "a sexy red dress",
        "unisex hoodie",
        "sheer chiffon blouse",
        "a bikini, studio photo",  # a swimwear shop paints swimwear
        "a child wearing a yellow raincoat",
        "café",
        "",
        None,
    ],
)
def test_ordinary_garment_prompts_pass(prompt):
    cp.check_prompt(prompt)


def test_negative_prompts_may_avoid_nudity_but_not_clothing():
    cp.check_negative_prompt("nsfw, nude, naked, blurry, low quality")  # the usual safety practice
    for text in ("clothes", "blurry, clothing", "censored", "bra, underwear"):
        exc = refusal(cp.check_negative_prompt, text)
        assert exc.field == "negative_prompt" and "away from clothing" in str(exc)


@pytest.mark.parametrize(
    "name", ["deepNudeLoRA", "nsfw_mix", "NSFWmix", "s3://b/adapters/nudify-v2/", "x-x-x"]
)
def test_adapter_names_holding_deny_terms_are_refused(name):
    assert refusal(cp.check_adapter, name).field == "adapter"


@pytest.mark.parametrize("name", ["garment-a", "summer-dress", "s3://b/adapters/denim-jacket/", "lora-b"])
def test_adapter_names_of_garments_pass(name):
    cp.check_adapter(name)


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("skin", "skin or a body region"),
        ("bare chest", "skin or a body region"),
        ("her torso", "skin or a body region"),
        ("legs", "names no garment"),
        ("a person", "names no garment"),
    ],
)
def test_mask_queries_must_name_a_garment_not_skin(query, why):
    exc = refusal(cp.check_query, query)
    assert exc.field == "query" and why in str(exc)


@pytest.mark.parametrize(
    "query",
    [
        "a shirt",
        "an orange space suit",
        "upper body clothes",
        "pants or a skirt",
        "boots",
        "knitwear",
        "the garment",
    ],
)
def test_mask_queries_naming_garments_pass(query):
    cp.check_query(query)


def test_every_garment_class_query_passes_the_region_rule():
    from tryon.workflow.params import GARMENT_CLASSES

    for name, preset in GARMENT_CLASSES.items():
        cp.check_query(preset["query"], label=f"{name}.")


def test_every_text_job_parameter_has_a_rule_or_a_reason_for_none():
    """The schema's rows name each text parameter's rule: a new one cannot slip past the policy."""
    from tryon.core import schema

    for row in schema.PARAMS:
        if row.type in ("str", "str_list"):
            assert row.policy in cp.TEXT_RULES or (
                row.policy.startswith(cp.EXEMPT) and len(row.policy) > len(cp.EXEMPT) + 10
            ), f"{row.name}: give its schema row a policy (a rule of TEXT_RULES, or 'exempt: <why>')"
        else:
            assert not row.policy, f"{row.name}: only text parameters have a content policy"
    assert sorted(set(cp.policy_fields().values())) == sorted(cp.TEXT_RULES)  # every rule is used


def test_job_text_checks_every_field_and_skips_the_query_for_drawn_masks():
    base = {"prompt": "a shirt", "negative_prompt": "blurry", "adapter": None, "query": "a shirt"}
    cp.check_job_text(base)
    assert refusal(lambda v: cp.check_job_text(base | {"adapter": v}), "nsfw-mix").field == "adapter"
    assert refusal(lambda v: cp.check_job_text(base | {"query": v}), "skin").field == "query"
    cp.check_job_text(base | {"query": "skin"}, mask_mode="box")  # a box or a painted mask: no query used
    # ... but something must say a garment goes there: the prompt, a class, a packshot or an adapter
    drawn = base | {"prompt": "a photo of a person"}
    for mode in ("image", "box"):
        assert (
            refusal(lambda v, m=mode: cp.check_job_text(drawn | {"prompt": v}, mask_mode=m), "a person").field
            == "prompt"
        )
    cp.check_job_text(drawn | {"garment_class": "upper-body"}, mask_mode="image")
    cp.check_job_text(drawn | {"adapter": "garment-a"}, mask_mode="box")
    cp.check_job_text(base | {"prompt": "a photo of a person wearing the garment"}, mask_mode="box")
    assert set(cp.MASK_MODE_RULES) == {"text", "class", "image", "box"}
    with pytest.raises(ContentRefused, match=r"^upper\.prompt: "):
        cp.check_job_text(base | {"prompt": "topless"}, label="upper.")


# ---------------------------------------------------------------------------- labels


def labels(*named):
    return [Label(name, (cp.ancestors(name) or [""])[0], conf) for name, conf in named]


DEFAULT = ModerationConfig()


def test_a_label_under_a_blocked_category_blocks():
    found = labels(("Explicit", 97.0), ("Explicit Nudity", 97.0), ("Exposed Female Nipple", 96.0))
    assert [label.name for label in cp.blocking_labels(found, DEFAULT)] == [
        "Explicit",
        "Explicit Nudity",
        "Exposed Female Nipple",
    ]


def test_swimwear_passes_by_default_and_blocks_when_a_stack_adds_it():
    found = labels(("Swimwear or Underwear", 88.0), ("Female Swimwear or Underwear", 88.0))
    assert cp.blocking_labels(found, DEFAULT) == []
    strict = ModerationConfig(categories=(*cp.DEFAULT_CATEGORIES, "Swimwear or Underwear"))
    assert len(cp.blocking_labels(found, strict)) == 2


def test_min_confidence_ignores_weaker_labels():
    found = labels(("Explicit Nudity", 55.0))
    assert cp.blocking_labels(found, DEFAULT)
    assert cp.blocking_labels(found, ModerationConfig(min_confidence=60.0)) == []


def test_an_allowed_label_excuses_itself_and_the_parents_returned_only_for_it():
    nude = "Non-Explicit Nudity"
    found = labels(
        ("Non-Explicit Nudity of Intimate parts and Kissing", 80.0), (nude, 80.0), ("Bare Back", 80.0)
    )
    assert cp.blocking_labels(found, DEFAULT)  # "Bare Back" is under the blocked "Non-Explicit Nudity"
    backless = ModerationConfig(allowed_labels=("Bare Back",))
    assert cp.blocking_labels(found, backless) == []
    # another label under the same parent still blocks, and so does the parent
    worse = [*found, *labels(("Implied Nudity", 80.0))]
    assert {label.name for label in cp.blocking_labels(worse, backless)} == {nude, "Implied Nudity"}
    # a parent returned with no child is not excused by an allowed child it does not show
    assert cp.blocking_labels(labels((nude, 80.0)), backless)


def test_the_taxonomy_knows_each_default_category_and_its_parents():
    assert set(cp.DEFAULT_CATEGORIES) <= cp.LABEL_NAMES
    assert cp.ancestors("Exposed Male Nipple") == [
        "Non-Explicit Nudity",
        "Non-Explicit Nudity of Intimate parts and Kissing",
    ]
    assert cp.ancestors("Explicit") == []
    assert Label("Bare Back", "Non-Explicit Nudity", 80.0).to_rekognition()["TaxonomyLevel"] == 3


# ---------------------------------------------------------------------------- settings


def test_settings_default_to_moderation_on_with_the_default_categories():
    config = cp.parse_config({})
    assert config.enabled and config.categories == cp.DEFAULT_CATEGORIES and config.min_confidence == 50.0
    assert config.as_dict()["policy_version"] == cp.POLICY_VERSION
    assert ModerationConfig.from_dict(config.as_dict()) == config


def test_turning_moderation_off_needs_a_reason():
    with pytest.raises(cp.RequestError, match=r"^ContentModerationOffReason: is required"):
        cp.parse_config({"TRYON_MODERATION": "off"})
    off = cp.parse_config(
        {"TRYON_MODERATION": "off", "TRYON_MODERATION_OFF_REASON": "studio photos, reviewed"}
    )
    assert not off.enabled and off.off_reason == "studio photos, reviewed"


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"TRYON_MODERATION": "maybe"}, "ContentModeration"),
        ({"TRYON_MODERATION_CATEGORIES": "Explicit,Explict"}, "ModerationCategories"),
        ({"TRYON_MODERATION_CATEGORIES": ""}, "ModerationCategories"),
        ({"TRYON_MODERATION_ALLOWED_LABELS": "Bare back"}, "ModerationAllowedLabels"),
        ({"TRYON_MODERATION_MIN_CONFIDENCE": "101"}, "ModerationMinConfidence"),
        ({"TRYON_MODERATION_MIN_CONFIDENCE": "high"}, "ModerationMinConfidence"),
    ],
)
def test_bad_settings_name_the_template_parameter(env, field):
    with pytest.raises(cp.RequestError) as caught:
        cp.parse_config(env)
    assert caught.value.field == field


# ---------------------------------------------------------------------------- refusals and version


def test_a_refusal_travels_through_a_lambda_error_message_and_back():
    refused = ContentRefused(
        "inpainted-0.png",
        "the result shows Explicit Nudity 97%",
        stage="output",
        labels=labels(("Explicit Nudity", 97.0)),
        images=[{"name": "inpainted-0.png", "quarantine": "s3://out/quarantine/j/inpainted-0.png"}],
    )
    text, details = cp.parse_error_message(refused.error_message())
    assert text == "inpainted-0.png: the result shows Explicit Nudity 97%"
    assert details == json.loads(json.dumps(refused.details()))
    assert details["stage"] == "output" and details["policy_version"] == cp.POLICY_VERSION
    assert details["categories"] == [
        {"name": "Explicit Nudity", "parent": "Explicit", "confidence": 97.0, "level": None}
    ]
    assert cp.parse_error_message("image: bad") == ("image: bad", None)


def test_the_policy_version_changes_with_the_policy():
    """Changing a rule or a table without a new POLICY_VERSION (and its digest) fails here."""
    versions = list(cp.POLICY_HISTORY)
    assert versions[-1] == cp.POLICY_VERSION, "the current version is the newest of the history"
    assert cp.POLICY_HISTORY[cp.POLICY_VERSION] == cp.policy_digest(), (
        f"the policy changed: add a new POLICY_VERSION with digest {cp.policy_digest()} to POLICY_HISTORY"
    )
    assert len(set(cp.POLICY_HISTORY.values())) == len(versions)
