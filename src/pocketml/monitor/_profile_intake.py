"""Intake of ``profile`` events: checked against the version's profile, merged with the batch.

A telemetry batch may carry ``profile`` events (one per model version and window: the
window's counts in the version profile's layout, encoded by
``pocketml.protocol.decode_sketch``). Before anything is stored, every one is checked:

- its ``version`` must name a version of the model that has a reference profile;
- its ``sketch`` must decode to exactly the layout's number of counts;
- exact counts (no ``epsilon``) pass ``parse_sketch``: integers in ``[0, n]`` summing to
  ``n`` per block, ``n <= 10^9``;
- noisy counts (``epsilon`` set) pass ``parse_noisy_counts``: within what noise of that
  epsilon can explain (exceeded with probability below 10^-12 per count);
- when the version's policy sets ``epsilon_per_day``, exact counts are refused (the
  policy promised users noise).

Any failure is a ``ValidationFailed`` naming ``events[i].<field>`` (422; nothing of the
batch is stored). What passes becomes a hook for ``TelemetryService.ingest``: inside the
transaction that stores the batch row, after the clock correction, it charges noisy
events to the privacy ledger (which may still refuse the batch) and merges every sketch
with ``add_sketches`` under its key (model, version, device class, app version, hour of
the corrected ``ts``). A retried batch is refused by its batch id before the hook runs,
so its sketches are never added twice. Profile events are not stored as telemetry rows:
their counts live only in the merged sketches.

Parsed profiles are cached per process (a version and its profile are immutable); the
policy is read per batch (an operator may change the budget at any time).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from pocketml.errors import InvalidInput, NotFound, ValidationFailed
from pocketml.monitor._privacy_ledger import Charge, charge_privacy
from pocketml.monitor._store import SketchAddition, SketchKey, add_sketches, window_of
from pocketml.protocol import PROFILE_EVENT, MonitorPolicy, decode_sketch
from pocketml.sketch import (
    ReferenceProfile,
    Sketch,
    geometric_variance,
    parse_noisy_counts,
    parse_sketch,
    sensitivity_of,
)

__all__ = ["ProfileIntake", "has_profile_events"]

_CACHE_SIZE = 256  # parsed profiles kept (a large one is a few MB of edges and counts)


@dataclass(frozen=True)
class _Checked:
    """A profile event that passed: where it sits in the batch, its counts and noise."""

    event: Any  # the batch's event: its ts is read at commit time (after correction)
    index: int
    model: str
    version: int
    sketch: Sketch
    epsilon: float | None
    noise_variance: float
    budget: float | None


def _get(event: Any, name: str) -> Any:
    return event.get(name) if isinstance(event, Mapping) else getattr(event, name, None)


def has_profile_events(events: Sequence[Any]) -> bool:
    """True when any event (a mapping or a validated struct) is a ``profile`` event: the
    intake's cheap check before it hands a batch to ``ProfileIntake.prepare``."""
    return any(_get(event, "type") == PROFILE_EVENT for event in events)


def _ts(event: Any) -> float:
    return float(_get(event, "ts"))


