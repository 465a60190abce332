"""The console's server-side SVG charts: valid XML, accessible, escaped, small, honest
about missing data."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from pocketml.server.console._format import pct
from pocketml.server.console._svg import (
    Series,
    bars,
    downsample,
    histogram_pair,
    sparkline,
    time_series,
)

SVG = "{http://www.w3.org/2000/svg}"
T0 = 1_795_000_000.0


def parse(markup: str) -> ET.Element:
    root = ET.fromstring(str(markup))
    assert root.tag == f"{SVG}svg"
    return root


def test_a_time_series_is_valid_accessible_svg_with_a_summary() -> None:
    lines = [
        Series("v1 · phone", [(T0 + i * 3600, 10.0 + i) for i in range(24)]),
        Series("v2 · tablet", [(T0 + i * 3600, 20.0) for i in range(24)]),
    ]

    root = parse(time_series("Latency p95", lines))

    assert root.get("role") == "img"
    title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
    assert title is not None and title.text == "Latency p95"
    assert desc is not None and "v1 · phone: latest 33, min 10, max 33" in (desc.text or "")
    labelled_by = (root.get("aria-labelledby") or "").split()
    assert labelled_by == [title.get("id"), desc.get("id")]
    assert len(root.findall(f"{SVG}path")) == 2


def test_labels_are_escaped_in_every_chart() -> None:
    hostile = '<script>alert("x")</script> & co'
    charts = [
        time_series(hostile, [Series(hostile, [(T0, 1.0), (T0 + 60, 2.0)])]),
        histogram_pair(hostile, [hostile, "b"], [1, 2], [2, 1]),
        bars(hostile, [(hostile, 3.0)]),
        sparkline(hostile, [1.0, 2.0]),
    ]
    for chart in charts:
        root = parse(chart)
        assert "<script>" not in str(chart)
        texts = [e.text for e in root.iter() if e.text]
        assert any(hostile[:20] in text for text in texts)


@pytest.mark.parametrize(
    "lines",
    [
        [],
        [Series("empty", [])],
        [Series("nan", [(T0, math.nan), (T0 + 60, None), (T0 + 120, math.inf)])],
    ],
)
def test_no_finite_value_draws_no_chart_but_says_no_data(lines: list[Series]) -> None:
    markup = str(time_series("Error rate", lines))
    assert markup == '<p class="empty">No data for Error rate yet.</p>'


def test_empty_histograms_bars_and_sparklines_say_so() -> None:
    assert "No data for h yet" in histogram_pair("h", ["a"], [0], [0])
    assert "No data for h yet" in histogram_pair("h", [], [], [])
    assert "No data for b yet" in bars("b", [("x", math.nan)])
    assert "no data" in sparkline("s", [None, math.nan])


def test_a_gap_starts_a_new_sub_path_and_a_lone_point_is_a_dot() -> None:
    points = [(T0, 1.0), (T0 + 60, 2.0), (T0 + 120, None), (T0 + 180, 3.0), (T0 + 240, None)]
    root = parse(time_series("t", [Series("a", points)]))
    (path,) = root.findall(f"{SVG}path")
    assert (path.get("d") or "").count("M") == 2
    assert len(root.findall(f"{SVG}circle")) == 1


def test_downsampling_keeps_gaps_and_means() -> None:
    points = [(float(i), float(i) if i < 50 else None) for i in range(100)]
    kept = downsample(points, 10)
    assert len(kept) == 10
    assert kept[0] == (4.5, 4.5)
    assert all(value is None for _, value in kept[5:])


def test_ninety_days_of_ten_minute_points_in_ten_lines_stays_under_30_kb() -> None:
    points = 90 * 144  # every 10 minutes
    lines = [
        Series(f"v{k} · class-{k}", [(T0 + 600 * i, (i * (k + 1)) % 97) for i in range(points)])
        for k in range(10)
    ]
    markup = str(time_series("Latency p95", lines))
    parse(markup)
    assert len(markup.encode()) < 30_000


def test_histogram_pair_draws_shares_and_describes_them() -> None:
    root = parse(histogram_pair("x0", ["low", "high"], [30, 10], [10, 30]))
    desc = root.find(f"{SVG}desc")
    assert desc is not None
    low = f"low: reference {pct(0.75)}, current {pct(0.25)}"
    assert desc.text == f"{low}; high: reference {pct(0.25)}, current {pct(0.75)}."
    assert len(root.findall(f"{SVG}rect")) == 4 + 2  # two bars per bin and the legend


def test_bars_sort_largest_first_and_fold_the_rest_into_others() -> None:
    items = [(f"class-{i}", float(i)) for i in range(30)]
    root = parse(bars("Devices", items, most=5))
    labels = [t.text for t in root.findall(f"{SVG}text")][::2]
    assert labels == ["class-29", "class-28", "class-27", "class-26", "26 others"]
