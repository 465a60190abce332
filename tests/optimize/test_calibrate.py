"""Cascade threshold calibration on constructed data with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pocketml.errors import InvalidInput
from pocketml.optimize.calibrate import calibrate_threshold, plot_calibration


def _onehot(indices: list[int], confidence: list[float], classes: int = 2) -> np.ndarray:
    probs = np.zeros((len(indices), classes))
    for row, (index, conf) in enumerate(zip(indices, confidence, strict=True)):
        probs[row] = (1 - conf) / (classes - 1)
        probs[row, index] = conf
    return probs


# Four samples. The device is right on the two confident ones and wrong on the two unsure
# ones; the cloud is right everywhere. Escalating the two unsure ones gives 100 %.
LABELS = np.array([0, 1, 0, 1])
LOCAL = _onehot([0, 1, 1, 0], [0.95, 0.9, 0.6, 0.55])
CLOUD = _onehot([0, 1, 0, 1], [0.99, 0.99, 0.99, 0.99])


def test_target_accuracy_picks_the_smallest_cloud_share_that_reaches_it() -> None:
    result = calibrate_threshold(LOCAL, CLOUD, LABELS, target_accuracy=1.0)
    assert result.met
    assert result.accuracy == 1.0
    assert result.cloud_share == 0.5
    assert 0.6 < result.threshold <= 0.9  # escalates the 0.55 and 0.6 samples only
    assert result.local_accuracy == 0.5 and result.cloud_accuracy == 1.0


def test_relative_target_is_a_share_of_the_cloud_accuracy() -> None:
    result = calibrate_threshold(LOCAL, CLOUD, LABELS, relative_to_cloud=0.75)
    assert result.accuracy == 0.75 and result.cloud_share == 0.25


def test_max_cloud_share_gets_the_best_accuracy_within_it() -> None:
    result = calibrate_threshold(LOCAL, CLOUD, LABELS, max_cloud_share=0.25)
    assert result.cloud_share == 0.25 and result.accuracy == 0.75
    assert calibrate_threshold(LOCAL, CLOUD, LABELS, max_cloud_share=0.0).threshold == 0.0


def test_an_unreachable_target_returns_the_best_point_marked_unmet() -> None:
    wrong_cloud = _onehot([1, 0, 1, 0], [0.9] * 4)
    result = calibrate_threshold(LOCAL, wrong_cloud, LABELS, target_accuracy=0.9)
    assert not result.met
    assert result.accuracy == 0.5  # never better than the device alone here
    assert "cannot meet" in result.summary()


def test_the_chosen_threshold_reproduces_its_numbers() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=400)
    local = rng.dirichlet(np.ones(10) * 0.3, size=400)
    cloud = local.copy()
    cloud[np.arange(400), labels] += 1.0
    cloud /= cloud.sum(axis=1, keepdims=True)
    result = calibrate_threshold(local, cloud, labels, relative_to_cloud=0.99)
    escalate = local.max(axis=1) < result.threshold
    answers = np.where(escalate, cloud.argmax(axis=1), local.argmax(axis=1))
    assert np.mean(answers == labels) == pytest.approx(result.accuracy)
    assert escalate.mean() == pytest.approx(result.cloud_share)
    shares = [p.cloud_share for p in result.curve]
    assert shares == sorted(shares) and shares[0] == 0.0 and shares[-1] == 1.0


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(InvalidInput, match="exactly one"):
        calibrate_threshold(LOCAL, CLOUD, LABELS)
    with pytest.raises(InvalidInput, match=r"\(N, classes\)"):
        calibrate_threshold(LOCAL, CLOUD[:2], LABELS, target_accuracy=0.9)
    with pytest.raises(InvalidInput, match=r"in \[0, 1\]"):
        calibrate_threshold(LOCAL, CLOUD, LABELS, max_cloud_share=1.5)


def test_plot_is_written(tmp_path: Path) -> None:
    result = calibrate_threshold(LOCAL, CLOUD, LABELS, target_accuracy=1.0)
    assert plot_calibration(result, tmp_path / "c.png").stat().st_size > 1000


def test_bootstrap_gives_a_threshold_at_least_as_cautious() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, size=300)
    local = rng.dirichlet(np.ones(10) * 0.5, size=300)
    local[np.arange(300), labels] += rng.uniform(0, 1.5, size=300)
    local /= local.sum(axis=1, keepdims=True)
    cloud = np.eye(10)[labels] * 0.9 + 0.01
    plain = calibrate_threshold(local, cloud, labels, relative_to_cloud=0.99)
    robust = calibrate_threshold(local, cloud, labels, relative_to_cloud=0.99, bootstrap=50)
    assert robust.threshold >= plain.threshold
    assert robust.cloud_share >= plain.cloud_share
    assert robust.accuracy >= plain.accuracy
    assert "bootstrap" in robust.target
    again = calibrate_threshold(local, cloud, labels, relative_to_cloud=0.99, bootstrap=50)
    assert again.threshold == robust.threshold  # seeded
