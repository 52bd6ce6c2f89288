"""The number patterns of the template's job defaults: exactly the range, for every value tried."""

from __future__ import annotations

import re

import pytest

from tryon.aws.schema_blocks import int_range_pattern, number_range_pattern


@pytest.mark.parametrize(
    ("low", "high"), [(0, 0), (0, 9), (1, 150), (0, 256), (0, 350), (7, 7), (13, 1987), (100, 999), (95, 105)]
)
def test_an_integer_pattern_matches_exactly_its_range(low, high):
    pattern = re.compile(f"^({int_range_pattern(low, high)})$")
    for n in range(0, 2100):
        assert bool(pattern.fullmatch(str(n))) == (low <= n <= high), n


@pytest.mark.parametrize(
    ("low", "high", "exclusive"), [(0, 1, True), (0, 1, False), (0, 2, False), (1, 3, True)]
)
def test_a_number_pattern_matches_exactly_its_range(low, high, exclusive):
    pattern = re.compile(f"^({number_range_pattern(low, high, exclusive_minimum=exclusive)})$")
    texts = (
        [f"{i / 1000:.3f}" for i in range(0, 4001)]
        + [str(i) for i in range(5)]
        + [".5", "1.", "0.", ".0", "2.50"]
    )
    for text in texts:
        value = float(text)
        inside = (low < value if exclusive else low <= value) and value <= high
        assert bool(pattern.fullmatch(text)) == inside, text


def test_ranges_without_a_pattern_are_refused():
    with pytest.raises(ValueError, match="no pattern"):
        number_range_pattern(0.5, 1)
    with pytest.raises(ValueError, match="no pattern"):
        int_range_pattern(-1, 3)
