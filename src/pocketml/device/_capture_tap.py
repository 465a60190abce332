"""The per-prediction hook of consented capture, and the ``drifted`` mode's bin test.

``CaptureTap.offer`` is the only code of capture on the predict path (see ``_capture``):
a consent flag, the ``when`` test and one RNG draw for predictions that are not kept
(benchmarks/capture_overhead.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from pocketml.errors import PocketMLError
from pocketml.protocol import CapturePolicy
from pocketml.sketch import LAYOUT_RANK, ReferenceProfile, input_features

if TYPE_CHECKING:
    from pocketml.device._capture import SampleCapture

__all__ = ["CaptureTap", "drift_check"]

logger = logging.getLogger(__name__)


class CaptureTap:
    """What a ``LocalModel`` snapshot calls after each prediction of one version.

    ``offer`` is the only per-prediction cost of capture: a consent flag, the ``when``
    test and one RNG draw for predictions that are not kept.
    """

    def __init__(
        self,
        capture: SampleCapture,
        model: str,
        policy: CapturePolicy,
        drifted: Callable[[Any], bool] | None,
    ) -> None:
        self.capture = capture
        self.model = model
        self.policy = policy
        self._drifted = drifted

    def offer(
        self,
        raw: Any,
        seen: np.ndarray,
        prediction_id: str,
        predicted: str,
        confidence: float,
        version: int | None,
    ) -> None:
        """Capture this prediction if consent, the policy and the sampling rate say so."""
        capture, policy = self.capture, self.policy
        if not capture.consent or version is None or capture.forget_pending():
            return
        when = policy.when
        if when == "low_confidence" and confidence >= policy.low_confidence_below:
            return
        if when == "drifted" and (raw is None or self._drifted is None or not self._drifted(raw)):
            return
        if policy.rate < 1.0 and capture.rng.random() >= policy.rate:
            return
        try:
            capture.keep(self.model, version, policy, prediction_id, seen, predicted, confidence)
        except PocketMLError as exc:  # a full disk must not break predictions
            logger.warning("cannot capture a sample: %s", exc)


def drift_check(
    policy: CapturePolicy, profile: ReferenceProfile | None, layout: str | None
) -> Callable[[Any], bool] | None:
    """``raw -> bool``: does a monitored feature fall in one of the policy's drifted bins."""
    if policy.when != "drifted" or profile is None or layout is None or not policy.drifted_bins:
        return None
    names = [b.name for b in profile.bins]
    watched = [
        (names.index(name), profile.bins[names.index(name)], frozenset(bins))
        for name, bins in policy.drifted_bins.items()
        if name in names and profile.bins[names.index(name)].kind == "numeric"
    ]
    if not watched:
        return None

    def drifted(raw: Any) -> bool:
        try:
            return _in_bins(np.asarray(raw, dtype=np.float64))
        except (ValueError, KeyError, IndexError):  # features the profile cannot read: skip
            return False

    def _in_bins(x: np.ndarray) -> bool:
        if layout == "NC":
            values = x.reshape(-1)
        else:
            if x.ndim == LAYOUT_RANK.get(layout, 0) - 1:
                x = x[np.newaxis]
            found = input_features(x, layout)
            values = np.asarray([float(found[b.name][0]) for b in profile.bins])
        return any(
            int(b.assign(values[i : i + 1])[0]) in bins for i, b, bins in watched if i < values.size
        )

    return drifted
