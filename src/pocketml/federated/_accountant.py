"""(ε, δ) of DP-FedAvg after every round, from Google's dp-accounting library.

A round is a Poisson-sampled Gaussian mechanism: each eligible client takes part with
probability ``q = expected_clients / population`` and the clipped sum gets noise with
multiplier ``z``. ``T`` rounds compose as
``SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(z)), T)``. The guarantee is
user level (one device's whole data set), "add or remove one device" adjacency.

Two accountants: ``"rdp"`` (Rényi DP, the usual and fast bound) and ``"pld"`` (privacy loss
distributions: tighter, slower). No bound here is hand-written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pocketml.errors import InvalidInput, MissingDependencyError

__all__ = ["PrivacyAccountant", "PrivacySpent"]

ACCOUNTANTS = ("rdp", "pld")


@dataclass(frozen=True)
class PrivacySpent:
    """The privacy spent so far: ``(epsilon, delta)`` after ``rounds`` rounds."""

    epsilon: float
    delta: float
    rounds: int


def _library() -> Any:
    try:
        import dp_accounting
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingDependencyError("dp-accounting", "server", "DP accounting") from exc
    return dp_accounting


class PrivacyAccountant:
    """Tracks rounds of a DP-FedAvg task and answers (ε, δ).

    Args:
        noise_multiplier: ``z`` (> 0).
        sampling_probability: ``q`` in ``(0, 1]``.
        delta: the δ to report ε at, in ``(0, 1)``; customarily below 1 / population.
        accountant: ``"rdp"`` or ``"pld"``.
    """

    def __init__(
        self,
        noise_multiplier: float,
        sampling_probability: float,
        delta: float,
        accountant: str = "rdp",
    ) -> None:
        if not noise_multiplier > 0:
            raise InvalidInput(
                f"noise_multiplier must be > 0 to account privacy; got {noise_multiplier!r}"
            )
        if not 0 < sampling_probability <= 1:
            raise InvalidInput(
                f"sampling_probability must be in (0, 1]; got {sampling_probability!r}"
            )
        if not 0 < delta < 1:
            raise InvalidInput(f"delta must be in (0, 1); got {delta!r}")
        if accountant not in ACCOUNTANTS:
            raise InvalidInput(f"accountant must be one of {ACCOUNTANTS}; got {accountant!r}")
        self.noise_multiplier = float(noise_multiplier)
        self.sampling_probability = float(sampling_probability)
        self.delta = float(delta)
        self.accountant = accountant
        self.rounds = 0
        self._round_rdp: tuple[Any, Any] | None = None

    def event(self, rounds: int) -> Any:
        """Return the dp-accounting ``DpEvent`` of ``rounds`` rounds."""
        dp = _library()
        one = dp.PoissonSampledDpEvent(
            self.sampling_probability, dp.GaussianDpEvent(self.noise_multiplier)
        )
        return dp.SelfComposedDpEvent(one, rounds)

    def spend_round(self) -> PrivacySpent:
        """Record one more round and return the privacy spent so far."""
        self.rounds += 1
        return self.spent()

    def spent(self) -> PrivacySpent:
        """Return ``(ε, δ)`` after the rounds recorded so far (ε = 0 before any)."""
        if self.rounds == 0:
            return PrivacySpent(0.0, self.delta, 0)
        dp = _library()
        if self.accountant == "rdp":
            # RDP composes by addition, so T rounds are T times one round's curve: computing
            # that curve once (~0.1 s) makes each later report a cheap conversion. Both steps
            # are the library's (RdpAccountant.rdp, compute_epsilon), not a bound of ours.
            if self._round_rdp is None:
                one = dp.rdp.RdpAccountant()
                one.compose(self.event(1))
                self._round_rdp = (one.orders, one.rdp)
            orders, rdp = self._round_rdp
            epsilon, _ = dp.rdp.rdp_privacy_accountant.compute_epsilon(
                orders, self.rounds * rdp, self.delta
            )
            return PrivacySpent(float(epsilon), self.delta, self.rounds)
        acc = dp.pld.PLDAccountant()
        acc.compose(self.event(self.rounds))
        return PrivacySpent(float(acc.get_epsilon(self.delta)), self.delta, self.rounds)
