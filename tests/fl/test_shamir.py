"""Shamir sharing: t shares reconstruct, t-1 shares are independent of the secret."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from pocketml.errors import InvalidInput
from pocketml.fl import PRIME, Share, combine_shares, split_secret


def test_any_threshold_subset_of_shares_reconstructs_the_secret() -> None:
    secret = int.from_bytes(random.Random(1).randbytes(32), "big")
    shares = split_secret(secret, 3, range(1, 7), randbytes=random.Random(2).randbytes)

    for subset in itertools.combinations(shares, 3):
        assert combine_shares(subset, 3) == secret


def test_the_largest_32_byte_secret_is_a_field_element() -> None:
    secret = 2**256 - 1
    shares = split_secret(secret, 2, [5, 9], randbytes=random.Random(0).randbytes)

    assert secret < PRIME
    assert combine_shares(shares, 2) == secret


def test_fewer_than_threshold_shares_are_refused_not_guessed() -> None:
    shares = split_secret(42, 3, [1, 2, 3], randbytes=random.Random(0).randbytes)

    with pytest.raises(InvalidInput, match="needs 3 shares"):
        combine_shares(shares[:2], 3)


def test_threshold_minus_one_shares_have_the_same_distribution_for_every_secret() -> None:
    # In GF(11) with t = 3, enumerate every coefficient pair: the joint distribution of
    # the shares at x = 1, 2 must not depend on the secret (perfect secrecy).
    prime, xs = 11, [1, 2, 3]
    distributions = []
    for secret in range(prime):
        seen: Counter[tuple[int, ...]] = Counter()
        for a1, a2 in itertools.product(range(prime), repeat=2):
            coefficients = iter([a1, a2])

            def randbytes(n: int, _it=coefficients) -> bytes:
                return next(_it).to_bytes(n, "big")

            shares = split_secret(secret, 3, xs, prime=prime, randbytes=randbytes)
            seen[(shares[0].y, shares[1].y)] += 1  # any t - 1 = 2 of them
        distributions.append(seen)

    assert all(d == distributions[0] for d in distributions)
    assert len(distributions[0]) == prime**2  # each of the 121 pairs exactly once: uniform


def test_a_wrong_share_changes_the_reconstruction() -> None:
    shares = split_secret(7, 2, [1, 2], randbytes=random.Random(0).randbytes)
    tampered = [shares[0], Share(shares[1].x, (shares[1].y + 1) % PRIME)]

    assert combine_shares(tampered, 2) != 7


@pytest.mark.parametrize(
    ("threshold", "xs", "match"),
    [(0, [1, 2], "threshold"), (3, [1, 2], "threshold"), (2, [0, 1], "ids"), (2, [1, 1], "ids")],
)
def test_bad_sharing_parameters_are_refused(threshold: int, xs: list[int], match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        split_secret(5, threshold, xs)
