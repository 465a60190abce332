"""Targeting rules and rollout buckets (pure functions, no database)."""

from __future__ import annotations

import pytest

from pocketml.delivery import CheckinFacts, bucket_of, in_candidate_group, parse_targeting
from pocketml.errors import InvalidInput


def _device(**facts: object) -> CheckinFacts:
    base: dict[str, object] = {
        "device_id": "d-1",
        "platform": "android",
        "formats": ("onnx",),
        "os_version": "14.1",
        "app_version": "2.5.0",
        "device_model": "Pixel 8",
        "device_class": "mid",
        "country": "DE",
    }
    return CheckinFacts(**{**base, **facts})  # type: ignore[arg-type]


def test_an_empty_targeting_matches_every_device() -> None:
    assert parse_targeting([]).matches(_device())
    assert parse_targeting(None).matches(_device(platform="ios"))


@pytest.mark.parametrize(
    ("rule", "facts", "expected"),
    [
        ({"field": "platform", "in": ["android"]}, {}, True),
        ({"field": "platform", "in": ["ios"]}, {}, False),
        ({"field": "platform", "not_in": ["ios"]}, {}, True),
        ({"field": "country", "in": ["de", "fr"]}, {}, True),
        ({"field": "country", "in": ["FR"]}, {}, False),
        ({"field": "country", "in": ["DE"]}, {"country": None}, False),
        ({"field": "device_model", "in": ["pixel 8"]}, {}, True),
        ({"field": "device_class", "in": ["high"]}, {}, False),
        ({"field": "device_id", "in": ["d-1", "d-2"]}, {}, True),
        ({"field": "device_id", "not_in": ["d-1"]}, {}, False),
        ({"field": "os_version", "min": "14"}, {}, True),
        ({"field": "os_version", "min": "14.2"}, {}, False),
        ({"field": "os_version", "max": "14.1"}, {}, False),  # max is exclusive
        ({"field": "app_version", "min": "2.5", "max": "3"}, {}, True),
        ({"field": "app_version", "min": "2.10"}, {}, False),  # 2.5 < 2.10 as versions
        ({"field": "app_version", "min": "1"}, {"app_version": "not-a-version"}, False),
        ({"field": "app_version", "min": "1"}, {"app_version": ""}, False),
    ],
)
def test_each_rule_kind_evaluates_against_the_device_facts(
    rule: dict[str, object], facts: dict[str, object], expected: bool
) -> None:
    assert parse_targeting([rule]).matches(_device(**facts)) is expected


def test_all_rules_must_match() -> None:
    rules = [{"field": "platform", "in": ["android"]}, {"field": "country", "in": ["US"]}]
    assert not parse_targeting(rules).matches(_device())
    assert parse_targeting(rules).matches(_device(country="us"))


def test_rules_round_trip_through_json() -> None:
    rules = [
        {"field": "country", "in": ["de", "fr"]},
        {"field": "os_version", "min": "13", "max": "15"},
        {"field": "device_id", "not_in": ["x"]},
    ]
    assert parse_targeting(parse_targeting(rules).to_list()) == parse_targeting(rules)


@pytest.mark.parametrize(
    ("rules", "fragment"),
    [
        ([{"field": "gpu", "in": ["x"]}], "field must be one of"),
        ([{"field": "platform", "in": []}], "list of 1 to"),
        ([{"field": "platform", "in": ["a"], "not_in": ["b"]}], "exactly one of"),
        ([{"field": "os_version"}], "'min' and/or 'max'"),
        ([{"field": "os_version", "min": "latest"}], "version string"),
        (["platform"], "must be an object"),
    ],
)
def test_malformed_rules_are_refused_with_a_clear_message(
    rules: list[object], fragment: str
) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        parse_targeting(rules)  # type: ignore[arg-type]


def test_device_classes_reads_the_class_rule() -> None:
    targeting = parse_targeting([{"field": "device_class", "in": ["low", "mid"]}])
    assert targeting.device_classes() == {"low", "mid"}


def test_buckets_are_deterministic_and_follow_the_documented_formula() -> None:
    import hashlib

    expected = int(hashlib.sha256(b"salt-1" + b"device-42").hexdigest(), 16) % 10_000
    assert bucket_of("salt-1", "device-42") == expected
    assert bucket_of("salt-1", "device-42") == bucket_of("salt-1", "device-42")
    assert bucket_of("salt-2", "device-42") != expected or bucket_of("salt-3", "device-42") != (
        expected
    )


def test_raising_the_percent_keeps_every_earlier_device_in() -> None:
    devices = [f"device-{i}" for i in range(5000)]
    previous: set[str] = set()
    for percent in (1, 5, 25, 50, 100):
        group = {d for d in devices if in_candidate_group("salt", d, percent)}
        assert previous <= group
        assert abs(len(group) / len(devices) - percent / 100) < 0.02
        previous = group
    assert previous == set(devices)


def test_different_salts_pick_different_groups() -> None:
    devices = [f"device-{i}" for i in range(2000)]
    a = {d for d in devices if in_candidate_group("salt-a", d, 10)}
    b = {d for d in devices if in_candidate_group("salt-b", d, 10)}
    assert a != b
