"""Shamir secret sharing over the prime field GF(p), p = 2^256 + 297 (the smallest prime
above 2^256, so any 32-byte secret is a field element).

``split_secret`` draws a random polynomial ``f`` of degree ``threshold - 1`` with
``f(0) = secret`` and hands out ``(x, f(x))`` for each client id ``x`` (ids are >= 1: the
point 0 is the secret). Any ``threshold`` shares determine ``f`` (Lagrange interpolation at
0); any ``threshold - 1`` shares are uniformly distributed whatever the secret, so they
reveal nothing (tests/fl/test_shamir.py checks this exhaustively in a small field).

Python integers do the arithmetic: a round has at most a few hundred shares per client,
each a 33-byte number, so clarity wins over speed here.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pocketml.errors import InvalidInput

__all__ = ["PRIME", "Share", "combine_shares", "split_secret"]

PRIME = 2**256 + 297
SHARE_BYTES = 33  # a field element < 2^257


@dataclass(frozen=True)
class Share:
    """One point ``(x, y)`` of the sharing polynomial; ``x`` is the holder's client id."""

    x: int
    y: int


def _random_below(prime: int, randbytes: Callable[[int], bytes]) -> int:
    # 64 extra bits make the modular bias < 2^-64 (statistically invisible).
    nbytes = (prime.bit_length() + 64 + 7) // 8
    return int.from_bytes(randbytes(nbytes), "big") % prime


def split_secret(
    secret: int,
    threshold: int,
    xs: Iterable[int],
    *,
    prime: int = PRIME,
    randbytes: Callable[[int], bytes] = os.urandom,
) -> list[Share]:
    """Split ``secret`` into one share per ``x`` in ``xs``; ``threshold`` of them recover it.

    Args:
        secret: an integer in ``[0, prime)``.
        threshold: shares needed to reconstruct, ``1 <= threshold <= len(xs)``.
        xs: distinct holder ids in ``[1, prime)``.
        prime: the field (tests use a small one).
        randbytes: entropy source for the coefficients (``os.urandom``; tests seed it).

    Raises:
        InvalidInput: the secret, threshold or ids are out of range.
    """
    points = list(xs)
    if not 0 <= secret < prime:
        raise InvalidInput("a Shamir secret must be in [0, prime)")
    if len(set(points)) != len(points) or any(not 0 < x < prime for x in points):
        raise InvalidInput("share ids must be distinct integers in [1, prime)")
    if not 1 <= threshold <= len(points):
        raise InvalidInput(
            f"threshold must be in [1, {len(points)}] (the number of shares); got {threshold}"
        )
    coefficients = [secret] + [_random_below(prime, randbytes) for _ in range(threshold - 1)]
    shares = []
    for x in points:
        y = 0
        for c in reversed(coefficients):  # Horner
            y = (y * x + c) % prime
        shares.append(Share(x, y))
    return shares


def combine_shares(shares: Iterable[Share], threshold: int, *, prime: int = PRIME) -> int:
    """Return ``f(0)`` from at least ``threshold`` shares (the first ``threshold`` are used).

    Raises:
        InvalidInput: fewer than ``threshold`` distinct shares are given. Fewer shares
            would interpolate a wrong value silently, so this never guesses.
    """
    unique = {s.x: s for s in shares}
    if len(unique) < threshold:
        raise InvalidInput(
            f"reconstruction needs {threshold} shares from distinct holders; got {len(unique)}"
        )
    # The lowest ids: a server reconstructing many clients' secrets from one set of
    # survivors then reuses the same Lagrange coefficients (cached) for most of them.
    points = [unique[x] for x in sorted(unique)[:threshold]]
    weights = _lagrange_at_zero(tuple(s.x for s in points), prime)
    return sum(s.y * w for s, w in zip(points, weights, strict=True)) % prime


@functools.lru_cache(maxsize=256)
def _lagrange_at_zero(xs: tuple[int, ...], prime: int) -> tuple[int, ...]:
    """The weights ``l_i(0) = prod_{j != i} x_j / (x_j - x_i)`` for the points ``xs``."""
    weights = []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if i != j:
                num = num * (-xj) % prime
                den = den * (xi - xj) % prime
        weights.append(num * pow(den, -1, prime) % prime)
    return tuple(weights)
