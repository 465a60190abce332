"""The poisoned-feedback defence: which labelled samples a retraining job may trust.

Pure numpy over ``LabelledSamples``, in four steps (docs/loop.md "Poisoned feedback"):

1. **Caps.** A device counts at most ``max_per_device`` samples. Which ones is
   deterministic and not the sender's choice: the ones whose ``sha256(sample_id)`` is
   smallest, so re-sending or re-ordering changes nothing and flooding buys nothing.
2. **Teacher agreement.** Where the teacher (the champion's cloud model) is confident (top
   probability >= ``teacher_confidence``) its answer is a check: a label that differs is a
   disagreement. Honest devices disagree too where the world drifted (that is why we
   retrain), so one disagreement never drops a sample; it only feeds the device's rate.
3. **Neighbour agreement.** Inputs are standardised robustly (median / MAD per feature) and
   quantised into cells of ``neighbour_quantum``; in a cell where at least
   ``min_neighbour_devices`` OTHER devices labelled, their majority label is a check on
   each device's label there.
4. **Outlier devices.** A device's disagreement rate (both checks pooled) is compared with
   the fleet's (median and MAD over devices with ``min_checked`` checks): robust z = (rate -
   median) / max(1.4826 MAD, ``min_scale``). A device is excluded with every sample it
   sent when z >= ``outlier_z``, its rate >= ``outlier_floor``, AND its disagreements are
   improbable for an honest device: the binomial tail P(X >= d | n checks, p = max(median,
   ``min_scale``)) < ``outlier_p``. The tail is what makes a device with few checks
   judgeable (3 disagreements of 3 checks: p = 1e-4; 2 of 3: 7e-3, kept) without letting
   one unlucky check exclude anyone.

What it does not stop: a colluding majority (the median and the neighbour majority are
theirs); flips restricted to inputs the teacher is unsure of and that no other device
labels (no check sees them, only the caps bound them); a patient attacker who keeps each
device's rate under the floor (the caps bound that harm to ``max_per_device`` samples per
device); and many fake devices (device ids are not identities — bound them with the app's
device keys and rate limits).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pocketml.errors import InvalidInput
from pocketml.loop._policy import TrustPolicy
from pocketml.loop._types import LabelledSamples

__all__ = ["DeviceTrust", "TrustReport", "filter_samples", "sample_rank"]


@dataclass(frozen=True)
class DeviceTrust:
    """What the filter decided about one device, and why."""

    device_id: str
    samples: int
    capped: int
    teacher_checked: int
    teacher_disagreed: int
    neighbour_checked: int
    neighbour_disagreed: int
    disagreement_rate: float | None
    robust_z: float | None
    p_value: float | None
    excluded: bool
    reason: str | None
    kept: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class TrustReport:
    """The kept samples and a line per device."""

    kept: LabelledSamples
    devices: tuple[DeviceTrust, ...]
    fleet_median_rate: float | None
    fleet_mad: float | None

    @property
    def excluded_devices(self) -> tuple[str, ...]:
        """The devices whose samples were all dropped as outliers."""
        return tuple(d.device_id for d in self.devices if d.excluded)

    def summary(self) -> dict[str, Any]:
        """Counts for a job's record (the per-device lines are in ``devices``)."""
        return {
            "samples": sum(d.samples for d in self.devices),
            "kept": len(self.kept),
            "capped": sum(d.capped for d in self.devices),
            "devices": len(self.devices),
            "excluded_devices": list(self.excluded_devices),
            "fleet_median_rate": self.fleet_median_rate,
            "fleet_mad": self.fleet_mad,
        }


