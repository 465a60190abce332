"""Rollups: mergeable per-(version, device class) aggregates of closed hours and days.

A long telemetry window (90 days of a busy model is millions of events) must not be read
event by event. ``TelemetryStore`` keeps, per (app, model) and closed span (a UTC day or
hour whose end has passed), one ``telemetry_rollups`` row: a ``Partial`` of the span's
inference and error events, encoded as a small binary blob. Any window or series bucket
is then the merge of the whole closed days and hours it covers plus the raw events of
what is left (window edges that cut an hour, the open hour).

Everything but the latency percentiles merges exactly (counts, shares, mean confidence
up to float rounding of the sum). Latencies are kept as a DDSketch-style histogram of
fixed log-spaced buckets: a latency x > 0 falls in bucket ``i = ceil(log_gamma x)``,
``gamma = (1 + a) / (1 - a)`` with ``a = RELATIVE_ERROR``, and every value of bucket i
is read back as ``2 gamma^i / (gamma + 1)``, within a relative ``a`` of x (0 stays 0).
The p50/p95 are numpy's linear interpolation between the two order statistics around
the rank, each read back from its bucket, so they are within ``RELATIVE_ERROR`` (1 %)
of ``numpy.percentile`` over the same events (a convex combination of values each within
1 % of the exact ones).

Feedback (``feedback_count``, ``accuracy``) is not rolled up: label feedback can arrive
any time for any old prediction, so it is joined at read time, exactly as before, on
the few events of devices that have label feedback (``TelemetryStore.labelled``).
"""

from __future__ import annotations

import functools
import json
import math
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pocketml.telemetry._types import EventRows, MetricsRow

__all__ = [
    "HOUR",
    "RELATIVE_ERROR",
    "SPANS",
    "Cell",
    "Labelled",
    "Partial",
    "metrics_rows",
    "plan",
    "summarise",
]

HOUR = 3600
DAY = 86_400
SPANS = (DAY, HOUR)
"""Rollup spans, largest first: a window uses whole closed days, then hours, then events."""
RELATIVE_ERROR = 0.01
"""The latency sketch's relative error bound for p50/p95 (1 %)."""
_GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
_LOG_GAMMA = math.log(_GAMMA)
_ZERO = np.int32(-(2**31))  # the bucket of latency 0 (and of nothing else)
# counters per group: inferences, errors, cloud, fallback, confidences present
_COUNTERS = 5
_HEADER = struct.Struct("<III")  # groups, histogram entries, key JSON bytes
_VERSION_NONE = -(2**62)  # a null version as an int64 (real versions are >= 1)
# (version, device class) -> a small int, for the whole process (groups are few)
_KEY_IDS: dict[tuple[int | None, str | None], int] = {}
_KEYS: list[tuple[int | None, str | None]] = []
_KEY_LOCK = threading.Lock()


def _key_id(key: tuple[int | None, str | None]) -> int:
    found = _KEY_IDS.get(key)
    if found is not None:
        return found
    with _KEY_LOCK:
        if key not in _KEY_IDS:
            _KEY_IDS[key] = len(_KEYS)
            _KEYS.append(key)
        return _KEY_IDS[key]


def _bucket(latency: np.ndarray) -> np.ndarray:
    """The sketch bucket of each latency (> 0: ceil(log_gamma x); <= 0: ``_ZERO``)."""
    out = np.full(latency.shape, _ZERO, np.int32)
    positive = latency > 0
    out[positive] = np.ceil(np.log(latency[positive]) / _LOG_GAMMA).astype(np.int32)
    return out


def _value(bucket: np.ndarray) -> np.ndarray:
    """The value read back for each bucket (within ``RELATIVE_ERROR`` of its members)."""
    values = 2.0 * np.exp(bucket.astype(np.float64) * _LOG_GAMMA) / (_GAMMA + 1.0)
    return np.where(bucket == _ZERO, 0.0, values)


