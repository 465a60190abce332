"""Fixed-point encoding of float updates into integers mod 2^bits, for masking.

Masks are uniform integers mod ``2^bits``; they cancel exactly only in integer arithmetic,
so each client maps its clipped float update ``x`` to ``round(x * scale) mod 2^bits`` and
the server maps the unmasked *sum* back. The sum of ``n`` encoded values decodes correctly
as long as the true integer sum stays inside the signed range
``[-2^(bits-1), 2^(bits-1))``. Every coordinate of an update clipped to L2 norm ``C``
satisfies ``|x_i| <= C``, and rounding adds at most 1/2, so with

    scale = floor((2^(bits-1) - 1) / n - 1/2) / C

the sum of ``n`` encoded clipped updates satisfies
``|sum_i round(x_i * scale)| <= n * (C * scale + 1/2) <= 2^(bits-1) - 1``: no wrap-around.
The price is resolution: a coordinate is known to ``1 / (2 scale)`` per client. With the
default 32 bits, ``C = 1`` and 100 clients that is 2.4e-8, far below any model's noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pocketml.errors import InvalidInput

__all__ = ["FixedPoint"]

MIN_BITS = 8
MAX_BITS = 62  # sums of masks stay inside uint64 before the modular reduction


@dataclass(frozen=True)
class FixedPoint:
    """The encoding both sides agree on for a round.

    Attributes:
        bits: the modulus is ``2^bits`` (8..62); 32 gives uint32 on the wire.
        clip_norm: the L2 bound every encoded update respects.
        max_clients: the most updates that will be summed.
    """

    bits: int = 32
    clip_norm: float = 1.0
    max_clients: int = 100

    def __post_init__(self) -> None:
        if not (isinstance(self.bits, int) and MIN_BITS <= self.bits <= MAX_BITS):
            raise InvalidInput(
                f"bits must be an int in [{MIN_BITS}, {MAX_BITS}]; got {self.bits!r}"
            )
        if not (np.isfinite(self.clip_norm) and self.clip_norm > 0):
            raise InvalidInput(f"clip_norm must be > 0; got {self.clip_norm!r}")
        if not (isinstance(self.max_clients, int) and self.max_clients >= 1):
            raise InvalidInput(f"max_clients must be an int >= 1; got {self.max_clients!r}")
        if self.scale <= 0:
            raise InvalidInput(
                f"{self.bits} bits cannot hold the sum of {self.max_clients} updates of norm "
                f"{self.clip_norm}; raise bits or lower max_clients"
            )

    @property
    def modulus(self) -> int:
        """``2^bits``."""
        return 1 << self.bits

    @property
    def scale(self) -> float:
        """Multiplier from float to integer; chosen so ``max_clients`` sums never wrap."""
        half = (1 << (self.bits - 1)) - 1
        return float(np.floor(half / self.max_clients - 0.5)) / self.clip_norm

    @property
    def dtype(self) -> type[np.unsignedinteger]:
        """The smallest unsigned integer type holding a value mod ``2^bits``."""
        return np.uint32 if self.bits <= 32 else np.uint64

    @property
    def bytes_per_value(self) -> int:
        """Bytes one masked coordinate takes on the wire."""
        return int(np.dtype(self.dtype).itemsize)

    def encode(self, update: np.ndarray) -> np.ndarray:
        """Return ``round(update * scale) mod 2^bits`` as uint64.

        Raises:
            InvalidInput: the update is not finite or its norm exceeds ``clip_norm``
                (clip first: an unclipped value could wrap the sum silently).
        """
        vector = np.asarray(update, dtype=np.float64).ravel()
        if not np.all(np.isfinite(vector)):
            raise InvalidInput("an update must be finite to be encoded")
        norm = float(np.linalg.norm(vector))
        if norm > self.clip_norm * (1 + 1e-12):
            raise InvalidInput(
                f"an update's L2 norm must be <= clip_norm {self.clip_norm} to be encoded; "
                f"got {norm:.6g}. Clip it first (pocketml.fl.clip_update)."
            )
        ints = np.rint(vector * self.scale).astype(np.int64)
        return ints.astype(np.uint64) & np.uint64(self.modulus - 1)

    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Return ``(a + b) mod 2^bits`` (uint64)."""
        return (a.astype(np.uint64) + b.astype(np.uint64)) & np.uint64(self.modulus - 1)

    def subtract(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Return ``(a - b) mod 2^bits`` (uint64; unsigned wrap-around is the modular rule)."""
        return (a.astype(np.uint64) - b.astype(np.uint64)) & np.uint64(self.modulus - 1)

    def decode_sum(self, total: np.ndarray) -> np.ndarray:
        """Map a sum of encoded updates (mod ``2^bits``) back to floats.

        Values at or above ``2^(bits-1)`` are negative sums that wrapped, as intended.
        """
        values = np.asarray(total, dtype=np.uint64) & np.uint64(self.modulus - 1)
        signed = values.astype(np.int64)
        signed[values >= np.uint64(1 << (self.bits - 1))] -= np.int64(self.modulus)
        return signed.astype(np.float64) / self.scale
