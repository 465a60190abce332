"""On-device sketches: every scored input binned into its version's profile, sent per window.

A version whose package carries ``profile.json`` is sketched: each input the local model
scores adds one to one bin of every block of the profile's layout (each monitored feature
of the RAW input, each PCA projection, the predicted class, the confidence). A window is
aligned to multiples of the policy's ``window_s`` in unix time; it is closed, and sent as
one ``profile`` event through the telemetry queue, when an input arrives after its end,
when it holds ``max_rows`` inputs, or at ``flush()``/``close()``.

**Cost.** The hot path is vectorised: the row's features are one gather (tables) or one
``input_features`` call (images, sensors); the bins of every numeric block are one
comparison against a padded edge matrix (``edges <= value`` counted per row equals
``searchsorted(edges, value, side="right")``, what ``FeatureBins.assign`` does); the counts
take one fancy-index increment. No Python loop runs per bin or per numeric block
(categorical blocks, which device inputs never have, take a small loop).
``benchmarks/sketch_bytes.py`` measures the microseconds per prediction.

**Never fail a prediction.** A profile that does not read, or inputs the binner cannot
take, give one ``error`` event and switch sketching off for that package; the prediction
is returned as if nothing happened. An input with NaN features is skipped (counted in
``skipped``): it lands in no bin.

**An app kill loses little.** Open windows are written to the telemetry queue's SQLite
whenever the telemetry buffer is (every 512 events, at ``flush()`` and ``close()``) and
read back by the next ``Device``; a window whose end passed meanwhile is sent at once.

**Local differential privacy.** With ``epsilon_per_day`` set, a closing window's counts
(and ``n``) get two-sided geometric noise of ``epsilon_per_window``
(``pocketml.sketch.privatize``; noisy counts are sent as they are, never clipped). The
device spends by the plain sum: a window is sent only while the UTC day's spent epsilon
plus its own stays within the budget (kept in the queue's SQLite, so a restart does not
reset it), so the server's ledger (whose composition is never above the sum) never
refuses it. A window that does not fit is withheld (``withheld``). With DP on, windows
close only when they are over (an early close at ``flush()`` would spend a share).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pocketml.device._queue import OpenWindow, TelemetryQueue
from pocketml.protocol import MonitorPolicy, encode_sketch
from pocketml.sketch import (
    CONFIDENCE_BINS,
    CONFIDENCE_BLOCK,
    LAYOUT_RANK,
    PREDICTION_BLOCK,
    ReferenceProfile,
    Sketch,
    SketchLayout,
    input_features,
    privatize,
)

__all__ = ["SketchTracker", "Sketcher"]

logger = logging.getLogger(__name__)

_DAY_S = 86_400


class _Binner:
    """One input's flat bin indices in a profile's layout (vectorised, see the module)."""

    def __init__(self, profile: ReferenceProfile, layout_name: str) -> None:
        self.layout = profile.layout
        self.layout_name = layout_name
        offsets = np.asarray(self.layout.offsets[:-1], dtype=np.int64)
        self.names = tuple(b.name for b in profile.bins)
        # A table's features are its columns, in order, whatever the dataset named them.
        self.columns: np.ndarray | None = None
        if layout_name == "NC":
            self.columns = np.arange(len(self.names), dtype=np.int64)
        numeric = [b for b in profile.bins if b.kind == "numeric"]
        self.numeric = np.asarray([b.kind == "numeric" for b in profile.bins])
        self.edges = _padded([b.edges for b in numeric])
        self.sizes = np.asarray([b.size for b in numeric], dtype=np.int64)
        self.categorical = [
            (i, {c: k for k, c in enumerate(b.categories)}, len(b.categories))
            for i, b in enumerate(profile.bins)
            if b.kind != "numeric"
        ]
        self.feature_offsets = offsets[: len(profile.bins)]
        self.all_numeric = bool(self.numeric.all())
        self.numeric_offsets = self.feature_offsets[self.numeric]
        self.blocks = len(self.layout.names)
        self.projection = profile.projection
        if self.projection is not None:
            index = {name: i for i, name in enumerate(self.names)}
            self.projection_columns = np.asarray(
                [index[c] for c in self.projection.columns], dtype=np.int64
            )
            self.mean = np.asarray(self.projection.mean)
            self.scale = np.asarray(self.projection.scale)
            self.matrix = np.asarray(self.projection.matrix).T
            self.projection_edges = _padded([b.edges for b in profile.projection_bins])
            self.projection_sizes = np.asarray(
                [b.size for b in profile.projection_bins], dtype=np.int64
            )
            start = len(profile.bins)
            self.projection_offsets = offsets[start : start + len(profile.projection_bins)]
        names = self.layout.names
        self.prediction = (
            self.layout.offsets[names.index(PREDICTION_BLOCK)] if PREDICTION_BLOCK in names else -1
        )
        self.classes = profile.num_classes
        self.confidence = (
            self.layout.offsets[names.index(CONFIDENCE_BLOCK)] if CONFIDENCE_BLOCK in names else -1
        )

    def features(self, raw: np.ndarray) -> np.ndarray:
        """The monitored features of one raw input (a batch of one), in the profile's order."""
        if self.columns is not None:
            flat = raw.reshape(-1)
            if flat.size != self.columns.size:
                raise ValueError(
                    f"the input has {flat.size} columns; the profile monitors "
                    f"{self.columns.size} ({', '.join(self.names[:3])}, ...)"
                )
            return flat
        if raw.ndim == LAYOUT_RANK.get(self.layout_name, 0) - 1:  # one sample: a batch of one
            raw = raw[np.newaxis]
        found = input_features(raw, self.layout_name)
        return np.asarray([float(found[name][0]) for name in self.names], dtype=np.float64)

    def indices(self, raw: np.ndarray, predicted: int, confidence: float) -> np.ndarray | None:
        """Flat indices of every block's bin for one input, or None to skip it (NaN).

        One output array, filled by slices: the numeric features' bins, the categorical
        ones (rare), the projections', then the class and the confidence bin.
        """
        values = self.features(raw)
        numeric = values if self.all_numeric else values[self.numeric]
        with np.errstate(invalid="ignore"):  # +inf and -inf in one row sum to NaN
            total = numeric.sum()
        if total != total and np.isnan(numeric).any():
            return None
        out = np.empty(self.blocks, dtype=np.int64)
        count = len(numeric)
        out[:count] = self.numeric_offsets + _bin(self.edges, self.sizes, numeric)
        for position, lookup, other in self.categorical:
            out[count] = self.feature_offsets[position] + lookup.get(str(values[position]), other)
            count += 1
        if self.projection is not None:
            with np.errstate(invalid="ignore"):
                projected = (
                    (values[self.projection_columns] - self.mean) / self.scale
                ) @ self.matrix
            if np.isnan(projected).any():  # infinite features of both signs: no direction
                return None
            bins = _bin(self.projection_edges, self.projection_sizes, projected)
            out[count : count + len(bins)] = self.projection_offsets + bins
            count += len(bins)
        if self.prediction >= 0:
            if not 0 <= predicted < self.classes:
                raise ValueError(
                    f"the model predicted class {predicted}; its profile has {self.classes}."
                )
            out[count] = self.prediction + predicted
            count += 1
        if self.confidence >= 0:
            out[count] = self.confidence + min(
                int(confidence * CONFIDENCE_BINS), CONFIDENCE_BINS - 1
            )
        return out


