"""Sketches: merging is exact, the JSON form round-trips, the validator refuses bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pocketml.errors import InvalidInput
from pocketml.monitor import (
    ReferenceProfile,
    build_profile,
    merge_sketches,
    parse_sketch,
)


def _rows(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "a": rng.standard_normal(n),
        "b": rng.standard_normal(n) * 2 + 1,
        "c": rng.choice(np.array(list("xyz")), size=n, p=[0.6, 0.3, 0.1]),
    }


def _outputs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + 100)
    return rng.integers(0, 3, n), rng.random(n)


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    classes, confidence = _outputs(2000, 0)
    return build_profile(
        _rows(2000, 0),
        categorical=["c"],
        predicted_class=classes,
        confidence=confidence,
        correct=confidence > 0.5,
        num_classes=3,
    )


def _sketch(profile: ReferenceProfile, n: int, seed: int):  # type: ignore[no-untyped-def]
    classes, confidence = _outputs(n, seed)
    return profile.sketch(_rows(n, seed), classes, confidence)


def test_merge_of_halves_equals_the_sketch_of_the_whole(profile: ReferenceProfile) -> None:
    rows = _rows(300, 1)
    classes, confidence = _outputs(300, 1)
    halves = [
        profile.sketch({k: v[part] for k, v in rows.items()}, classes[part], confidence[part])
        for part in (slice(0, 137), slice(137, None))
    ]
    assert halves[0].merge(halves[1]) == profile.sketch(rows, classes, confidence)


def test_merge_is_associative_and_commutative(profile: ReferenceProfile) -> None:
    a, b, c = (_sketch(profile, n, seed) for n, seed in ((50, 2), (80, 3), (120, 4)))
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(b) == b.merge(a)
    assert merge_sketches([c, a, b]).n == 250


def test_sketch_and_profile_round_trip_through_json(profile: ReferenceProfile) -> None:
    sketch = _sketch(profile, 90, 5)
    again = parse_sketch(json.loads(json.dumps(sketch.to_dict())), profile.layout)
    restored = ReferenceProfile.from_dict(json.loads(json.dumps(profile.to_dict())))
    assert again == sketch
    assert restored.to_dict() == profile.to_dict()
    assert restored.sketch(_rows(40, 6), *_outputs(40, 6)) == profile.sketch(
        _rows(40, 6), *_outputs(40, 6)
    )


def _broken(profile: ReferenceProfile, change: str) -> dict[str, object]:
    data = _sketch(profile, 60, 7).to_dict()
    counts = data["counts"]
    if change == "short":
        counts["a"] = counts["a"][:-1]
    elif change == "negative":
        counts["a"][0], counts["a"][1] = -1, counts["a"][1] + 1
    elif change == "sum":
        counts["b"][0] += 1
    elif change == "absurd":
        data["n"] = 10**12
    elif change == "float":
        counts["c"][0] = float(counts["c"][0])
    elif change == "missing":
        del counts["@confidence"]
    return data


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ("short", "counts.a"),
        ("negative", "counts.a[0]"),
        ("sum", "counts.b"),
        ("absurd", "n must"),
        ("float", "counts.c[0]"),
        ("missing", "@confidence"),
    ],
)
def test_the_validator_refuses_a_malformed_sketch_naming_the_field(
    profile: ReferenceProfile, change: str, field: str
) -> None:
    with pytest.raises(InvalidInput, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_sketch(_broken(profile, change), profile.layout)


def test_numeric_bins_hold_underflow_and_overflow(profile: ReferenceProfile) -> None:
    bins = profile.bins_of("a")
    assert bins is not None and 18 <= bins.size <= 34
    counts = bins.count([-1e9, 0.0, 1e9])
    assert counts[0] == 1 and counts[-1] == 1 and counts.sum() == 3
