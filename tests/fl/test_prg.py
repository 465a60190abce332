"""The mask PRG and seed derivation are specified (docs/federated.md); pin them."""

from __future__ import annotations

import hashlib

import numpy as np

from pocketml.fl import FixedPoint, SecAggConfig, expand_mask, neighbours_of, pairwise_seed


def test_the_mask_is_the_chacha20_keystream_read_as_little_endian_uint64() -> None:
    # RFC 7539, A.1 test vector 1: the all-zero key, nonce and counter.
    first = int.from_bytes(bytes.fromhex("76b8e0ada0f13d90"), "little")

    assert int(expand_mask(bytes(32), 1, 62)[0]) == first & (2**62 - 1)


def test_masks_are_reduced_to_the_requested_bits() -> None:
    mask = expand_mask(b"\x01" * 32, 10_000, 20)

    assert int(mask.max()) < 2**20
    assert int(mask.max()) > 2**19  # the top bit is used, not dropped


def test_both_ends_of_a_pair_derive_the_same_seed_and_rounds_differ() -> None:
    secret = b"\x07" * 32

    assert pairwise_seed(secret, "r1", 3, 9) == pairwise_seed(secret, "r1", 9, 3)
    assert pairwise_seed(secret, "r1", 3, 9) != pairwise_seed(secret, "r2", 3, 9)


def test_the_same_seed_expands_to_the_same_mask() -> None:
    np.testing.assert_array_equal(expand_mask(b"s" * 32, 5, 32), expand_mask(b"s" * 32, 5, 32))


def test_the_neighbour_ring_is_ordered_by_sha256_of_seed_and_id() -> None:
    ids = tuple(range(1, 9))
    config = SecAggConfig("r", ids, 2, FixedPoint(max_clients=8), 1, 2, b"graph")
    ring = sorted(ids, key=lambda i: hashlib.sha256(b"graph" + i.to_bytes(4, "big")).digest())

    for pos, u in enumerate(ring):
        assert neighbours_of(config, u) == tuple(sorted({ring[pos - 1], ring[(pos + 1) % 8]}))