def _padded(edges: list[tuple[float, ...]]) -> np.ndarray:
    """Edges per row, padded with +inf (which no finite value reaches)."""
    width = max((len(e) for e in edges), default=0)
    out = np.full((len(edges), width), np.inf)
    for row, values in enumerate(edges):
        out[row, : len(values)] = values
    return out


def _bin(edges: np.ndarray, sizes: np.ndarray, values: np.ndarray) -> np.ndarray:
    counted = (edges <= values[:, None]).sum(axis=1)
    return np.minimum(counted, sizes - 1)  # +inf passes the padding too


@dataclass
class _Window:
    """The counts of one model version's open window (guarded by ``lock``)."""

    model: str
    version: int
    layout: SketchLayout
    policy: MonitorPolicy
    start: int
    n: int
    counts: np.ndarray
    lock: threading.Lock = field(default_factory=threading.Lock)
    dirty: bool = False
    closed: bool = False


class SketchTracker:
    """What a ``LocalModel`` holds for its active version: ``add`` per scored input."""

    def __init__(self, sketcher: Sketcher, key: tuple[str, int], binner: _Binner) -> None:
        self._sketcher = sketcher
        self._key = key
        self._binner = binner
        self.enabled = True

    def add(self, raw: Any, predicted: int, confidence: float, ts: float) -> None:
        """Count one scored input; never raises (a failure turns sketching off, reported)."""
        if not self.enabled:
            return
        try:
            indices = self._binner.indices(np.asarray(raw, dtype=np.float64), predicted, confidence)
        except Exception as exc:  # sketching must never fail a prediction
            self.enabled = False
            self._sketcher.report(self._key, f"sketching turned off: {exc}")
            return
        if indices is None:
            self._sketcher.skipped += 1
            return
        self._sketcher.count(self._key, indices, ts)


