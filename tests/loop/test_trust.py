"""The poisoned-feedback defence on synthetic fleets (pure numpy, no server)."""

from __future__ import annotations

import numpy as np
import pytest
from loop_kit import samples_from, synthetic_fleet

from pocketml.errors import InvalidInput
from pocketml.loop import TrustPolicy, filter_samples


def test_devices_flipping_every_label_are_excluded_and_honest_ones_kept() -> None:
    fleet = synthetic_fleet(devices=50, liar_share=0.2, seed=3)

    report = filter_samples(fleet.samples, fleet.teacher, TrustPolicy())

    assert set(report.excluded_devices) == fleet.liars
    kept_devices = set(report.kept.device_id.tolist())
    assert kept_devices == fleet.honest
    assert len(report.kept) == 40 * len(fleet.honest)
    liar = next(d for d in report.devices if d.device_id in fleet.liars)
    assert liar.kept == 0 and liar.reason is not None and "robust z" in liar.reason


def test_an_honest_fleet_loses_no_device() -> None:
    fleet = synthetic_fleet(devices=40, liar_share=0.0, noise=0.1, seed=5)

    report = filter_samples(fleet.samples, fleet.teacher, TrustPolicy())

    assert report.excluded_devices == ()
    assert len(report.kept) == len(fleet.samples)


def test_honest_devices_disagreeing_with_a_drifted_teacher_are_kept() -> None:
    # The champion is confidently wrong on 30 % of everyone's inputs (the drift the loop
    # retrains for): every device disagrees as often, so nobody is an outlier.
    fleet = synthetic_fleet(devices=30, liar_share=0.0, seed=8)
    rng = np.random.default_rng(0)
    drifted = rng.random(len(fleet.samples)) < 0.3
    teacher = fleet.teacher.copy()
    teacher[drifted] = np.roll(teacher[drifted], 1, axis=1)

    report = filter_samples(fleet.samples, teacher, TrustPolicy())

    assert report.excluded_devices == ()


def test_each_device_counts_at_most_its_cap_whatever_the_order() -> None:
    n = 500
    features = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
    devices = np.array(["flooder"] * 450 + ["quiet"] * 50)
    samples = samples_from(features, np.zeros(n), devices)
    policy = TrustPolicy(max_per_device=100)

    first = filter_samples(samples, None, policy)
    shuffled = samples.select(np.random.default_rng(1).permutation(n))
    second = filter_samples(shuffled, None, policy)

    counts = dict(zip(*np.unique(first.kept.device_id, return_counts=True), strict=True))
    assert counts == {"flooder": 100, "quiet": 50}
    assert set(first.kept.sample_id.tolist()) == set(second.kept.sample_id.tolist())
    flooder = next(d for d in first.devices if d.device_id == "flooder")
    assert (flooder.samples, flooder.capped, flooder.kept) == (450, 350, 100)


def test_a_device_contradicting_other_devices_on_the_same_inputs_is_excluded() -> None:
    # No teacher: 8 devices label the same 20 inputs; one labels every one differently.
    rng = np.random.default_rng(2)
    inputs = rng.normal(0, 5, (20, 6))
    truth = np.arange(20) % 4
    features = np.concatenate([inputs] * 8)
    labels = np.concatenate([truth] * 7 + [(truth + 1) % 4])
    devices = np.repeat([f"d{i}" for i in range(8)], 20)
    samples = samples_from(features, labels, devices, class_names=("a", "b", "c", "d"))

    report = filter_samples(samples, None, TrustPolicy())

    assert report.excluded_devices == ("d7",)
    d7 = next(d for d in report.devices if d.device_id == "d7")
    assert (d7.neighbour_checked, d7.neighbour_disagreed) == (20, 20)


def test_a_teacher_of_the_wrong_length_is_refused() -> None:
    fleet = synthetic_fleet(devices=5, seed=1)

    with pytest.raises(InvalidInput, match="teacher has"):
        filter_samples(fleet.samples, fleet.teacher[:-1], TrustPolicy())


def test_few_checks_exclude_a_device_only_when_its_disagreements_are_improbable() -> None:
    # 30 honest devices agree with a confident teacher on 10 samples each; "unlucky"
    # disagrees on 2 of its 2 samples, "liar" on 4 of its 4.
    fleet = {f"h{i:02d}": (10, 0) for i in range(30)} | {"unlucky": (2, 2), "liar": (4, 4)}
    devices = np.concatenate([[name] * n for name, (n, _) in fleet.items()])
    labels = np.concatenate([[1] * (n - d) + [2] * d for n, d in fleet.values()])
    teacher = np.tile([0.02, 0.9, 0.08], (len(labels), 1))
    features = np.random.default_rng(0).normal(0, 1, (len(labels), 4))
    samples = samples_from(features, labels, devices, class_names=("a", "b", "c"))

    report = filter_samples(samples, teacher, TrustPolicy())

    assert report.excluded_devices == ("liar",)
    lines = {d.device_id: d for d in report.devices}
    assert lines["unlucky"].p_value is not None and lines["unlucky"].p_value > 0.001
    assert lines["liar"].p_value is not None and lines["liar"].p_value < 0.001


def test_neighbours_from_other_devices_find_liars_where_no_input_repeats_and_no_teacher_helps() -> (
    None
):
    # Four well-separated classes; every sample is a fresh noisy input (no two alike), and
    # there is no teacher (the champion is useless in a new world). 4 of 20 devices shift
    # every label by one: only the other devices' labels on similar inputs can tell.
    rng = np.random.default_rng(7)
    centroids = rng.normal(0, 6, (4, 16))
    truth = rng.integers(0, 4, 20 * 25)
    features = centroids[truth] + rng.normal(0, 1.0, (len(truth), 16))
    devices = np.repeat([f"d{i:02d}" for i in range(20)], 25)
    liars = {"d03", "d08", "d13", "d18"}
    labels = np.where(np.isin(devices, sorted(liars)), (truth + 1) % 4, truth)
    samples = samples_from(features, labels, devices, class_names=("a", "b", "c", "d"))

    report = filter_samples(samples, None, TrustPolicy())

    assert set(report.excluded_devices) == liars
    kept = report.kept
    assert (kept.labels == truth[np.isin(samples.sample_id, kept.sample_id)]).all()
    honest = [d for d in report.devices if d.device_id not in liars]
    assert all(d.neighbour_checked >= 15 and d.neighbour_disagreed <= 2 for d in honest)
