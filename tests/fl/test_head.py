"""Local head training: deterministic, learns, returns a delta in the documented layout."""

from __future__ import annotations

import numpy as np
import pytest

from pocketml.errors import InvalidInput
from pocketml.fl import Head, LocalRecipe, train_head


def _blobs(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(3, 5))
    y = rng.integers(0, 3, size=n)
    return centres[y] + rng.normal(size=(n, 5)), y


def test_training_from_zero_learns_separable_classes() -> None:
    x, y = _blobs(0)
    head = Head.zeros(5, 3)

    delta = train_head(head, x, y, LocalRecipe(epochs=5, batch_size=16, learning_rate=0.1), seed=0)

    assert head.with_vector(head.to_vector() + delta).accuracy(x, y) > 0.95
    assert head.accuracy(x, y) < 0.5


def test_the_same_seed_gives_the_same_update() -> None:
    x, y = _blobs(1)
    head, recipe = Head.zeros(5, 3), LocalRecipe(epochs=2)

    first = train_head(head, x, y, recipe, seed=7)

    np.testing.assert_array_equal(first, train_head(head, x, y, recipe, seed=7))
    assert not np.array_equal(first, train_head(head, x, y, recipe, seed=8))


def test_the_update_layout_is_weights_then_bias() -> None:
    head = Head(np.arange(6.0).reshape(3, 2), np.array([10.0, 11.0]))

    np.testing.assert_array_equal(head.to_vector(), [0, 1, 2, 3, 4, 5, 10, 11])
    assert head.with_vector(head.to_vector()).bias.tolist() == [10.0, 11.0]


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        (np.zeros((4, 4)), np.zeros(4, dtype=int), "embeddings must have shape"),
        (np.zeros((4, 5)), np.zeros(3, dtype=int), "labels must have shape"),
        (np.full((4, 5), np.inf), np.zeros(4, dtype=int), "finite"),
        (np.zeros((4, 5)), np.array([0, 1, 2, 3]), "labels must be integers"),
    ],
)
def test_bad_local_data_is_refused(x: np.ndarray, y: np.ndarray, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        train_head(Head.zeros(5, 3), x, y, LocalRecipe(), seed=0)


def test_a_bad_recipe_is_refused() -> None:
    with pytest.raises(InvalidInput, match="learning_rate"):
        LocalRecipe(learning_rate=0.0)
