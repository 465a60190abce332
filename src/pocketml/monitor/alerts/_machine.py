"""The alert state machine, pure: (what is stored, what was read, the rule, now) -> a step.

States of one alert (one rule x one label set, told apart by fingerprint)::

    inactive --breach--> pending --breach for for_s--> firing --clear--> resolved
        ^                   |                                               |
        +------clear--------+ (cancelled: never fired, nobody is told)      |
        +------------------ breach after cooldown_s (a new episode) --------+

- Not enough data (value None, or n < min_n) changes nothing: a thin window is neither
  an alarm nor an all-clear.
- A breach while firing changes nothing either (de-duplication): one episode, one
  "firing" notification, however many passes see it.
- ``for_s = 0`` fires on the first breach (no pending step).
- A breach within ``cooldown_s`` of the last resolution is held back: flapping metrics
  notify at most once per cool-down.

Acknowledgement is not a state: it silences the episode's notifications (the store
decides that) and the machine goes on as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pocketml.monitor.alerts._rules import AlertRule, compare
from pocketml.monitor.alerts._sources import MetricReading

__all__ = ["ACTIONS", "Current", "Step", "judge", "next_step"]

ACTIONS = ("none", "pend", "fire", "resolve", "cancel")
"""What a step does: nothing, open a pending episode, fire, resolve, or drop a pending one."""


@dataclass(frozen=True)
class Current:
    """The stored state of one fingerprint: its active episode and its last resolution.

    Args:
        state: ``inactive`` (no active episode), ``pending`` or ``firing``.
        pending_since: when the active episode's breach was first seen.
        last_resolved_at: when the fingerprint's latest episode resolved (None: never).
    """

    state: str = "inactive"
    pending_since: datetime | None = None
    last_resolved_at: datetime | None = None


@dataclass(frozen=True)
class Step:
    """One decision: the action and why (the audit log's reason)."""

    action: str
    reason: str


def judge(rule: AlertRule, reading: MetricReading) -> bool | None:
    """True (breached), False (clear) or None (not enough data to say)."""
    if reading.value is None or reading.n < rule.min_n:
        return None
    return compare(reading.value, rule.comparison, rule.threshold)


def _reading(rule: AlertRule, reading: MetricReading) -> str:
    value = "none" if reading.value is None else f"{reading.value:.4g}"
    return f"{rule.metric} = {value} (n={reading.n}) vs {rule.comparison} {rule.threshold:g}"


def next_step(current: Current, rule: AlertRule, reading: MetricReading, now: datetime) -> Step:
    """The transition of one alert for one reading (pure; see the module docstring)."""
    breached = judge(rule, reading)
    what = _reading(rule, reading)
    if breached is None:
        return Step("none", f"not enough data: {what}, min n {rule.min_n}")
    if current.state == "firing":
        return Step("resolve", f"cleared: {what}") if not breached else Step("none", what)
    if current.state == "pending":
        if not breached:
            return Step("cancel", f"cleared before firing: {what}")
        since = current.pending_since or now
        waited = (now - since).total_seconds()
        if waited >= rule.for_s:
            return Step("fire", f"{what} for {waited:.0f} s")
        return Step("none", f"pending {waited:.0f}/{rule.for_s:.0f} s: {what}")
    if not breached:
        return Step("none", what)
    if current.last_resolved_at is not None:
        quiet = (now - current.last_resolved_at).total_seconds()
        if quiet < rule.cooldown_s:
            return Step("none", f"cooling down {quiet:.0f}/{rule.cooldown_s:.0f} s: {what}")
    if rule.for_s > 0:
        return Step("pend", f"breached, pending for {rule.for_s:.0f} s: {what}")
    return Step("fire", what)