@dataclass(frozen=True)
class Partial:
    """Mergeable aggregates of some events, per (version, device class) group.

    Attributes:
        keys: the groups, (version, device class).
        counters: int64 (groups, 5): inferences, errors, cloud, fallback, confidences.
        confidence_sum: float64 (groups,): the sum of inference confidences.
        hist_group, hist_bucket, hist_count: the latency histogram, one entry per
            (group index, sketch bucket) with a nonzero count.
    """

    keys: list[tuple[int | None, str | None]]
    counters: np.ndarray
    confidence_sum: np.ndarray
    hist_group: np.ndarray
    hist_bucket: np.ndarray
    hist_count: np.ndarray

    @functools.cached_property
    def key_ids(self) -> np.ndarray:
        """Each group's process-wide key id (``_key_id``), computed once per partial."""
        return np.array([_key_id(key) for key in self.keys], np.int64)

    def encode(self) -> bytes:
        """The rollup blob: a header, the keys as JSON, then the arrays little-endian."""
        keys = json.dumps(self.keys, separators=(",", ":")).encode()
        return b"".join(
            (
                _HEADER.pack(len(self.keys), len(self.hist_group), len(keys)),
                keys,
                self.counters.astype("<i8").tobytes(),
                self.confidence_sum.astype("<f8").tobytes(),
                self.hist_group.astype("<i4").tobytes(),
                self.hist_bucket.astype("<i4").tobytes(),
                self.hist_count.astype("<i8").tobytes(),
            )
        )

    @classmethod
    def decode(cls, blob: bytes) -> Partial:
        """The inverse of ``encode``."""
        groups, entries, key_bytes = _HEADER.unpack_from(blob)
        at = _HEADER.size
        keys = [(k[0], k[1]) for k in json.loads(blob[at : at + key_bytes])]
        at += key_bytes

        def take(dtype: str, count: int) -> np.ndarray:
            nonlocal at
            array = np.frombuffer(blob, dtype, count, at)
            at += array.nbytes
            return array

        counters = take("<i8", groups * _COUNTERS).reshape(groups, _COUNTERS)
        return cls(
            keys=keys,
            counters=counters,
            confidence_sum=take("<f8", groups),
            hist_group=take("<i4", entries),
            hist_bucket=take("<i4", entries),
            hist_count=take("<i8", entries),
        )


def _mask(column: pa.Array, value: str) -> np.ndarray:
    return np.asarray(pc.fill_null(pc.equal(column, value), False).to_numpy(zero_copy_only=False))


def _floats(column: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(column, np.nan).to_numpy(zero_copy_only=False), np.float64)


def summarise(events: EventRows, cells: np.ndarray) -> dict[int, Partial]:
    """The ``Partial`` of each cell's events (``cells[i]`` is event i's cell number).

    Args:
        events: inference and error events (feedback columns are ignored).
        cells: int64, one cell number per event (e.g. the span or bucket it falls in).
    """
    if len(events) == 0:
        return {}
    versions = np.asarray(
        pc.fill_null(events.version, _VERSION_NONE).to_numpy(zero_copy_only=False), np.int64
    )
    encoded = pc.dictionary_encode(events.device_class)
    classes = np.asarray(pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False))
    class_values: list[Any] = encoded.dictionary.to_pylist()
    # one code per (cell, version, class)
    stacked = np.stack([cells.astype(np.int64), versions, classes.astype(np.int64)], axis=1)
    triples, group = np.unique(stacked, axis=0, return_inverse=True)
    group = group.reshape(-1)
    n = len(triples)
    inference = _mask(events.type, "inference")
    latency = _floats(events.latency_ms)
    confidence = _floats(events.confidence)
    has_conf = inference & ~np.isnan(confidence)
    counters = np.stack(
        [
            np.bincount(group, inference, n),
            np.bincount(group, ~inference, n),
            np.bincount(group, inference & _mask(events.source, "cloud"), n),
            np.bincount(group, inference & _mask(events.source, "fallback"), n),
            np.bincount(group, has_conf, n),
        ],
        axis=1,
    ).astype(np.int64)
    confidence_sum = np.bincount(group[has_conf], confidence[has_conf], n)
    timed = inference & ~np.isnan(latency)
    buckets = _bucket(latency[timed])
    pairs, pair_count = np.unique(
        np.stack([group[timed].astype(np.int64), buckets.astype(np.int64)], axis=1),
        axis=0,
        return_counts=True,
    )
    pairs = pairs.reshape(-1, 2)
    result: dict[int, Partial] = {}
    cell_of_group = triples[:, 0]
    starts = np.searchsorted(cell_of_group, np.unique(cell_of_group))
    ends = [*starts[1:], n]
    for start, end in zip(starts, ends, strict=True):
        cell = int(cell_of_group[start])
        lo, hi = np.searchsorted(pairs[:, 0], [start, end])
        result[cell] = Partial(
            keys=[
                (None if v == _VERSION_NONE else int(v), None if c < 0 else class_values[c])
                for _, v, c in triples[start:end].tolist()
            ],
            counters=counters[start:end],
            confidence_sum=confidence_sum[start:end],
            hist_group=(pairs[lo:hi, 0] - start).astype(np.int32),
            hist_bucket=pairs[lo:hi, 1].astype(np.int32),
            hist_count=pair_count[lo:hi].astype(np.int64),
        )
    return result


