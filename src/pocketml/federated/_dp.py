"""DP-FedAvg with fixed or adaptive clipping (McMahan et al. 2018; Andrew et al. 2021).

Each round the server (or, under secure aggregation, each client) clips every update to L2
norm ``C``, sums them, adds ``N(0, (z C)^2 I)`` and divides by the *expected* number of
clients ``m`` (a fixed denominator keeps the sensitivity of the mean at ``C / m``). This
is the Gaussian mechanism with noise multiplier ``z`` on the sum, applied to a
Poisson-sampled cohort: user-level (ε, δ)-DP, accounted in :mod:`._accountant`.

Adaptive clipping moves ``C`` toward the ``γ`` quantile of the update norms: with ``b`` the
noised fraction of updates whose norm was at most ``C``,

    b̃ = (sum_i 1[||Δ_i|| <= C] + N(0, σ_b^2)) / m,     C <- C · exp(-η (b̃ - γ)).

The count is a second Gaussian query, so the update's own noise multiplier is raised to
``z_Δ = (z^-2 - (2 σ_b)^-2)^(-1/2)`` and the pair together costs exactly what one query
with multiplier ``z`` costs (Andrew et al., Thm. 1): the accountant still uses ``z``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pocketml.errors import InvalidInput
from pocketml.fl import clip_update

__all__ = ["AdaptiveClipping", "DPFedAvg", "DPRoundResult"]


@dataclass(frozen=True)
class AdaptiveClipping:
    """Geometric clip-norm update toward a target quantile.

    Attributes:
        target_quantile: ``γ``, the fraction of updates that should be unclipped (0.5 in
            the paper's experiments).
        learning_rate: ``η`` (0.2 in the paper).
        count_stddev: ``σ_b``, the noise on the unclipped count (the paper uses m / 20).
    """

    target_quantile: float = 0.5
    learning_rate: float = 0.2
    count_stddev: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.target_quantile < 1:
            raise InvalidInput(f"target_quantile must be in (0, 1); got {self.target_quantile!r}")
        if not self.learning_rate > 0:
            raise InvalidInput(f"learning_rate must be > 0; got {self.learning_rate!r}")
        if not self.count_stddev > 0:
            raise InvalidInput(f"count_stddev must be > 0; got {self.count_stddev!r}")


@dataclass(frozen=True)
class DPRoundResult:
    """One DP-FedAvg round: the noised mean update and the clip norm for the next round."""

    update: np.ndarray
    clip_norm: float
    next_clip_norm: float
    clipped_count: int
    update_noise_multiplier: float


class DPFedAvg:
    """Server-side DP-FedAvg. Stores its configuration; :meth:`aggregate` does a round.

    Args:
        clip_norm: the initial (or fixed) L2 bound ``C``.
        noise_multiplier: ``z``; 0 disables noise (then no ε is claimed).
        expected_clients: ``m``, the cohort size the noise is divided by.
        adaptive: adaptive clipping, or None for a fixed ``C``.
    """

    def __init__(
        self,
        clip_norm: float,
        noise_multiplier: float,
        expected_clients: int,
        adaptive: AdaptiveClipping | None = None,
    ) -> None:
        if not (np.isfinite(clip_norm) and clip_norm > 0):
            raise InvalidInput(f"clip_norm must be > 0; got {clip_norm!r}")
        if not (np.isfinite(noise_multiplier) and noise_multiplier >= 0):
            raise InvalidInput(f"noise_multiplier must be >= 0; got {noise_multiplier!r}")
        if expected_clients < 1:
            raise InvalidInput(f"expected_clients must be >= 1; got {expected_clients!r}")
        if (
            adaptive is not None
            and noise_multiplier > 0
            and (2 * adaptive.count_stddev <= 1 / noise_multiplier)
        ):
            raise InvalidInput(
                "count_stddev is too small for this noise_multiplier: adaptive clipping needs "
                f"2 * count_stddev > 1 / noise_multiplier (= {1 / noise_multiplier:.3g})"
            )
        self.clip_norm = float(clip_norm)
        self.noise_multiplier = float(noise_multiplier)
        self.expected_clients = int(expected_clients)
        self.adaptive = adaptive

    @property
    def update_noise_multiplier(self) -> float:
        """``z_Δ``: ``z`` itself with fixed clipping, slightly more with adaptive clipping."""
        z = self.noise_multiplier
        if self.adaptive is None or z == 0:
            return z
        return float((z**-2 - (2 * self.adaptive.count_stddev) ** -2) ** -0.5)

    def aggregate(
        self,
        updates: Sequence[np.ndarray],
        rng: np.random.Generator,
        reported_clipped: Sequence[bool | None] | None = None,
    ) -> DPRoundResult:
        """Clip, sum, noise and average one round's updates; adapt the clip norm.

        Args:
            updates: the round's updates.
            rng: the noise's generator.
            reported_clipped: per update, whether its sender clipped it (a device clips
                before it uploads, so the server's own measurement of the uploaded bytes
                says nothing); None entries (or None) fall back to that measurement.

        Returns:
            The noised mean update, this round's and the next round's clip norm, and how
            many updates were clipped.

        Raises:
            InvalidInput: no updates, or a non-finite update.
        """
        if len(updates) == 0:
            raise InvalidInput("a DP-FedAvg round needs at least one update")
        c = self.clip_norm
        clipped = [clip_update(u, c) for u in updates]
        total = np.sum([v for v, _ in clipped], axis=0)
        z_delta = self.update_noise_multiplier
        if z_delta > 0:
            total = total + rng.normal(0.0, z_delta * c, size=total.shape)
        said = list(reported_clipped) if reported_clipped is not None else [None] * len(updates)
        if len(said) != len(updates):
            raise InvalidInput(
                f"reported_clipped has {len(said)} entries for {len(updates)} updates"
            )
        n_clipped = sum(
            bool(was) if told is None else bool(told)
            for (_, was), told in zip(clipped, said, strict=True)
        )
        next_c = c
        if self.adaptive is not None:
            unclipped = len(updates) - n_clipped
            noisy = unclipped + (
                rng.normal(0.0, self.adaptive.count_stddev) if z_delta > 0 else 0.0
            )
            fraction = noisy / self.expected_clients
            next_c = c * float(
                np.exp(-self.adaptive.learning_rate * (fraction - self.adaptive.target_quantile))
            )
            self.clip_norm = next_c
        return DPRoundResult(total / self.expected_clients, c, next_c, n_clipped, z_delta)
