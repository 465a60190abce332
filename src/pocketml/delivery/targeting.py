"""Targeting rules and rollout buckets: which devices a model or a rollout reaches.

A ``Targeting`` is a list of rules that must ALL match (an empty list matches every
device). Each rule reads one device fact:

- set rules (``platform``, ``device_model``, ``device_class``, ``country``, ``device_id``):
  ``{"field": "country", "in": ["DE", "FR"]}`` or ``{"field": "device_id", "not_in": [...]}``;
- range rules (``os_version``, ``app_version``), compared with ``packaging.version``:
  ``{"field": "app_version", "min": "2.3", "max": "3"}`` — ``min`` inclusive, ``max``
  exclusive; a device that reported no parseable version never matches a range rule.

Rollout buckets follow DESIGN.md: ``bucket = sha256(salt + device_id) mod 10000`` and a
device is in the candidate group when ``bucket < percent * 100``, so raising the percent
keeps every earlier device in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from packaging.version import InvalidVersion, Version

from pocketml.bounds import check_text
from pocketml.delivery._types import CheckinFacts
from pocketml.errors import InvalidInput

__all__ = [
    "RANGE_FIELDS",
    "SET_FIELDS",
    "Rule",
    "Targeting",
    "bucket_of",
    "in_candidate_group",
    "parse_targeting",
]

SET_FIELDS = ("platform", "device_model", "device_class", "country", "device_id")
RANGE_FIELDS = ("os_version", "app_version")
_MAX_VALUES = 10_000
_MAX_VALUE_LENGTH = 128


@lru_cache(maxsize=4096)
def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


@dataclass(frozen=True)
class Rule:
    """One targeting rule: a set test (``values``/``negate``) or a version range."""

    field: str
    values: frozenset[str] = frozenset()
    negate: bool = False
    min: str | None = None
    max: str | None = None

    def matches(self, device: CheckinFacts) -> bool:
        """True when ``device`` satisfies this rule."""
        value = getattr(device, self.field)
        if self.field in RANGE_FIELDS:
            have = _version(value) if value else None
            if have is None:
                return False
            low = _version(self.min) if self.min is not None else None
            high = _version(self.max) if self.max is not None else None
            return (low is None or have >= low) and (high is None or have < high)
        inside = value is not None and value.lower() in self.values
        return inside != self.negate

    def to_dict(self) -> dict[str, Any]:
        """The rule as JSON (the form ``parse_targeting`` reads)."""
        if self.field in RANGE_FIELDS:
            out: dict[str, Any] = {"field": self.field}
            if self.min is not None:
                out["min"] = self.min
            if self.max is not None:
                out["max"] = self.max
            return out
        return {"field": self.field, "not_in" if self.negate else "in": sorted(self.values)}


@dataclass(frozen=True)
class Targeting:
    """Rules that must all match; ``Targeting()`` matches every device."""

    rules: tuple[Rule, ...] = ()

    def matches(self, device: CheckinFacts) -> bool:
        """True when every rule matches ``device``."""
        return all(rule.matches(device) for rule in self.rules)

    def device_classes(self) -> frozenset[str]:
        """The device classes an ``in`` rule on ``device_class`` restricts to (may be empty)."""
        classes: frozenset[str] = frozenset()
        for rule in self.rules:
            if rule.field == "device_class" and not rule.negate:
                classes = rule.values if not classes else classes & rule.values
        return classes

    def to_list(self) -> list[dict[str, Any]]:
        """The rules as JSON."""
        return [rule.to_dict() for rule in self.rules]


def _parse_rule(raw: Mapping[str, Any], index: int) -> Rule:
    where = f"targeting rule {index}"
    field = raw.get("field")
    if field not in SET_FIELDS + RANGE_FIELDS:
        raise InvalidInput(
            f"{where}: field must be one of {', '.join(SET_FIELDS + RANGE_FIELDS)}; got {field!r}."
        )
    if field in RANGE_FIELDS:
        bounds = {k: raw.get(k) for k in ("min", "max")}
        if set(raw) - {"field", "min", "max"} or all(v is None for v in bounds.values()):
            raise InvalidInput(
                f"{where}: a {field} rule takes 'min' and/or 'max' (versions such as '2.3'); "
                f"got {dict(raw)!r}."
            )
        for key, text in bounds.items():
            if text is not None and (
                not isinstance(text, str) or len(text) > 64 or _version(text) is None
            ):
                raise InvalidInput(
                    f"{where}: {key} must be a version string such as '14.2'; got {text!r}."
                )
        return Rule(field=field, min=bounds["min"], max=bounds["max"])
    keys = set(raw) - {"field"}
    if keys not in ({"in"}, {"not_in"}):
        raise InvalidInput(
            f"{where}: a {field} rule takes exactly one of 'in' or 'not_in' (a list of "
            f"strings); got keys {sorted(keys)}."
        )
    (key,) = keys
    values = raw[key]
    if (
        not isinstance(values, list)
        or not values
        or len(values) > _MAX_VALUES
        or not all(_is_value(v) for v in values)
    ):
        raise InvalidInput(
            f"{where}: '{key}' must be a list of 1 to {_MAX_VALUES} non-empty strings of at "
            f"most {_MAX_VALUE_LENGTH} characters (valid UTF-8, no NUL); got {values!r:.200}."
        )
    return Rule(field=field, values=frozenset(v.lower() for v in values), negate=key == "not_in")


def _is_value(value: object) -> bool:
    if not isinstance(value, str) or not 1 <= len(value) <= _MAX_VALUE_LENGTH:
        return False
    try:
        check_text(value)
    except ValueError:
        return False
    return True


def parse_targeting(raw: Sequence[Mapping[str, Any]] | None) -> Targeting:
    """Validate JSON rules into a ``Targeting``.

    Args:
        raw: a list of rule objects (see the module docstring), or None for "everyone".

    Returns:
        The targeting.

    Raises:
        InvalidInput: a rule names an unknown field or has malformed values.
    """
    if raw is None:
        return Targeting()
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise InvalidInput(f"targeting must be a list of rule objects; got {raw!r}.")
    rules = []
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise InvalidInput(f"targeting rule {index} must be an object; got {item!r}.")
        rules.append(_parse_rule(item, index))
    return Targeting(tuple(rules))


def bucket_of(salt: str, device_id: str) -> int:
    """The device's rollout bucket in [0, 10000): ``sha256(salt + device_id) mod 10000``."""
    digest = hashlib.sha256((salt + device_id).encode("utf-8")).digest()
    return int.from_bytes(digest, "big") % 10_000


def in_candidate_group(salt: str, device_id: str, percent: float) -> bool:
    """True when the device's bucket is below ``percent * 100`` (monotonic in percent)."""
    return bucket_of(salt, device_id) < percent * 100
