"""Number formatting of the console (``_format``): the filters the ship pages added."""

from __future__ import annotations

import math

import pytest

from pocketml.server.console._format import NO_VALUE, percent, pvalue, signed


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (10.0, "10 %"),
        (12.5, "12.5 %"),
        (33.33333, "33.3 %"),
        (100, "100 %"),
        (0, "0 %"),
        (None, NO_VALUE),
        (math.nan, NO_VALUE),
    ],
)
def test_percent_prints_a_number_that_already_is_a_percentage(value: object, text: str) -> None:
    assert percent(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.010000000000000009, "+0.01"),
        (-0.0123456, "\u22120.0123"),
        (1234.5, "+1,234"),
        (-2, "\u22122"),
        (0, "0"),
        (0.0, "0"),
        (None, NO_VALUE),
        (math.inf, NO_VALUE),
        ("x", NO_VALUE),
    ],
)
def test_signed_shows_which_way_a_difference_went(value: object, text: str) -> None:
    assert signed(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (0.5, "0.5"),
        (0.04567, "0.046"),
        (0.001, "0.001"),
        (0.000999, "< 0.001"),
        (0.0, "< 0.001"),
        (None, NO_VALUE),
        (math.nan, NO_VALUE),
    ],
)
def test_pvalue_keeps_two_digits_and_floors_at_a_thousandth(value: object, text: str) -> None:
    assert pvalue(value) == text


def test_a_missing_template_value_prints_the_no_value_mark_not_an_error() -> None:
    from jinja2 import Environment

    from pocketml.server.console._format import FILTERS

    env = Environment()
    env.filters.update(FILTERS)
    text = env.from_string("{{ o.gone | num }} {{ o.gone | pct }} {{ o.gone | count }}").render(
        o={}
    )
    assert text == f"{NO_VALUE} {NO_VALUE} {NO_VALUE}"
