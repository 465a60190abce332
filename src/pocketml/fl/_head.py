"""Local training of a classifier head on frozen embeddings (softmax regression, numpy).

The practical federated task for phones: the backbone stays frozen (it ships in the signed
package), each device turns its consented samples into embeddings and trains only the last
layer. A head is small (``n_features * n_classes + n_classes`` numbers), trains in
milliseconds with plain numpy and needs no torch on the device.

What a device uploads is the *delta* ``trained - global`` as one flat float vector: the
same layout (weights row-major, then the bias) the server aggregates, clips and masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pocketml.errors import InvalidInput

__all__ = ["Head", "LocalRecipe", "train_head"]


@dataclass(frozen=True)
class Head:
    """A linear softmax classifier: ``logits = x @ weights + bias``.

    Attributes:
        weights: shape ``(n_features, n_classes)``.
        bias: shape ``(n_classes,)``.
    """

    weights: np.ndarray
    bias: np.ndarray

    @classmethod
    def zeros(cls, n_features: int, n_classes: int) -> Head:
        """Return the all-zero head (a common, harmless global starting point)."""
        return cls(np.zeros((n_features, n_classes)), np.zeros(n_classes))

    @property
    def size(self) -> int:
        """Number of parameters, i.e. the length of :meth:`to_vector`."""
        return int(self.weights.size + self.bias.size)

    def to_vector(self) -> np.ndarray:
        """Return the parameters as one float64 vector (weights row-major, then bias)."""
        return np.concatenate([self.weights.ravel(), self.bias.ravel()]).astype(np.float64)

    def with_vector(self, vector: np.ndarray) -> Head:
        """Return a head of this shape holding ``vector`` (the layout of :meth:`to_vector`).

        Raises:
            InvalidInput: ``vector`` has the wrong length.
        """
        vector = np.asarray(vector, dtype=np.float64).ravel()
        if vector.size != self.size:
            raise InvalidInput(f"a head vector must have {self.size} values; got {vector.size}")
        n_w = self.weights.size
        return Head(vector[:n_w].reshape(self.weights.shape).copy(), vector[n_w:].copy())

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        """Return the predicted class index of each row of ``embeddings``."""
        return np.argmax(np.asarray(embeddings) @ self.weights + self.bias, axis=1)

    def accuracy(self, embeddings: np.ndarray, labels: np.ndarray) -> float:
        """Return the fraction of rows whose prediction equals the label."""
        return float(np.mean(self.predict(embeddings) == np.asarray(labels)))


@dataclass(frozen=True)
class LocalRecipe:
    """How a device trains its head: plain minibatch SGD on the softmax cross-entropy.

    Attributes:
        epochs: passes over the local samples (>= 1).
        batch_size: samples per step (>= 1; a device with fewer samples takes one batch).
        learning_rate: SGD step size (> 0).
        l2: weight decay on the weights (not the bias), >= 0.
    """

    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 0.1
    l2: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            raise InvalidInput(f"epochs must be an int >= 1; got {self.epochs!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise InvalidInput(f"batch_size must be an int >= 1; got {self.batch_size!r}")
        if not (np.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise InvalidInput(f"learning_rate must be > 0; got {self.learning_rate!r}")
        if not (np.isfinite(self.l2) and self.l2 >= 0):
            raise InvalidInput(f"l2 must be >= 0; got {self.l2!r}")


def train_head(
    head: Head,
    embeddings: np.ndarray,
    labels: np.ndarray,
    recipe: LocalRecipe,
    *,
    seed: int,
) -> np.ndarray:
    """Train ``head`` on local samples and return the update ``trained - head`` as a vector.

    Args:
        head: the round's global head (not modified).
        embeddings: shape ``(n_samples, n_features)``, finite.
        labels: integer class indices in ``[0, n_classes)``, shape ``(n_samples,)``.
        recipe: epochs, batch size, learning rate, weight decay.
        seed: the shuffling seed; the same inputs and seed give the same update.

    Returns:
        The float64 delta in the layout of :meth:`Head.to_vector`.

    Raises:
        InvalidInput: shapes disagree, values are not finite, or a label is out of range.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(labels)
    n_features, n_classes = head.weights.shape
    if x.ndim != 2 or x.shape[1] != n_features:
        raise InvalidInput(f"embeddings must have shape (n, {n_features}); got {x.shape}")
    if y.shape != (x.shape[0],) or x.shape[0] == 0:
        raise InvalidInput(f"labels must have shape ({x.shape[0]},) with n >= 1; got {y.shape}")
    if not np.all(np.isfinite(x)):
        raise InvalidInput("embeddings must be finite (no NaN or Inf)")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes:
        raise InvalidInput(f"labels must be integers in [0, {n_classes})")
    w, b = head.weights.astype(np.float64).copy(), head.bias.astype(np.float64).copy()
    onehot = np.eye(n_classes)[y]
    rng = np.random.default_rng(seed)
    for _ in range(recipe.epochs):
        order = rng.permutation(x.shape[0])
        for start in range(0, x.shape[0], recipe.batch_size):
            idx = order[start : start + recipe.batch_size]
            logits = x[idx] @ w + b
            logits -= logits.max(axis=1, keepdims=True)  # exp never overflows
            p = np.exp(logits)
            p /= p.sum(axis=1, keepdims=True)
            grad = (p - onehot[idx]) / idx.size
            w -= recipe.learning_rate * (x[idx].T @ grad + recipe.l2 * w)
            b -= recipe.learning_rate * grad.sum(axis=0)
    return np.concatenate([(w - head.weights).ravel(), (b - head.bias).ravel()])
