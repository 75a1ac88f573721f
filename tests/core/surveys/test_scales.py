"""Scales and weights: every score needs a weight in -100..100, with errors that say which."""

from __future__ import annotations

import pytest

from posventa.core.errors import ValidationError
from posventa.core.surveys.scales import Scale


def test_scales():
    assert Scale.parse("1-5").scores == ("1", "2", "3", "4", "5")
    assert Scale.parse(" 0 - 10 ").scores == tuple(str(n) for n in range(11))
    assert Scale.parse("Yes/No").scores == ("yes", "no")
    for bad in ("", "1-1", "5-1", "0-11", "1-100", "stars", None, 5):
        with pytest.raises(ValidationError):
            Scale.parse(bad)


def test_weights_map_and_list_forms():
    s = Scale.parse("1-5")
    assert s.validate_weights({"1": -100, "2": -50, "3": 0, "4": 50, "5": 100}) == {
        "1": -100, "2": -50, "3": 0, "4": 50, "5": 100}
    assert s.validate_weights([-100, -50, 0, 50, 100])["5"] == 100
    assert Scale.parse("yes/no").validate_weights({"YES": 100, "no": -100}) == {"yes": 100, "no": -100}


@pytest.mark.parametrize("weights,message", [
    ({"1": -100, "2": -50, "3": 0, "4": 50}, "weight for score 5 is missing"),
    ({"1": -100, "2": -50, "3": 0, "4": 50, "5": 101}, "weight for score 5 is 101; weights go from -100 to 100"),
    ({"1": -101, "2": -50, "3": 0, "4": 50, "5": 100}, "weight for score 1 is -101"),
    ({"1": -100, "2": -50, "3": 0, "4": 50, "5": 100, "6": 100}, "score '6' is not on the 1-5 scale"),
    ({"1": -100, "2": "a lot", "3": 0, "4": 50, "5": 100}, "weight for score 2 must be a whole number"),
    ({"1": -100, "2": True, "3": 0, "4": 50, "5": 100}, "weight for score 2 must be a whole number"),
    ([1, 2, 3], "weights lists 3 values but scale 1-5 has 5 scores"),
    ("100", "must map each score"),
    (None, "must map each score"),
])
def test_weight_errors_are_clear(weights, message):
    with pytest.raises(ValidationError) as e:
        Scale.parse("1-5").validate_weights(weights)
    assert message in str(e.value) and e.value.field == "weights"