class ProfileIntake:
    """Checks a batch's profile events and merges them inside the batch's transaction.

    Args:
        profile_of: ``(app_id, model, version) -> profile JSON or None``; raises
            ``NotFound`` for an unknown model or version (the registry's
            ``get_reference_profile``).
        policy_of: ``(app_id, model, version) -> MonitorPolicy`` (delivery's policy).
        cache_size: parsed profiles kept per process.
    """

    def __init__(
        self,
        profile_of: Callable[[str, str, int], Mapping[str, Any] | None],
        policy_of: Callable[[str, str, int], MonitorPolicy],
        *,
        cache_size: int = _CACHE_SIZE,
    ) -> None:
        self.profile_of = profile_of
        self.policy_of = policy_of
        self.cache_size = cache_size
        self._profiles: OrderedDict[tuple[str, str, int], ReferenceProfile | None] = OrderedDict()
        self._lock = threading.Lock()

    def prepare(
        self,
        app_id: str,
        device_id: str,
        events: Sequence[Any],
        device_class: str | None,
        app_version: str | None,
    ) -> Callable[[sa.Connection], None] | None:
        """Check the batch's profile events; return the hook that stores them.

        Returns:
            None when the batch has no profile event, else the ``on_commit_rows`` hook.

        Raises:
            ValidationFailed: a bad profile event, naming ``events[i].<field>``.
            Unavailable: the registry cannot be read.
        """
        found = [(i, e) for i, e in enumerate(events) if _get(e, "type") == PROFILE_EVENT]
        if not found:
            return None
        policies: dict[tuple[str, int], MonitorPolicy] = {}
        checked = []
        for index, event in found:
            model, version = _get(event, "model"), _get(event, "version")
            if version is None:
                raise ValidationFailed(
                    f"events[{index}].version is required for a profile event: the counts "
                    "are in the layout of that version's profile."
                )
            profile = self._profile(app_id, model, version, index)
            key = (model, version)
            if key not in policies:
                policies[key] = self.policy_of(app_id, model, version)
            checked.append(self._check(index, event, profile, policies[key]))
        return self._hook(app_id, device_id, checked, device_class or "", app_version or "")

    def _profile(self, app_id: str, model: str, version: int, index: int) -> ReferenceProfile:
        key = (app_id, model, version)
        with self._lock:
            hit = key in self._profiles
            profile = self._profiles.get(key)
            if hit:
                self._profiles.move_to_end(key)
        if not hit:
            try:
                raw = self.profile_of(app_id, model, version)
            except NotFound as exc:
                raise ValidationFailed(
                    f"events[{index}].version: model {model!r} has no version {version} in "
                    "this app; send profile events only for a version the manifest served."
                ) from exc
            profile = None if raw is None else ReferenceProfile.from_dict(raw)
            with self._lock:
                self._profiles[key] = profile
                while len(self._profiles) > self.cache_size:
                    self._profiles.popitem(last=False)
        if profile is None:
            raise ValidationFailed(
                f"events[{index}].version: version {version} of {model!r} has no reference "
                "profile, so there is nothing to bin against; do not sketch it."
            )
        return profile

    @staticmethod
    def _check(
        index: int, event: Any, profile: ReferenceProfile, policy: MonitorPolicy
    ) -> _Checked:
        layout = profile.layout
        epsilon = _get(event, "epsilon")
        n = int(_get(event, "n"))
        try:
            counts = decode_sketch(_get(event, "sketch"), layout.total)
        except ValueError as exc:
            raise ValidationFailed(f"events[{index}].sketch {exc}") from exc
        if epsilon is None and policy.epsilon_per_day is not None:
            raise ValidationFailed(
                f"events[{index}].epsilon is required: the version's monitor policy sets "
                f"epsilon_per_day={policy.epsilon_per_day:g}, so counts must carry noise."
            )
        try:
            if epsilon is None:
                if n < 0:
                    raise InvalidInput(f"n must be >= 0 for exact counts; got {n}.")
                sketch = parse_sketch(_as_dict(counts, n, profile), layout)
                variance = 0.0
            else:
                sketch = parse_noisy_counts(np.asarray(counts, np.int64), n, layout, epsilon)
                variance = geometric_variance(epsilon, sensitivity_of(layout))
        except InvalidInput as exc:
            field = "n" if str(exc).startswith("n ") else "sketch"
            raise ValidationFailed(f"events[{index}].{field}: {exc}") from exc
        budget = policy.epsilon_per_day
        return _Checked(
            event,
            index,
            _get(event, "model"),
            int(_get(event, "version")),
            sketch,
            None if epsilon is None else float(epsilon),
            variance,
            budget,
        )

    @staticmethod
    def _hook(
        app_id: str,
        device_id: str,
        checked: list[_Checked],
        device_class: str,
        app_version: str,
    ) -> Callable[[sa.Connection], None]:
        def store(conn: sa.Connection) -> None:
            charges = [
                Charge(c.index, _ts(c.event), c.epsilon, math.inf if c.budget is None else c.budget)
                for c in checked
                if c.epsilon is not None
            ]
            if charges:
                charge_privacy(conn, app_id, device_id, charges)
            additions = [
                SketchAddition(
                    SketchKey(
                        c.model, c.version, device_class, app_version, window_of(_ts(c.event))
                    ),
                    c.sketch,
                    c.noise_variance,
                )
                for c in checked
            ]
            add_sketches(conn, app_id, additions)

        return store


def _as_dict(counts: list[int], n: int, profile: ReferenceProfile) -> dict[str, Any]:
    """The ``{n, counts: {block: [...]}}`` form ``parse_sketch`` checks."""
    layout = profile.layout
    offsets = layout.offsets
    return {
        "n": n,
        "counts": {
            name: counts[offsets[i] : offsets[i + 1]] for i, name in enumerate(layout.names)
        },
    }