@dataclass(frozen=True)
class Labelled:
    """Inference events that have label feedback: their cell, group, and correctness."""

    cells: np.ndarray
    versions: pa.Array
    device_classes: pa.Array
    correct: np.ndarray


@dataclass(frozen=True)
class Cell:
    """One output window of a read: [since, until) and its ``Partial`` s to merge."""

    since: float
    until: float
    parts: list[Partial]


def _percentiles(
    cells: np.ndarray, buckets: np.ndarray, counts: np.ndarray, groups: int, q: float
) -> np.ndarray:
    """Per group, numpy's linear-interpolated percentile ``q`` of a merged histogram.

    ``cells`` (the group of each histogram entry) must be sorted, buckets ascending
    within a group. NaN for a group without latencies.
    """
    out = np.full(groups, np.nan)
    if len(cells) == 0:
        return out
    totals = np.bincount(cells, counts, groups).astype(np.int64)
    cum = np.cumsum(counts)
    before = np.concatenate(([0], np.cumsum(totals)))[:-1]  # latencies in earlier groups
    has = totals > 0
    position = q / 100.0 * (totals[has] - 1)
    low = np.floor(position).astype(np.int64)
    fraction = position - low
    high = np.minimum(low + 1, totals[has] - 1)
    values = _value(buckets)
    # rank r (0-based) of group g is the first entry with cum > before[g] + r
    at_low = np.searchsorted(cum, before[has] + low, side="right")
    at_high = np.searchsorted(cum, before[has] + high, side="right")
    a, b = values[at_low], values[at_high]
    out[has] = a + (b - a) * fraction
    return out


_DENSE_LIMIT = 4_000_000  # groups x bucket range merged as one dense bincount up to this


