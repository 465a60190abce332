"""FedBuff: asynchronous buffered aggregation (Nguyen et al. 2022), so slow devices do not
stall a round.

Clients train on whatever global version they downloaded and upload whenever they finish.
The server adds each update, weighted by its staleness ``τ = current_version -
client_version``, to a buffer; when the buffer holds ``K`` updates it applies

    w <- w + η_g · (1/K) · sum_i s(τ_i) Δ_i,      s(τ) = (1 + τ)^(-α)

and the version advances. ``α = 0.5`` is the paper's polynomial staleness weight. An update
staler than ``max_staleness`` is refused (it was computed on a model too old to help).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pocketml.errors import InvalidInput

__all__ = ["FedBuff", "FedBuffStep"]


@dataclass(frozen=True)
class FedBuffStep:
    """The answer to one submission: accepted or not, and the model if it advanced."""

    accepted: bool
    staleness: int
    weight: float
    version: int
    model: np.ndarray | None = None
    reason: str = ""


class FedBuff:
    """The buffer and the global model of one asynchronous task.

    Args:
        model: the initial global parameters (a float vector).
        buffer_size: ``K``, updates per server step.
        server_learning_rate: ``η_g``.
        staleness_exponent: ``α`` in ``s(τ) = (1 + τ)^(-α)``; 0 weighs all updates equally.
        max_staleness: the oldest version lag accepted.
    """

    def __init__(
        self,
        model: np.ndarray,
        buffer_size: int,
        server_learning_rate: float = 1.0,
        staleness_exponent: float = 0.5,
        max_staleness: int = 10,
    ) -> None:
        if buffer_size < 1:
            raise InvalidInput(f"buffer_size must be >= 1; got {buffer_size!r}")
        if not server_learning_rate > 0:
            raise InvalidInput(f"server_learning_rate must be > 0; got {server_learning_rate!r}")
        if staleness_exponent < 0:
            raise InvalidInput(f"staleness_exponent must be >= 0; got {staleness_exponent!r}")
        if max_staleness < 0:
            raise InvalidInput(f"max_staleness must be >= 0; got {max_staleness!r}")
        self.model = np.asarray(model, dtype=np.float64).copy()
        self.buffer_size = buffer_size
        self.server_learning_rate = server_learning_rate
        self.staleness_exponent = staleness_exponent
        self.max_staleness = max_staleness
        self.version = 0
        self._buffer = np.zeros_like(self.model)
        self._count = 0

    def staleness_weight(self, staleness: int) -> float:
        """``s(τ) = (1 + τ)^(-α)``."""
        return float((1 + staleness) ** -self.staleness_exponent)

    @property
    def buffered(self) -> int:
        """Updates waiting in the buffer."""
        return self._count

    def submit(self, update: np.ndarray, client_version: int) -> FedBuffStep:
        """Add one client's update, trained from global version ``client_version``.

        Returns:
            The step: refused (too stale or from the future), buffered, or buffered and
            applied (then ``model`` holds the new global parameters).

        Raises:
            InvalidInput: the update's shape differs from the model's or it is not finite.
        """
        delta = np.asarray(update, dtype=np.float64)
        if delta.shape != self.model.shape or not np.all(np.isfinite(delta)):
            raise InvalidInput(
                f"update must be {self.model.shape} finite values; got {delta.shape}"
            )
        staleness = self.version - client_version
        if staleness < 0 or staleness > self.max_staleness:
            oldest = self.version - self.max_staleness
            reason = f"client_version {client_version} is outside [{oldest}, {self.version}]"
            return FedBuffStep(False, staleness, 0.0, self.version, reason=reason)
        weight = self.staleness_weight(staleness)
        self._buffer += weight * delta
        self._count += 1
        if self._count < self.buffer_size:
            return FedBuffStep(True, staleness, weight, self.version)
        self.model = self.model + self.server_learning_rate * self._buffer / self.buffer_size
        self._buffer[:] = 0
        self._count = 0
        self.version += 1
        return FedBuffStep(True, staleness, weight, self.version, self.model.copy())