def sample_rank(sample_ids: np.ndarray) -> np.ndarray:
    """A deterministic pseudo-random rank per sample id (the first 8 bytes of its sha256)."""
    return np.array(
        [int.from_bytes(hashlib.sha256(str(s).encode()).digest()[:8], "big") for s in sample_ids],
        dtype=np.uint64,
    )


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): how surprising k disagreements of n checks are."""
    return float(sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(max(k, 0), n + 1)))


def _counts(rows: np.ndarray, *flags: np.ndarray) -> tuple[int, ...]:
    return tuple(int(flag[rows].sum()) for flag in flags)


def _cap(samples: LabelledSamples, limit: int) -> np.ndarray:
    """Indices kept by the per-device cap: each device's ``limit`` smallest ranks."""
    ranks = sample_rank(samples.sample_id)
    order = np.lexsort((ranks, samples.device_id.astype(str)))
    devices = samples.device_id.astype(str)[order]
    first = np.r_[True, devices[1:] != devices[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    position = np.arange(len(order)) - group_start
    return np.sort(order[position < limit])


def _cells(features: np.ndarray, quantum: float) -> np.ndarray:
    """A hashable cell key per row: robust-standardised features quantised to ``quantum``."""
    flat = features.reshape(len(features), -1).astype(np.float64)
    median = np.median(flat, axis=0)
    mad = np.median(np.abs(flat - median), axis=0) * 1.4826
    spread = np.where(mad > 0, mad, np.maximum(flat.std(axis=0), 1.0))
    cells = np.floor((flat - median) / (spread * quantum)).astype(np.int64)
    return np.array([hashlib.sha1(row.tobytes()).hexdigest() for row in cells])


def _neighbour_checks(
    cells: np.ndarray, devices: np.ndarray, labels: np.ndarray, min_devices: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: (checked, disagreed) against the majority of OTHER devices in its cell."""
    checked = np.zeros(len(cells), dtype=bool)
    disagreed = np.zeros(len(cells), dtype=bool)
    by_cell: dict[str, list[int]] = defaultdict(list)
    for i, cell in enumerate(cells):
        by_cell[cell].append(i)
    for rows in by_cell.values():
        if len({devices[i] for i in rows}) <= min_devices:
            continue
        # one vote per device and label (a device repeating itself is still one voice)
        votes = {(devices[i], int(labels[i])) for i in rows}
        for i in rows:
            others = Counter(label for device, label in votes if device != devices[i])
            voters = len({device for device, _ in votes if device != devices[i]})
            if voters < min_devices:
                continue
            label, count = others.most_common(1)[0]
            if count * 2 <= sum(others.values()):
                continue  # no majority among the others: no check
            checked[i] = True
            disagreed[i] = label != int(labels[i])
    return checked, disagreed


def filter_samples(
    samples: LabelledSamples, teacher: np.ndarray | None, policy: TrustPolicy
) -> TrustReport:
    """Keep the samples the loop may train and gate on.

    Args:
        samples: the model's labelled samples.
        teacher: (N, classes) probabilities of the champion's cloud model on
            ``samples.features``, or None (no teacher check).
        policy: the model's trust settings.

    Returns:
        The kept samples and one ``DeviceTrust`` per device.

    Raises:
        InvalidInput: ``teacher`` has the wrong number of rows.
    """
    if teacher is not None and len(teacher) != len(samples):
        raise InvalidInput(f"teacher has {len(teacher)} rows; samples {len(samples)}")
    if len(samples) == 0:
        return TrustReport(samples, (), None, None)
    kept_index = _cap(samples, policy.max_per_device)
    capped = samples.select(kept_index)
    devices = capped.device_id.astype(str)
    labels = capped.labels.astype(np.int64)

    t_checked = np.zeros(len(capped), dtype=bool)
    t_disagreed = np.zeros(len(capped), dtype=bool)
    if teacher is not None:
        probs = np.asarray(teacher, dtype=np.float64)[kept_index]
        t_checked = probs.max(axis=1) >= policy.teacher_confidence
        t_disagreed = t_checked & (probs.argmax(axis=1) != labels)
    cells = _cells(capped.features, policy.neighbour_quantum)
    n_checked, n_disagreed = _neighbour_checks(cells, devices, labels, policy.min_neighbour_devices)

    all_devices = samples.device_id.astype(str)
    names = sorted(set(all_devices.tolist()))
    counts = {name: _counts(devices == name, t_checked, t_disagreed, n_checked, n_disagreed)
              for name in names}  # fmt: skip
    rates = {name: (c[1] + c[3]) / (c[0] + c[2]) for name, c in counts.items() if c[0] + c[2] > 0}
    judged = [r for name, r in rates.items() if sum(counts[name][::2]) >= policy.min_checked]
    pool = judged or list(rates.values())
    median = float(np.median(pool)) if pool else None
    mad = float(np.median(np.abs(np.array(pool) - median))) if median is not None else None
    scale = max(1.4826 * (mad or 0.0), policy.min_scale)
    base = max(median or 0.0, policy.min_scale)  # the rate an honest device disagrees at

    excluded: set[str] = set()
    lines: list[DeviceTrust] = []
    for name in names:
        rate = rates.get(name)
        checks, disagreed = counts[name][0] + counts[name][2], counts[name][1] + counts[name][3]
        z = None if rate is None or median is None else (rate - median) / scale
        p = binomial_tail(disagreed, checks, base) if checks else None
        reason = None
        if (
            rate is not None
            and z is not None
            and p is not None
            and z >= policy.outlier_z
            and rate >= policy.outlier_floor
            and p < policy.outlier_p
        ):
            excluded.add(name)
            reason = (
                f"disagreed {disagreed} of {checks} checks ({rate:.2f}) vs fleet median "
                f"{median:.2f}: robust z {z:.1f}, binomial p {p:.1e}"
            )
        sent = int((all_devices == name).sum())
        in_cap = int((devices == name).sum())
        lines.append(
            DeviceTrust(
                device_id=name,
                samples=sent,
                capped=sent - in_cap,
                teacher_checked=counts[name][0],
                teacher_disagreed=counts[name][1],
                neighbour_checked=counts[name][2],
                neighbour_disagreed=counts[name][3],
                disagreement_rate=rate,
                robust_z=z,
                p_value=p,
                excluded=name in excluded,
                reason=reason,
                kept=0 if name in excluded else in_cap,
            )
        )
    keep = ~np.isin(devices, sorted(excluded))
    return TrustReport(capped.select(keep), tuple(lines), median, mad)