def _merge_histograms(
    group: np.ndarray, bucket: np.ndarray, count: np.ndarray, groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Histogram entries (group, bucket, count) with equal (group, bucket) merged, sorted
    by group then bucket. Dense (one bincount over groups x the bucket range) when small
    enough, else sorted with ``np.unique``; both give the same merged histogram."""
    real = bucket != _ZERO
    if real.any():
        low, high = int(bucket[real].min()), int(bucket[real].max())
    else:
        low = high = 0
    width = high - low + 2  # slot 0: latency 0, then low..high
    if len(group) and groups * width <= _DENSE_LIMIT:
        slot = np.where(real, bucket - low + 1, 0)
        dense = np.bincount(group * width + slot, count, groups * width).reshape(groups, width)
        nonzero = np.nonzero(dense)
        merged_group = nonzero[0]
        slots = nonzero[1]
        merged_bucket = np.where(slots == 0, _ZERO, slots - 1 + low).astype(np.int32)
        merged_count = dense[nonzero].astype(np.int64)
    else:
        key = group * (2**33) + (bucket + 2**31 + 1)
        merged, inverse = np.unique(key, return_inverse=True)
        merged_count = np.bincount(inverse.reshape(-1), count, len(merged)).astype(np.int64)
        merged_group = merged // (2**33)
        merged_bucket = (merged % (2**33) - 2**31 - 1).astype(np.int32)
    return merged_group, merged_bucket, merged_count


def metrics_rows(
    cells: Sequence[Cell], labelled: Labelled | None, *, total: bool = False
) -> list[list[MetricsRow]]:
    """Merge each cell's parts into ``MetricsRow`` s, sorted like ``aggregate_events``.

    ``total``: one more list at the end, all cells together (merged from the cells' merged
    groups, not from the parts again; ``labelled`` cells refer to ``cells`` only).
    """
    out = len(cells) + (1 if total else 0)
    parts = [(c, part) for c, cell in enumerate(cells) for part in cell.parts if part.keys]
    if not parts:
        return [[] for _ in range(out)]
    key_ids = [part.key_ids for _, part in parts]
    width = max(int(ids.max()) for ids in key_ids) + 1
    sizes = np.array([len(ids) for ids in key_ids], np.int64)
    codes = np.repeat(np.array([c for c, _ in parts], np.int64), sizes) * width + np.concatenate(
        key_ids
    )
    unique_codes, groups = np.unique(codes, return_inverse=True)
    groups = groups.reshape(-1)
    n = len(unique_codes)
    stacked = np.concatenate([part.counters for _, part in parts])
    counters = np.stack(
        [np.bincount(groups, stacked[:, k], n) for k in range(_COUNTERS)], axis=1
    ).astype(np.int64)  # float64 sums of int64 counts: exact below 2**53
    confidence = np.bincount(groups, np.concatenate([p.confidence_sum for _, p in parts]), n)
    first = np.concatenate(([0], np.cumsum(sizes)[:-1]))  # each part's first key position
    entries = np.array([len(part.hist_group) for _, part in parts], np.int64)
    h_group = groups[
        np.concatenate([part.hist_group for _, part in parts]) + np.repeat(first, entries)
    ]
    h_bucket = np.concatenate([part.hist_bucket for _, part in parts]).astype(np.int64)
    h_count = np.concatenate([part.hist_count for _, part in parts])
    merged = _merge_histograms(h_group, h_bucket, h_count, n)
    p50 = _percentiles(*merged, n, 50)
    p95 = _percentiles(*merged, n, 95)
    index = {
        (int(code) // width, *_KEYS[int(code) % width]): g
        for g, code in enumerate(unique_codes.tolist())
    }
    if total:  # the whole window: the cells' groups summed per key
        keys_of, into = np.unique(unique_codes % width, return_inverse=True)
        into = into.reshape(-1)
        m = len(keys_of)
        counters = np.concatenate(
            [
                counters,
                np.stack(
                    [np.bincount(into, counters[:, k], m) for k in range(_COUNTERS)], axis=1
                ).astype(np.int64),
            ]
        )
        confidence = np.concatenate([confidence, np.bincount(into, confidence, m)])
        whole = _merge_histograms(into[merged[0]], merged[1].astype(np.int64), merged[2], m)
        p50 = np.concatenate([p50, _percentiles(*whole, m, 50)])
        p95 = np.concatenate([p95, _percentiles(*whole, m, 95)])
        index.update({(len(cells), *_KEYS[int(k)]): n + j for j, k in enumerate(keys_of)})
        n += m
    feedback = np.zeros(n, np.int64)
    correct = np.zeros(n, np.int64)
    if labelled is not None and len(labelled.cells):
        found = [
            index.get((int(c), v, d))
            for c, v, d in zip(
                labelled.cells.tolist(),
                labelled.versions.to_pylist(),
                labelled.device_classes.to_pylist(),
                strict=True,
            )
        ]
        if total:
            found += [
                index.get((len(cells), v, d))
                for v, d in zip(
                    labelled.versions.to_pylist(), labelled.device_classes.to_pylist(), strict=True
                )
            ]
        rights = labelled.correct.tolist() * (2 if total else 1)
        for g, right in zip(found, rights, strict=True):
            if g is not None:
                feedback[g] += 1
                correct[g] += bool(right)
    result: list[list[MetricsRow]] = [[] for _ in range(out)]
    counter_rows = counters.tolist()
    p50_list, p95_list = p50.tolist(), p95.tolist()
    confidence_list, feedback_list, correct_list = (
        confidence.tolist(),
        feedback.tolist(),
        correct.tolist(),
    )
    for (c, version, device_class), g in index.items():
        count, errors, cloud, fallback, confident = counter_rows[g]
        low, high = p50_list[g], p95_list[g]
        result[c].append(
            MetricsRow(
                version=version,
                device_class=device_class,
                count=count,
                errors=errors,
                latency_p50_ms=None if math.isnan(low) else low,
                latency_p95_ms=None if math.isnan(high) else high,
                error_rate=_share(errors, count + errors),
                cloud_share=_share(cloud, count),
                fallback_share=_share(fallback, count),
                mean_confidence=confidence_list[g] / confident if confident else None,
                feedback_count=feedback_list[g],
                accuracy=_share(correct_list[g], feedback_list[g]),
            )
        )
    for rows in result:
        rows.sort(key=lambda m: (-(m.version or 0), m.device_class or ""))
    return result


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True)
class Piece:
    """A part of a read window: a rollup span (``span`` > 0) or raw events (``span`` 0)."""

    cell: int
    since: float
    until: float
    span: int


def plan(edges: Sequence[float], closed_until: float) -> Iterator[Piece]:
    """Cover each cell [edges[i], edges[i+1]) with closed spans, largest first, and raw
    pieces for the rest (adjacent raw pieces of one cell are one piece).

    Args:
        edges: ascending cell boundaries, unix seconds.
        closed_until: spans must end at or before this (the clock: the open hour is raw).
    """
    for c in range(len(edges) - 1):
        t, end = edges[c], edges[c + 1]
        raw_from: float | None = None
        while t < end:
            for span in SPANS:
                if t % span == 0 and t + span <= end and t + span <= closed_until:
                    if raw_from is not None:
                        yield Piece(c, raw_from, t, 0)
                        raw_from = None
                    yield Piece(c, t, t + span, span)
                    t += span
                    break
            else:
                if raw_from is None:
                    raw_from = t
                aligned = math.floor(t / HOUR) * HOUR + HOUR
                t = min(end, aligned) if aligned + 0 <= closed_until else end
        if raw_from is not None:
            yield Piece(c, raw_from, end, 0)