class Sketcher:
    """The device's open windows, their closing into ``profile`` events, the DP budget.

    Args:
        queue: the telemetry queue (open windows and the day's spent epsilon live there).
        emit: buffers one event dict (``DeviceTelemetry.emit``).
        report_error: ``(model, version, stage, message)`` for an ``error`` event.
        rng: noise for local DP (default: seeded by the OS).
        wall: unix seconds (tests pass a fixed clock).
    """

    def __init__(
        self,
        queue: TelemetryQueue,
        emit: Callable[[dict[str, Any]], None],
        report_error: Callable[[str, int | None, str, str], None],
        *,
        rng: np.random.Generator | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.queue = queue
        self.emit = emit
        self.report_error = report_error
        self.rng = rng if rng is not None else np.random.default_rng()
        self.wall = wall
        self.skipped = 0
        self.withheld = 0
        self._windows: dict[tuple[str, int], _Window] = {}
        self._loaded = False
        self._lock = threading.Lock()

    # -- trackers --------------------------------------------------------------------------

    def tracker(
        self,
        model: str,
        version: int,
        profile: ReferenceProfile,
        layout_name: str,
        policy: MonitorPolicy,
    ) -> SketchTracker | None:
        """The tracker of a version (None when the policy turns sketching off).

        A window of this version persisted by an earlier run is resumed when its layout
        is the profile's.
        """
        if not policy.enabled:
            return None
        try:
            binner = _Binner(profile, layout_name)
        except Exception as exc:  # a broken profile never fails a prediction
            self.report((model, version), f"the profile cannot be used; not sketching: {exc}")
            return None
        key = (model, version)
        self._load()
        with self._lock:
            window = self._windows.get(key)
            if window is not None and window.layout != profile.layout:
                self._windows.pop(key)  # another profile under the same version: not ours
                window = None
            if window is None:
                window = self._new_window(key, profile.layout, policy, self.wall())
                self._windows[key] = window
            window.policy = policy
        return SketchTracker(self, key, binner)

    def report(self, key: tuple[str, int], message: str) -> None:
        """One ``error`` event for a sketching failure of ``key``."""
        logger.warning("sketching %s v%s: %s", key[0], key[1], message)
        self.report_error(key[0], key[1], "inference", message)

    @staticmethod
    def _new_window(
        key: tuple[str, int], layout: SketchLayout, policy: MonitorPolicy, now: float
    ) -> _Window:
        start = int(now // policy.window_s) * policy.window_s
        return _Window(key[0], key[1], layout, policy, start, 0, np.zeros(layout.total, np.int64))

    # -- the hot path ----------------------------------------------------------------------

    def count(self, key: tuple[str, int], indices: np.ndarray, ts: float) -> None:
        """Add one input's bins to ``key``'s window; close windows that are over or full."""
        window = self._windows[key]
        if ts >= window.start + window.policy.window_s:
            self._close(key, now=ts)
        while True:  # a window closed by another thread meanwhile: count in its successor
            window = self._windows[key]
            with window.lock:
                if window.closed:
                    continue
                window.counts[indices] += 1
                window.n += 1
                window.dirty = True
                policy = window.policy
                full = policy.epsilon_per_day is None and window.n >= policy.max_rows
                break
        if full:
            self._close(key, now=ts, keep_start=True)

    # -- closing ---------------------------------------------------------------------------

    def close_windows(self, *, early: bool) -> int:
        """Close every window that is over, and with ``early`` every non-private one too.

        Returns:
            How many ``profile`` events were emitted.
        """
        self._load()
        now = self.wall()
        sent = 0
        for key in list(self._windows):
            window = self._windows[key]
            over = now >= window.start + window.policy.window_s
            if window.n and (over or (early and window.policy.epsilon_per_day is None)):
                sent += self._close(key, now=now)
        return sent

    def _close(self, key: tuple[str, int], *, now: float, keep_start: bool = False) -> int:
        with self._lock:
            old = self._windows[key]
            start = old.start if keep_start else None
            fresh = self._new_window(key, old.layout, old.policy, now)
            if start is not None:
                fresh.start = start
            fresh.dirty = True
            self._windows[key] = fresh
        with old.lock:
            old.closed = True
            n, counts = old.n, old.counts.copy()
        if n == 0:
            return 0
        return self._send(old, Sketch(old.layout, n, counts))

    def _send(self, window: _Window, sketch: Sketch) -> int:
        policy = window.policy
        event: dict[str, Any] = {
            "type": "profile",
            "ts": float(window.start),
            "model": window.model,
            "version": window.version,
        }
        if policy.epsilon_per_day is not None:
            epsilon = policy.epsilon_per_window
            assert epsilon is not None
            day = window.start // _DAY_S
            if not self.queue.spend_privacy(day, epsilon, policy.epsilon_per_day):
                self.withheld += 1
                logger.info(
                    "sketch of %s v%s withheld: the day's epsilon is spent",
                    window.model,
                    window.version,
                )
                return 0
            sketch, _ = privatize(sketch, epsilon, self.rng)
            event["epsilon"] = epsilon
        event["sketch"] = encode_sketch(sketch.counts.tolist())
        event["n"] = sketch.n
        self.emit(event)
        return 1

    # -- persistence -----------------------------------------------------------------------

    def changed_windows(self) -> list[OpenWindow]:
        """The open windows changed since the last call, for the queue's SQLite.

        ``DeviceTelemetry.persist`` writes them in the transaction that queues the
        buffered events (a closed window's event and its empty successor together).
        """
        rows: list[OpenWindow] = []
        with self._lock:
            windows = list(self._windows.values())
        for window in windows:
            with window.lock:
                if not window.dirty:
                    continue
                window.dirty = False
                rows.append(
                    OpenWindow(
                        window.model,
                        window.version,
                        window.start,
                        window.n,
                        window.counts.tobytes(),
                        {"names": list(window.layout.names), "sizes": list(window.layout.sizes)},
                        window.policy.to_dict(),
                    )
                )
        return rows

    def _load(self) -> None:
        """Read the windows an earlier run left open (once; no queue file: none)."""
        if self._loaded:
            return
        if not self.queue.path.exists():  # never create the queue just to find it empty
            self._loaded = True
            return
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            for row in self.queue.open_windows():
                try:  # a row this SDK cannot read (another version wrote it) is dropped
                    layout = SketchLayout(
                        tuple(str(n) for n in row.layout["names"]),
                        tuple(int(s) for s in row.layout["sizes"]),
                    )
                    counts = np.frombuffer(row.counts, dtype=np.int64).copy()
                    policy = MonitorPolicy(**row.policy)
                except (KeyError, TypeError, ValueError):
                    continue
                if counts.size != layout.total or policy.window_s < 1:
                    continue
                self._windows[(row.model, row.version)] = _Window(
                    row.model, row.version, layout, policy, row.start, row.n, counts
                )
