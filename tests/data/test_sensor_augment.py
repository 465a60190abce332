"""Sensor augmentations on NCL windows: time shift (padded or circular) and jitter."""

from __future__ import annotations

import numpy as np
import pytest

from pocketml.data import (
    Augmentation,
    Dataset,
    augment_dataset,
    check_augmentations,
    from_arrays,
    load_digits,
    parse_augmentations,
)
from pocketml.errors import InvalidInput


def _windows(n: int = 64, channels: int = 3, length: int = 32) -> Dataset:
    rng = np.random.default_rng(0)
    t = np.arange(length, dtype=np.float32)
    x = np.stack([np.sin(t / (c + 2)) * (c + 1) for c in range(channels)])[None] + rng.normal(
        0, 0.01, size=(n, channels, length)
    )
    return from_arrays(x.astype(np.float32), np.arange(n) % 2, layout="NCL", name="imu")


def test_shift_moves_each_window_along_time_and_repeats_the_edge_sample() -> None:
    windows = _windows()
    shifted = augment_dataset(windows, [Augmentation("shift", 4)], seed=1).features
    x = windows.features
    for i in range(len(x)):
        offset = next(
            d
            for d in range(-4, 5)
            if np.allclose(shifted[i, :, 4:-4], np.roll(x[i], d, axis=1)[:, 4:-4])
        )
        if offset > 0:
            assert np.array_equal(shifted[i, :, :offset], np.repeat(x[i, :, :1], offset, axis=1))
        elif offset < 0:
            assert np.array_equal(shifted[i, :, offset:], np.repeat(x[i, :, -1:], -offset, axis=1))
    assert not np.array_equal(shifted, x)


def test_roll_is_a_circular_shift_that_keeps_every_value() -> None:
    windows = _windows()
    rolled = augment_dataset(windows, [Augmentation("roll", 8)], seed=2).features
    offsets = [
        next(
            d
            for d in range(-8, 9)
            if np.array_equal(rolled[i], np.roll(windows.features[i], d, axis=1))
        )
        for i in range(len(rolled))
    ]
    assert len(set(offsets)) > 3  # offsets are drawn per window


def test_jitter_adds_noise_scaled_to_each_channels_std() -> None:
    windows = _windows(n=512, channels=3)
    jittered = augment_dataset(windows, [Augmentation("jitter", 0.1)], seed=3).features
    added = (jittered - windows.features).std(axis=(0, 2))
    expected = 0.1 * windows.features.std(axis=(0, 2))
    assert np.allclose(added, expected, rtol=0.05)
    assert added[2] > 2 * added[0]  # channel 2 swings 3x as far as channel 0


def test_the_same_seed_gives_the_same_augmented_windows() -> None:
    windows = _windows()
    augs = parse_augmentations("shift=8,jitter=0.05")
    first = augment_dataset(windows, augs, seed=5).features
    assert np.array_equal(first, augment_dataset(windows, augs, seed=5).features)
    assert not np.array_equal(first, augment_dataset(windows, augs, seed=6).features)


def test_parse_reads_sensor_augmentations_with_their_values() -> None:
    assert parse_augmentations("shift=8,jitter=0.05", layout="NCL") == [
        Augmentation("shift", 8.0),
        Augmentation("jitter", 0.05),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("shift=2.5", "whole number of time steps"),
        ("shift=-1", "whole number of time steps"),
        ("jitter=3", r"in \[0, 1\]"),
    ],
)
def test_bad_sensor_values_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_augmentations(text)


def test_a_shift_as_long_as_the_window_is_refused() -> None:
    with pytest.raises(InvalidInput, match="at most 31"):
        augment_dataset(_windows(length=32), [Augmentation("shift", 32)])


def test_sensor_augmentations_on_images_are_refused_naming_the_image_ones() -> None:
    with pytest.raises(InvalidInput, match=r"\['shift'\] do not fit NCHW images.*use dim, blur"):
        augment_dataset(load_digits(), parse_augmentations("shift=2"))


def test_image_augmentations_on_sensor_windows_are_refused_naming_the_sensor_ones() -> None:
    with pytest.raises(InvalidInput, match=r"'rotate' is for NCHW images.*use shift, roll, jitter"):
        parse_augmentations("rotate=0.3,jitter=0.1", layout="NCL")


def test_a_table_takes_no_augmentation() -> None:
    with pytest.raises(InvalidInput, match="no augmentations for NC data"):
        check_augmentations([Augmentation("jitter", 0.1)], "NC")
