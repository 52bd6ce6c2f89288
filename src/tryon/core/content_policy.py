"""The content policy: what a try-on job may ask for and which image labels refuse it (light).

One place, versioned (:data:`POLICY_VERSION`, recorded in every manifest and refusal):

- **Text rules** (:data:`TEXT_RULES`) for the job parameters that steer what is painted; each
  parameter's row in the schema (:data:`tryon.core.schema.PARAMS`, ``policy``) names its rule,
  or why none applies: a deny-list of terms asking for nudity or sexual content and a rule
  against removing clothing for ``prompt``; a rule against steering away from clothing for
  ``negative_prompt`` (a negative prompt of "clothes" paints skin); the deny-list, also inside
  run-together names, for ``adapter``; and the garment-not-skin rule for the mask's ``query``:
  it must name a garment (or worn item) and no skin or body region (per mask mode:
  :data:`MASK_MODE_RULES`).
- **Image labels**: Amazon Rekognition's moderation taxonomy (:data:`TAXONOMY`, version 7),
  the categories a stack blocks by default (:data:`DEFAULT_CATEGORIES`) and how a label set
  is judged (:func:`blocking_labels`): a label refuses when it or one of its ancestors is a
  blocked category, unless it is an allowed label (or every label under it that Rekognition
  returned is).
- **Stack settings** (:class:`ModerationConfig`): on or off (off needs a reason), categories,
  allowed labels and minimum confidence, from the template parameters.

A refusal is :class:`ContentRefused`: a :class:`~tryon.core.errors.RequestError` (it names the
field) with the stage (``prompt``, ``input``, ``output``), the labels that refused it and the
policy version; it travels through Step Functions as the Lambda error ``ContentRefused``.

Changing anything here changes :func:`policy_digest`: add a new version to
:data:`POLICY_HISTORY` (tests/unit/test_content_policy.py fails until you do). Standard library
only: Prepare, the Moderate function, the CLI and the local stand-in all use it.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from tryon.core.errors import RequestError

#: The policy version recorded in manifests, failure records and refusals.
POLICY_VERSION = "2026-12-07"
#: Every version this module has had -> :func:`policy_digest` of its rules (append-only).
POLICY_HISTORY: dict[str, str] = {
    "2026-12-07": "069f5bffbaeab741",
}

Stage = Literal["prompt", "input", "output"]
STAGES: tuple[Stage, ...] = ("prompt", "input", "output")
#: Where people read more (every refusal message points here).
DOCS = "docs/responsible-use.md"

# ---------------------------------------------------------------------------- text rules

#: Terms asking for nudity, sexual content or the sexualisation of minors. Matched as whole
#: words of the normalised text (case, accents, look-alike digits and spaced letters undone).
DENY_TERMS: tuple[str, ...] = (
    # nudity and undressing
    "nude", "nudes", "nudity", "naked", "nakedness", "topless", "bottomless", "unclothed",
    "undress", "undressed", "undressing", "disrobe", "disrobed", "disrobing", "nudify", "nudified",
    "nudifier", "deepnude", "undresser", "clothoff", "striptease", "stripper", "stripped", "stripping",
    "wearing nothing", "nothing underneath", "naked under", "bare breasts", "bare breast",
    "exposed breasts", "exposed breast", "bare chested", "bare chest", "x ray",
    # anatomy a garment never shows
    "nipple", "nipples", "areola", "areolas", "areolae", "genital", "genitals", "genitalia",
    "vagina", "vulva", "penis", "testicles", "pubic",
    # sexual content
    "porn", "porno", "pornography", "pornographic", "nsfw", "xxx", "hentai", "erotic", "erotica",
    "sex", "sexual", "intercourse", "orgasm", "lewd", "fetish",
    # minors (a children's garment is fine; these words never are)
    "underage", "loli", "lolicon", "shota", "shotacon", "preteen", "jailbait",
)  # fmt: skip
#: Run-together deny terms looked for inside adapter names (``deepNudeLoRA``, ``nsfw_mix``).
DENY_INSIDE_NAMES: tuple[str, ...] = (
    "nude", "naked", "nsfw", "porn", "undress", "nudif", "hentai", "topless", "clothoff", "xxx", "lewd",
)  # fmt: skip
#: Garments whose removal a prompt asks for (with :data:`REMOVAL_VERBS`).
COVERING_GARMENTS: tuple[str, ...] = (
    "clothes", "clothing", "garment", "garments", "outfit", "attire", "shirt", "shirts", "t shirt",
    "tshirt", "top", "tops", "blouse", "bra", "dress", "pants", "trousers", "jeans", "skirt", "shorts",
    "underwear", "panties", "bikini", "swimsuit", "jacket",
)  # fmt: skip
#: Verbs (and prepositions) that ask for a garment to go: "remove her shirt", "without clothes".
REMOVAL_VERBS: tuple[str, ...] = (
    "remove", "removes", "removed", "removing", "take off", "takes off", "taking off", "took off",
    "taken off", "pull off", "pulled off", "pull down", "pulled down", "strip", "strips", "strip off",
    "without", "minus",
)  # fmt: skip
#: Garments "no" may not precede ("no shirt"); "a dress, no jacket" stays fine.
NO_GARMENTS: tuple[str, ...] = (
    "clothes", "clothing", "garments", "shirt", "top", "bra", "underwear", "panties", "pants", "trousers",
)  # fmt: skip
#: Words a negative prompt may not hold: they steer the painting away from clothing, towards skin.
NEGATIVE_DENY: tuple[str, ...] = (
    "clothes", "clothing", "clothed", "dressed", "garment", "garments", "covered", "covering",
    "coverings", "attire", "apparel", "outfit", "outfits", "fabric", "bra", "underwear", "panties",
    "bikini", "swimsuit", "censored", "censor", "censorship", "mosaic",
)  # fmt: skip
#: Skin and body regions a mask query may not name: the mask goes over a garment, not a body.
BODY_TERMS: tuple[str, ...] = (
    "skin", "flesh", "bare", "naked", "nude", "nudity", "topless", "nipple", "nipples", "breast",
    "breasts", "cleavage", "chest", "torso", "belly", "stomach", "abdomen", "navel", "butt", "buttocks",
    "crotch", "groin", "thigh", "thighs", "genitals", "genitalia",
)  # fmt: skip
#: Words that name a garment or a worn item: a mask query needs one. Plurals ("-s", "-es") and
#: compounds ending in "wear" (knitwear, swimwear) count too.
GARMENT_TERMS: tuple[str, ...] = (
    # generic
    "clothes", "clothing", "garment", "outfit", "apparel", "attire", "costume", "uniform", "wear",
    "sleeve", "collar", "hood", "cuff", "hem", "lapel", "pocket",
    # tops
    "shirt", "tshirt", "tee", "top", "blouse", "tunic", "sweater", "jumper", "pullover", "hoodie",
    "sweatshirt", "cardigan", "polo", "tank", "camisole", "cami", "vest", "waistcoat", "turtleneck",
    "jersey", "bodysuit", "corset", "bustier", "halter", "knit",
    # outerwear and suits
    "jacket", "coat", "blazer", "parka", "anorak", "windbreaker", "raincoat", "trench", "overcoat",
    "poncho", "cape", "gilet", "puffer", "bomber", "suit", "tuxedo", "shacket", "fleece",
    # dresses and robes
    "dress", "gown", "sundress", "kaftan", "caftan", "kimono", "sari", "saree", "robe", "abaya",
    "dirndl", "qipao", "cheongsam", "hanbok", "lehenga", "dashiki",
    # bottoms and one-pieces
    "skirt", "pants", "trousers", "jeans", "denim", "shorts", "leggings", "joggers", "chinos", "slacks",
    "culottes", "sweatpants", "overalls", "overall", "dungarees", "capris", "jumpsuit", "romper",
    "playsuit", "onesie", "leotard", "kilt", "sarong",
    # swimwear, underwear, nightwear (a lingerie or swimwear shop paints these)
    "swimsuit", "bikini", "trunks", "underwear", "lingerie", "bra", "bralette", "boxers", "briefs",
    "panties", "pyjamas", "pajamas", "nightgown", "nightdress", "nightie",
    # footwear
    "shoe", "boot", "sneaker", "trainer", "sandal", "heel", "loafer", "pump", "slipper", "flats",
    "clog", "mule", "espadrille", "stiletto",
    # accessories worn
    "hat", "cap", "beanie", "beret", "scarf", "shawl", "stole", "glove", "mitten", "sock", "stocking",
    "tights", "tie", "bowtie", "belt", "bag", "handbag", "backpack", "sunglasses", "glasses", "headband",
    "bandana", "apron",
)  # fmt: skip

#: The text rules, by the name a schema row's ``policy`` gives (every text parameter has one, or
#: ``"exempt: <why>"``: tests/unit/test_content_policy.py checks the rows).
TEXT_RULES: dict[str, str] = {
    "prompt": "no term of the deny-list; no request to remove clothing",
    "negative_prompt": "no word steering away from clothing (clothes, garment, covered, censored, ...)",
    "adapter": "no term of the deny-list, also inside run-together names (nsfwMix, deep_nude)",
    "query": "names a garment or worn item, and no skin or body region (text and class mask modes)",
}
#: The prefix of a schema row's ``policy`` that says why no rule reads the parameter.
EXEMPT = "exempt: "


def policy_fields() -> dict[str, str]:
    """Job parameter -> the text rule its schema row names (the rows are the one place of this)."""
    from tryon.core import schema

    return {row.name: row.policy for row in schema.PARAMS if row.policy in TEXT_RULES}


def normalise(text: str) -> str:
    """Text as the rules read it: lower case words separated by single spaces.

    Undoes what hides a term from a word match: case, accents and compatibility forms
    (NFKC), camel case (``NudeLora`` -> ``nude lora``), look-alike digits and symbols
    (``n00d3`` -> ``nood e``, ``nud3`` -> ``nude``), and letters spaced out or dotted
    (``n u d e``, ``n.u.d.e`` -> ``nude``; ``a n u d e`` -> ``a nude``: a leading "a" or "i"
    stays a word).
    """
    text = unicodedata.normalize("NFKC", str(text))
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).casefold()
    text = text.translate(str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t",
                                         "@": "a", "$": "s", "!": "i", "|": "i"}))  # fmt: skip
    words = re.findall(r"[a-z]+", text)
    joined: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:  # runs of 3+ single letters are one spaced-out word
        if len(word) == 1:
            run.append(word)
            continue
        if len(run) >= 3:
            lead = run[:1] if run[0] in ("a", "i") and len(run) >= 4 else []
            joined.extend([*lead, "".join(run[len(lead) :])])
        else:
            joined.extend(run)
        run = []
        if word:
            joined.append(word)
    return " ".join(joined)


def _phrase_pattern(terms: Iterable[str]) -> re.Pattern[str]:
    alternatives = "|".join(sorted((re.escape(t) for t in terms), key=len, reverse=True))
    return re.compile(rf"(?<![a-z])(?:{alternatives})(?![a-z])")


_DENY = _phrase_pattern(DENY_TERMS)
_NEGATIVE = _phrase_pattern(NEGATIVE_DENY)
_BODY = _phrase_pattern(BODY_TERMS)
#: Words that may stand between a removal verb and the garment, besides one other word
#: ("take off all of her red shirt"); "remove wrinkles from the shirt" stays fine.
REMOVAL_FILLERS: tuple[str, ...] = (
    "the", "a", "an", "her", "his", "their", "my", "your", "its", "this", "that", "these", "those", "all",
    "any", "of", "some", "every",
)  # fmt: skip
_FILLER = rf"(?: (?:{'|'.join(REMOVAL_FILLERS)}))"
_REMOVAL = re.compile(
    rf"(?<![a-z])(?:{'|'.join(map(re.escape, REMOVAL_VERBS))}){_FILLER}{{0,3}}(?: [a-z]+)?{_FILLER}{{0,2}} "
    rf"(?:{'|'.join(map(re.escape, COVERING_GARMENTS))})(?![a-z])"
)
_NO_GARMENT = re.compile(rf"(?<![a-z])no (?:[a-z]+ )?(?:{'|'.join(map(re.escape, NO_GARMENTS))})(?![a-z])")
_GARMENT_WORDS = frozenset(GARMENT_TERMS)


def _names_garment(words: Sequence[str]) -> bool:
    """Whether a word names a garment: itself, its singular, or a compound ending in "wear"."""
    for word in words:
        stems = {word, word.removesuffix("s"), word.removesuffix("es")}
        if stems & _GARMENT_WORDS or (word.endswith("wear") and len(word) > 4):
            return True
    return False


def refused(field_name: str, reason: str, *, label: str = "") -> ContentRefused:
    """A prompt-stage refusal naming the field (``label`` prefixes it, e.g. an outfit's garment)."""
    return ContentRefused(
        f"{label}{field_name}",
        f"{reason}; refused by the content policy {POLICY_VERSION}: this service paints garments ({DOCS})",
        stage="prompt",
    )


def check_prompt(text: str | None, field_name: str = "prompt", *, label: str = "") -> None:
    """The deny-list and the removal rule (ContentRefused naming the field)."""
    if not text:
        return
    norm = normalise(text)
    if match := _DENY.search(norm):
        raise refused(field_name, f"{match.group(0)!r} asks for nudity or sexual content", label=label)
    if match := _REMOVAL.search(norm) or _NO_GARMENT.search(norm):
        raise refused(field_name, f"{match.group(0)!r} asks to remove clothing", label=label)


def check_negative_prompt(text: str | None, field_name: str = "negative_prompt", *, label: str = "") -> None:
    """No word steering the painting away from clothing (ContentRefused naming the field)."""
    if not text:
        return
    if match := _NEGATIVE.search(normalise(text)):
        raise refused(
            field_name,
            f"{match.group(0)!r} steers the painting away from clothing, towards skin "
            "(describe the garment in the prompt instead)",
            label=label,
        )


def check_adapter(name: str | None, field_name: str = "adapter", *, label: str = "") -> None:
    """The deny-list on an adapter's name or s3:// URI, also inside run-together words."""
    if not name:
        return
    norm = normalise(name)
    match = _DENY.search(norm)
    term = (
        match.group(0) if match else next((t for t in DENY_INSIDE_NAMES if t in norm.replace(" ", "")), None)
    )
    if term:
        raise refused(
            field_name, f"the adapter's name holds {term!r} (nudity or sexual content)", label=label
        )


def check_query(text: str | None, field_name: str = "query", *, label: str = "") -> None:
    """The garment-not-skin rule for a text mask query: a garment named, no skin or body region."""
    if text is None:
        return
    norm = normalise(text)
    if match := _BODY.search(norm) or _DENY.search(norm):
        raise refused(
            field_name,
            f"{match.group(0)!r} points the mask at skin or a body region, not a garment "
            "(name the garment, e.g. 'a shirt', or use a garment class)",
            label=label,
        )
    if not _names_garment(norm.split()):
        raise refused(
            field_name,
            f"{text!r} names no garment: the mask goes over a garment or worn item "
            "(e.g. 'a shirt', 'a denim jacket', 'boots'), or use a garment class",
            label=label,
        )


#: How the garment-not-skin rule reads each mask mode (what the mode knows of the region).
MASK_MODE_RULES: dict[str, str] = {
    "text": "the query must name a garment and no skin or body region",
    "class": "the garment class's own query (every class query passes the query rule)",
    "image": "a drawn mask: the prompt names a garment, or a garment class, packshot or adapter is given",
    "box": "a box the caller drew: the same as image",
}


def check_drawn_region(values: Mapping[str, Any], *, label: str = "") -> None:
    """For a mask the caller drew (no query says what is under it): something must name the garment."""
    if values.get("garment_class") or values.get("garment_image") or values.get("adapter"):
        return
    if not _names_garment(normalise(values.get("prompt") or "").split()):
        raise refused(
            "prompt",
            f"{values.get('prompt')!r} names no garment, and nothing else says what goes into the drawn "
            "mask (name the garment in the prompt, or give a garment class, a packshot or an adapter)",
            label=label,
        )


def check_job_text(values: Mapping[str, Any], *, label: str = "", mask_mode: str | None = None) -> None:
    """Every text rule over a job's (or one garment's) effective parameters.

    ``mask_mode`` (:data:`MASK_MODE_RULES`): ``text`` (or none given) and ``class`` check the
    query; ``image`` or ``box`` (a mask the caller drew, no query) need the prompt, a garment
    class, a packshot or an adapter to say what is painted.
    """
    checks = {"prompt": check_prompt, "negative_prompt": check_negative_prompt, "adapter": check_adapter}
    for name, rule in policy_fields().items():
        if rule == "query":
            if mask_mode in (None, "text", "class"):
                check_query(values.get(name), name, label=label)
        else:
            checks[rule](values.get(name), name, label=label)
    if mask_mode in ("image", "box"):
        check_drawn_region(values, label=label)


# ---------------------------------------------------------------------------- image labels

#: Amazon Rekognition's moderation labels (taxonomy version 7): (name, parent), level 1 first.
#: Level 1 labels have the parent ``""``. docs/responsible-use.md explains the defaults.
TAXONOMY: tuple[tuple[str, str], ...] = (
    ("Explicit", ""),
    ("Explicit Nudity", "Explicit"),
    ("Exposed Male Genitalia", "Explicit Nudity"),
    ("Exposed Female Genitalia", "Explicit Nudity"),
    ("Exposed Buttocks or Anus", "Explicit Nudity"),
    ("Exposed Female Nipple", "Explicit Nudity"),
    ("Explicit Sexual Activity", "Explicit"),
    ("Sex Toys", "Explicit"),
    ("Non-Explicit Nudity of Intimate parts and Kissing", ""),
    ("Non-Explicit Nudity", "Non-Explicit Nudity of Intimate parts and Kissing"),
    ("Bare Back", "Non-Explicit Nudity"),
    ("Exposed Male Nipple", "Non-Explicit Nudity"),
    ("Partially Exposed Buttocks", "Non-Explicit Nudity"),
    ("Partially Exposed Female Breast", "Non-Explicit Nudity"),
    ("Implied Nudity", "Non-Explicit Nudity"),
    ("Obstructed Intimate Parts", "Non-Explicit Nudity of Intimate parts and Kissing"),
    ("Obstructed Female Nipple", "Obstructed Intimate Parts"),
    ("Obstructed Male Genitalia", "Obstructed Intimate Parts"),
    ("Kissing on the Lips", "Non-Explicit Nudity of Intimate parts and Kissing"),
    ("Swimwear or Underwear", ""),
    ("Female Swimwear or Underwear", "Swimwear or Underwear"),
    ("Male Swimwear or Underwear", "Swimwear or Underwear"),
    ("Violence", ""),
    ("Weapons", "Violence"),
    ("Graphic Violence", "Violence"),
    ("Weapon Violence", "Graphic Violence"),
    ("Physical Violence", "Graphic Violence"),
    ("Self-Harm", "Graphic Violence"),
    ("Blood & Gore", "Graphic Violence"),
    ("Explosions and Blasts", "Graphic Violence"),
    ("Visually Disturbing", ""),
    ("Death and Emaciation", "Visually Disturbing"),
    ("Emaciated Bodies", "Death and Emaciation"),
    ("Corpses", "Death and Emaciation"),
    ("Crashes", "Visually Disturbing"),
    ("Air Crash", "Crashes"),
    ("Drugs & Tobacco", ""),
    ("Products", "Drugs & Tobacco"),
    ("Pills", "Products"),
    ("Drugs & Tobacco Paraphernalia & Use", "Drugs & Tobacco"),
    ("Smoking", "Drugs & Tobacco"),
    ("Alcohol", ""),
    ("Drinking", "Alcohol"),
    ("Alcoholic Beverages", "Alcohol"),
    ("Rude Gestures", ""),
    ("Middle Finger", "Rude Gestures"),
    ("Gambling", ""),
    ("Gambling", "Gambling"),
    ("Hate Symbols", ""),
    ("Nazi Party", "Hate Symbols"),
    ("White Supremacy", "Hate Symbols"),
    ("Extremist", "Hate Symbols"),
)
LABEL_NAMES: frozenset[str] = frozenset(name for name, _ in TAXONOMY)
_PARENTS: dict[str, str] = {name: parent for name, parent in TAXONOMY if name != parent}

#: Blocked unless a stack says otherwise (template parameter ModerationCategories): what an
#: undressing tool produces (explicit and non-explicit nudity, intimate parts obstructed by a
#: hand) and what no brand may publish (graphic violence, disturbing content, hate symbols).
#: Swimwear and underwear, kissing, alcohol, tobacco, gambling, gestures and weapons are not
#: blocked: shops sell swimwear and lingerie, and shoppers' own photos show the rest.
DEFAULT_CATEGORIES: tuple[str, ...] = (
    "Explicit",
    "Non-Explicit Nudity",
    "Obstructed Intimate Parts",
    "Graphic Violence",
    "Visually Disturbing",
    "Hate Symbols",
)
#: Rekognition returns labels at or above this confidence unless told otherwise (its default).
DEFAULT_MIN_CONFIDENCE = 50.0


def ancestors(name: str, parent: str = "") -> list[str]:
    """A label's parent, grandparent, ... (from the label's own ParentName, else the taxonomy)."""
    chain: list[str] = []
    current = parent or _PARENTS.get(name, "")
    while current and current not in chain:
        chain.append(current)
        current = _PARENTS.get(current, "")
    return chain


@dataclass(frozen=True)
class Label:
    """One moderation label as Rekognition returns it (``ModerationLabels[i]``)."""

    name: str
    parent: str
    confidence: float
    level: int | None = None

    @classmethod
    def from_rekognition(cls, label: Mapping[str, Any]) -> Label:
        level = label.get("TaxonomyLevel")
        return cls(
            str(label.get("Name", "")),
            str(label.get("ParentName") or ""),
            round(float(label.get("Confidence", 0.0)), 2),
            int(level) if level is not None else None,
        )

    def to_rekognition(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "ParentName": self.parent,
            "Confidence": self.confidence,
            "TaxonomyLevel": self.level
            if self.level is not None
            else len(ancestors(self.name, self.parent)) + 1,
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def blocking_labels(labels: Sequence[Label], config: ModerationConfig) -> list[Label]:
    """The labels that refuse an image under ``config`` (empty: the image passes).

    A label at or above the minimum confidence blocks when it or an ancestor is a blocked
    category, unless it is an allowed label, or Rekognition also returned labels under it and
    every one of them is excused (a "Non-Explicit Nudity" parent returned only because of an
    allowed "Bare Back").
    """
    blocked, allowed = set(config.categories), set(config.allowed_labels)
    seen = [label for label in labels if label.confidence >= config.min_confidence]
    children: dict[str, list[Label]] = {}
    for label in seen:
        children.setdefault(label.parent, []).append(label)

    def excused(label: Label, depth: int = 0) -> bool:
        if label.name in allowed:
            return True
        below = [c for c in children.get(label.name, []) if c.name != label.name]
        return bool(below) and depth < 4 and all(excused(c, depth + 1) for c in below)

    return [
        label
        for label in seen
        if ({label.name, *ancestors(label.name, label.parent)} & blocked) and not excused(label)
    ]


# ---------------------------------------------------------------------------- stack settings


@dataclass(frozen=True)
class ModerationConfig:
    """A stack's moderation settings (template parameters ContentModeration, ...): :func:`parse_config`."""

    enabled: bool = True
    off_reason: str = ""
    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    allowed_labels: tuple[str, ...] = ()
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    policy_version: str = POLICY_VERSION

    def as_dict(self) -> dict[str, Any]:
        """What the job (and so the manifest) records."""
        out = asdict(self)
        out["categories"], out["allowed_labels"] = list(self.categories), list(self.allowed_labels)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModerationConfig:
        return cls(
            enabled=bool(values["enabled"]),
            off_reason=str(values.get("off_reason") or ""),
            categories=tuple(values.get("categories") or ()),
            allowed_labels=tuple(values.get("allowed_labels") or ()),
            min_confidence=float(values.get("min_confidence", DEFAULT_MIN_CONFIDENCE)),
            policy_version=str(values.get("policy_version") or POLICY_VERSION),
        )


#: Template parameter -> the function variable holding it (the harness and the docs use these).
CONFIG_VARIABLES: dict[str, str] = {
    "ContentModeration": "TRYON_MODERATION",
    "ContentModerationOffReason": "TRYON_MODERATION_OFF_REASON",
    "ModerationCategories": "TRYON_MODERATION_CATEGORIES",
    "ModerationAllowedLabels": "TRYON_MODERATION_ALLOWED_LABELS",
    "ModerationMinConfidence": "TRYON_MODERATION_MIN_CONFIDENCE",
}
#: The variable naming the SSM path (``/<stack>/moderation/``) of the settings kept in SSM.
PARAMETERS_VARIABLE = "TRYON_MODERATION_PARAMETERS"
#: Template parameters too long for Lambda's 4 KB environment -> their SSM parameter under that
#: path (template.yaml creates each one only when it is not empty).
STORED_PARAMETERS: dict[str, str] = {
    "ModerationCategories": "categories",
    "ModerationAllowedLabels": "allowed-labels",
    "ContentModerationOffReason": "off-reason",
}
#: A warm Prepare reads them again after this many seconds (an update applies within a minute).
PARAMETERS_MAX_AGE_S = 60
_SWITCH = {"on": True, "off": False}


def _names(text: str, parameter: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in LABEL_NAMES]
    if unknown:
        raise RequestError(
            parameter,
            f"unknown Rekognition moderation label(s) {', '.join(map(repr, unknown))}; "
            f"known (taxonomy v7): {', '.join(sorted(LABEL_NAMES))}",
        )
    return names


def parse_config(env: Mapping[str, str], stored: Mapping[str, str] | None = None) -> ModerationConfig:
    """The stack's settings from the function environment; RequestError naming the template parameter.

    Unset variables take the defaults (moderation on). ``off`` needs a reason, recorded in
    every manifest: turning moderation off is a decision someone signs. ``stored``: on a stack,
    the SSM parameters under :data:`PARAMETERS_VARIABLE`'s path by name (:data:`STORED_PARAMETERS`;
    an absent one is empty), which replace their variables.
    """
    if stored is not None:
        env = {**env} | {CONFIG_VARIABLES[p]: stored.get(name, "") for p, name in STORED_PARAMETERS.items()}
    switch = (env.get("TRYON_MODERATION") or "on").strip().lower()
    if switch not in _SWITCH:
        raise RequestError("ContentModeration", f"must be 'on' or 'off', got {switch!r}")
    reason = (env.get("TRYON_MODERATION_OFF_REASON") or "").strip()
    if not _SWITCH[switch] and not reason:
        raise RequestError(
            "ContentModerationOffReason",
            "is required when ContentModeration is off: say why (it is recorded in every manifest)",
        )
    raw = env.get("TRYON_MODERATION_CATEGORIES")
    categories = DEFAULT_CATEGORIES if raw is None else _names(raw, "ModerationCategories")
    allowed = _names(env.get("TRYON_MODERATION_ALLOWED_LABELS") or "", "ModerationAllowedLabels")
    text = (env.get("TRYON_MODERATION_MIN_CONFIDENCE") or "").strip()
    try:
        confidence = float(text) if text else DEFAULT_MIN_CONFIDENCE
    except ValueError:
        raise RequestError("ModerationMinConfidence", f"must be a number, got {text!r}") from None
    if not 0.0 <= confidence <= 100.0:
        raise RequestError("ModerationMinConfidence", f"must be within 0..100, got {confidence:g}")
    if _SWITCH[switch] and not categories:
        raise RequestError(
            "ModerationCategories", "is empty: block at least one category, or set ContentModeration off"
        )
    return ModerationConfig(
        _SWITCH[switch], reason if not _SWITCH[switch] else "", categories, allowed, confidence
    )


# ---------------------------------------------------------------------------- refusals

#: Separates a refusal's message from its details in the Lambda error message.
DETAILS_MARKER = "\n[content-refused] "


class ContentRefused(RequestError):
    """The content policy refused the job: its field, the stage, the labels and the policy version.

    Its message is ``<field>: <why>``; :meth:`error_message` adds the details as JSON after
    :data:`DETAILS_MARKER`, which :func:`parse_error_message` reads back from the Step
    Functions cause (Lambda errors carry only a message).
    """

    def __init__(
        self,
        field_name: str,
        message: str,
        *,
        stage: Stage,
        labels: Sequence[Label] = (),
        images: Sequence[Mapping[str, Any]] = (),
        policy_version: str = POLICY_VERSION,
    ) -> None:
        super().__init__(field_name, message)
        self.stage = stage
        self.labels = list(labels)
        self.images = [dict(image) for image in images]
        self.policy_version = policy_version

    def details(self) -> dict[str, Any]:
        """What a failure record holds of the refusal (never the image itself)."""
        return {
            "stage": self.stage,
            "field": self.field,
            "policy_version": self.policy_version,
            "categories": [label.as_dict() for label in self.labels],
            "images": self.images,
        }

    def error_message(self) -> str:
        return f"{self}{DETAILS_MARKER}{json.dumps(self.details(), sort_keys=True)}"


def parse_error_message(message: str) -> tuple[str, dict[str, Any] | None]:
    """(the human message, the refusal's details or None) of a Lambda error message."""
    text, marker, tail = str(message).partition(DETAILS_MARKER)
    if not marker:
        return text, None
    try:
        details = json.loads(tail)
    except ValueError:
        return text, None
    return text, details if isinstance(details, dict) else None


# ---------------------------------------------------------------------------- version


def policy_digest() -> str:
    """A short digest of every rule and table above: it changes whenever the policy does."""
    rules = {
        "deny": DENY_TERMS,
        "deny_inside_names": DENY_INSIDE_NAMES,
        "covering": COVERING_GARMENTS,
        "removal": REMOVAL_VERBS,
        "fillers": REMOVAL_FILLERS,
        "no": NO_GARMENTS,
        "negative": NEGATIVE_DENY,
        "body": BODY_TERMS,
        "garments": GARMENT_TERMS,
        "rules": TEXT_RULES,
        "fields": policy_fields(),
        "mask_modes": MASK_MODE_RULES,
        "taxonomy": TAXONOMY,
        "defaults": [DEFAULT_CATEGORIES, DEFAULT_MIN_CONFIDENCE],
    }
    return hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()[:16]
