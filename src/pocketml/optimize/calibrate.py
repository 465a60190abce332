"""Calibration of the hybrid cascade threshold from validation data.

In ``cascade`` mode a device answers from its own model when the top probability is at
least the threshold, and asks the cloud model otherwise. A higher threshold sends more
requests to the cloud (accuracy up, cost and latency up). Given the device model's and the
cloud model's probabilities on the same validation samples, ``calibrate_threshold`` walks
every threshold that changes the outcome and picks:

- with ``target_accuracy`` (absolute, or ``relative_to_cloud`` = a share of the cloud
  model's accuracy): the smallest cloud share whose cascade accuracy reaches the target;
- with ``max_cloud_share``: the best accuracy whose cloud share stays within it.

The curve (threshold -> accuracy, cloud share) comes back as a table and a PNG, and the
chosen threshold goes into the version's hybrid policy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pocketml.errors import InvalidInput

__all__ = ["CalibrationPoint", "CalibrationResult", "calibrate_threshold", "plot_calibration"]


@dataclass(frozen=True)
class CalibrationPoint:
    """One threshold on the curve."""

    threshold: float
    accuracy: float
    cloud_share: float


@dataclass(frozen=True)
class CalibrationResult:
    """The chosen threshold, what it achieves, and the whole curve."""

    threshold: float
    accuracy: float
    cloud_share: float
    local_accuracy: float
    cloud_accuracy: float
    target: str
    met: bool
    curve: tuple[CalibrationPoint, ...]
    samples: int

    @property
    def share_of_cloud_accuracy(self) -> float:
        """Cascade accuracy as a share of the cloud model's accuracy."""
        return self.accuracy / self.cloud_accuracy if self.cloud_accuracy else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the curve included)."""
        data = asdict(self)
        data["share_of_cloud_accuracy"] = self.share_of_cloud_accuracy
        return data

    def summary(self) -> str:
        """One sentence for people."""
        verdict = "meets" if self.met else "cannot meet"
        return (
            f"threshold {self.threshold:.3f}: cascade accuracy {self.accuracy:.4f} "
            f"({self.share_of_cloud_accuracy:.1%} of the cloud model's {self.cloud_accuracy:.4f}) "
            f"with {self.cloud_share:.1%} of requests sent to the cloud; {verdict} {self.target} "
            f"(device alone {self.local_accuracy:.4f}, {self.samples} samples)"
        )


def _curve(local: np.ndarray, cloud: np.ndarray, labels: np.ndarray) -> list[CalibrationPoint]:
    confidence = local.max(axis=1)
    local_ok = local.argmax(axis=1) == labels
    cloud_ok = cloud.argmax(axis=1) == labels
    order = np.argsort(confidence)
    n = len(labels)
    # Escalating the k least confident samples: accuracy = cloud on those + local on the rest.
    cloud_prefix = np.concatenate([[0], np.cumsum(cloud_ok[order])])
    local_suffix = np.concatenate([np.cumsum(local_ok[order][::-1])[::-1], [0]])
    points = []
    sorted_conf = confidence[order]
    for k in range(n + 1):
        # threshold that escalates exactly the first k samples (ties move together)
        if 0 < k < n and sorted_conf[k] == sorted_conf[k - 1]:
            continue
        threshold = 0.0 if k == 0 else float(np.nextafter(sorted_conf[k - 1], np.inf))
        if k == n:
            threshold = float(np.nextafter(sorted_conf[-1], np.inf)) if n else 1.0
        accuracy = (cloud_prefix[k] + local_suffix[k]) / n
        points.append(CalibrationPoint(min(threshold, 1.0), float(accuracy), k / n))
    return points


def calibrate_threshold(
    local_probabilities: np.ndarray,
    cloud_probabilities: np.ndarray,
    labels: np.ndarray,
    *,
    target_accuracy: float | None = None,
    relative_to_cloud: float | None = None,
    max_cloud_share: float | None = None,
    bootstrap: int = 0,
    quantile: float = 0.9,
    seed: int = 0,
) -> CalibrationResult:
    """Choose the cascade threshold from validation predictions of both models.

    Args:
        local_probabilities: device model probabilities (N, classes).
        cloud_probabilities: cloud model probabilities on the same samples (N, classes).
        labels: true class indices (N,).
        target_accuracy: reach this cascade accuracy with the least cloud traffic.
        relative_to_cloud: or reach this share of the cloud model's accuracy (e.g. 0.99).
        max_cloud_share: or get the best accuracy sending at most this share to the cloud.
        bootstrap: with an accuracy target, resample the validation set this many times,
            calibrate on each resample and keep the ``quantile`` of their thresholds: a
            conservative threshold that holds up when production data is a little harder
            than validation data (the reported numbers are those of the full set at it).
        quantile: which quantile of the bootstrap thresholds to keep (0.9 = cautious).
        seed: seed of the resampling.

    Returns:
        The chosen point; when the target cannot be met, the closest point with ``met``
        False (the most accurate one, or the one with the most allowed cloud share).

    Raises:
        InvalidInput: shapes that do not match, or not exactly one target.
    """
    local = np.asarray(local_probabilities, dtype=np.float64)
    cloud = np.asarray(cloud_probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    if local.ndim != 2 or local.shape != cloud.shape or labels.shape != (local.shape[0],):
        raise InvalidInput(
            "local and cloud probabilities must both be (N, classes) with labels (N,); got "
            f"{local.shape}, {cloud.shape} and {labels.shape}"
        )
    if local.shape[0] == 0:
        raise InvalidInput("calibration needs at least one validation sample")
    targets = [t for t in (target_accuracy, relative_to_cloud, max_cloud_share) if t is not None]
    if len(targets) != 1:
        raise InvalidInput(
            "pass exactly one of target_accuracy, relative_to_cloud or max_cloud_share"
        )
    if not 0.0 <= targets[0] <= 1.0:
        raise InvalidInput(f"the calibration target must be in [0, 1]; got {targets[0]}")
    if bootstrap < 0 or not 0.0 <= quantile <= 1.0:
        raise InvalidInput(
            f"bootstrap must be >= 0 and quantile in [0, 1]; got {bootstrap}, {quantile}"
        )
    curve = _curve(local, cloud, labels)
    local_accuracy = curve[0].accuracy
    cloud_accuracy = float(np.mean(cloud.argmax(axis=1) == labels))
    if max_cloud_share is not None:
        allowed = [p for p in curve if p.cloud_share <= max_cloud_share + 1e-12]
        best = max(allowed, key=lambda p: (p.accuracy, -p.cloud_share))
        target, met = f"a cloud share <= {max_cloud_share:.0%}", True
    else:
        goal = (
            target_accuracy
            if target_accuracy is not None
            else (relative_to_cloud or 0) * cloud_accuracy
        )
        label = (
            f"accuracy >= {target_accuracy:.4f}"
            if target_accuracy is not None
            else f"{relative_to_cloud:.0%} of the cloud accuracy ({goal:.4f})"
        )
        reaching = [p for p in curve if p.accuracy >= goal - 1e-12]
        met = bool(reaching)
        if reaching:
            best = min(reaching, key=lambda p: p.cloud_share)
        else:
            best = max(curve, key=lambda p: p.accuracy)
        target = label
        if bootstrap and met:
            threshold = _bootstrap_threshold(
                local, cloud, labels, bootstrap, quantile, seed, target_accuracy, relative_to_cloud
            )
            best = _point_at(local, cloud, labels, max(threshold, best.threshold))
            target += f", bootstrap q{quantile:.2f} of {bootstrap}"
    return CalibrationResult(
        threshold=best.threshold,
        accuracy=best.accuracy,
        cloud_share=best.cloud_share,
        local_accuracy=local_accuracy,
        cloud_accuracy=cloud_accuracy,
        target=target,
        met=met,
        curve=tuple(curve),
        samples=int(labels.size),
    )


def _point_at(
    local: np.ndarray, cloud: np.ndarray, labels: np.ndarray, threshold: float
) -> CalibrationPoint:
    escalate = local.max(axis=1) < threshold
    answers = np.where(escalate, cloud.argmax(axis=1), local.argmax(axis=1))
    return CalibrationPoint(threshold, float(np.mean(answers == labels)), float(escalate.mean()))


def _bootstrap_threshold(
    local: np.ndarray,
    cloud: np.ndarray,
    labels: np.ndarray,
    rounds: int,
    quantile: float,
    seed: int,
    target_accuracy: float | None,
    relative_to_cloud: float | None,
) -> float:
    rng = np.random.default_rng(seed)
    thresholds = []
    for _ in range(rounds):
        idx = rng.integers(0, len(labels), size=len(labels))
        result = calibrate_threshold(
            local[idx],
            cloud[idx],
            labels[idx],
            target_accuracy=target_accuracy,
            relative_to_cloud=relative_to_cloud,
        )
        thresholds.append(result.threshold)
    return float(np.quantile(thresholds, quantile))


def plot_calibration(result: CalibrationResult, path: Path | str) -> Path:
    """PNG of cascade accuracy against cloud share, with the chosen point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    shares = [p.cloud_share * 100 for p in result.curve]
    accuracies = [p.accuracy * 100 for p in result.curve]
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    axis.plot(shares, accuracies, color="#1f77b4", label="cascade")
    axis.axhline(result.cloud_accuracy * 100, color="#2ca02c", linestyle="--", label="cloud only")
    axis.axhline(result.local_accuracy * 100, color="#ff7f0e", linestyle=":", label="device only")
    axis.scatter(
        [result.cloud_share * 100],
        [result.accuracy * 100],
        color="#d62728",
        zorder=3,
        label=f"chosen: threshold {result.threshold:.2f}",
    )
    axis.set_xlabel("requests sent to the cloud (%)")
    axis.set_ylabel("accuracy (%)")
    axis.set_title("Hybrid cascade: accuracy vs. cloud share")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
