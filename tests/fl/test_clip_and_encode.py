"""Clipping bounds every norm; the fixed-point encoding sums without wrap-around."""

from __future__ import annotations

import numpy as np
import pytest

from pocketml.errors import InvalidInput
from pocketml.fl import FixedPoint, add_gaussian_noise, clip_update, l2_norm


def test_clipping_bounds_every_updates_norm() -> None:
    rng = np.random.default_rng(0)
    updates = [rng.normal(size=50) * scale for scale in np.logspace(-3, 4, 200)]

    clipped = [clip_update(u, 1.5) for u in updates]

    assert max(l2_norm(c) for c, _ in clipped) <= 1.5
    assert any(was for _, was in clipped) and not all(was for _, was in clipped)


def test_an_update_inside_the_bound_is_unchanged() -> None:
    update = np.array([0.3, -0.4])

    clipped, was_clipped = clip_update(update, 1.0)

    assert not was_clipped
    np.testing.assert_array_equal(clipped, update)


def test_clipping_keeps_the_direction() -> None:
    clipped, _ = clip_update(np.array([3.0, 4.0]), 1.0)

    np.testing.assert_allclose(clipped, [0.6, 0.8])


def test_nan_updates_are_refused_by_clipping() -> None:
    with pytest.raises(InvalidInput, match="finite"):
        clip_update(np.array([1.0, np.nan]), 1.0)


def test_local_noise_has_the_requested_spread() -> None:
    noisy = add_gaussian_noise(np.zeros(20_000), 0.5, np.random.default_rng(0))

    assert abs(noisy.std() - 0.5) < 0.01


def test_the_worst_case_sum_of_max_clients_does_not_wrap() -> None:
    enc = FixedPoint(bits=16, clip_norm=2.0, max_clients=50)
    # Every client puts its whole norm on one coordinate with the same sign.
    extreme = [np.array([2.0, 0.0]), np.array([-2.0, 0.0])]

    for sign_update in extreme:
        total = np.zeros(2, dtype=np.uint64)
        for _ in range(50):
            total = enc.add(total, enc.encode(sign_update))
        np.testing.assert_allclose(enc.decode_sum(total), sign_update * 50, atol=50 / enc.scale)


def test_one_more_unit_of_scale_would_wrap() -> None:
    # The bound is tight: the documented scale is the largest integer-valued one.
    enc = FixedPoint(bits=16, clip_norm=1.0, max_clients=50)
    half = 2**15 - 1

    assert 50 * (enc.scale + 0.5) <= half
    assert 50 * (enc.scale + 1 + 0.5) > half


def test_decoding_a_sum_recovers_it_to_the_stated_resolution() -> None:
    rng = np.random.default_rng(3)
    enc = FixedPoint(bits=32, clip_norm=1.0, max_clients=100)
    updates = [clip_update(rng.normal(size=64), 1.0)[0] for _ in range(100)]

    total = np.zeros(64, dtype=np.uint64)
    for u in updates:
        total = enc.add(total, enc.encode(u))

    err = np.abs(enc.decode_sum(total) - np.sum(updates, axis=0)).max()
    assert err <= 100 * 0.5 / enc.scale


def test_an_unclipped_update_is_refused_by_the_encoder() -> None:
    with pytest.raises(InvalidInput, match="Clip it first"):
        FixedPoint(clip_norm=1.0).encode(np.array([2.0]))


def test_too_few_bits_for_the_clients_are_refused() -> None:
    with pytest.raises(InvalidInput, match="cannot hold"):
        FixedPoint(bits=8, clip_norm=1.0, max_clients=1000)


@pytest.mark.parametrize(("bits", "width"), [(16, 4), (32, 4), (40, 8), (62, 8)])
def test_masked_values_travel_in_the_smallest_word_that_holds_them(bits: int, width: int) -> None:
    enc = FixedPoint(bits=bits, clip_norm=1.0, max_clients=10)
    total = np.zeros(3, dtype=np.uint64)
    for _ in range(10):
        total = enc.add(total, enc.encode(np.array([-0.6, 0.0, 0.8])))

    assert enc.bytes_per_value == width
    np.testing.assert_allclose(enc.decode_sum(total), [-6.0, 0.0, 8.0], atol=10 / enc.scale)
