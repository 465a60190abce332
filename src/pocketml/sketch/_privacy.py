"""Local differential privacy for sketches: two-sided geometric noise on every count.

**Unit of privacy: one scored input.** Two windows are neighbours when one holds one
more scored input than the other. That input lands in exactly one bin of every block
(each feature, each projection, ``@prediction``, ``@confidence``) and adds one to ``n``,
so the L1 sensitivity of a window's counts, ``n`` included, is ``blocks + 1``.

**Mechanism.** The two-sided geometric (discrete Laplace) mechanism of Ghosh, Roughgarden
and Sundararajan (2009): every count, ``n`` included, gets independent noise ``Z`` with
``P(Z = z) = (1 - a) / (1 + a) * a^|z|`` and ``a = exp(-epsilon / sensitivity)``. It is
epsilon-DP for the unit above (the integer twin of Laplace noise of scale
``sensitivity / epsilon``), its counts stay integers (so they encode as varints) and its
variance is ``2a / (1 - a)^2`` per count. ``Z`` is sampled as the difference of two
geometric numbers.

**Never clip on the device.** Noisy counts may be negative. Merging is addition, and the
noise has mean zero, so the sum of many devices' noisy counts is unbiased; clipping at
zero would add a positive bias per device that grows with the fleet.

Per day, a device spends ``epsilon_per_day`` at most (``MonitorPolicy``): one share per
window. An input lives in one window, so for one input the guarantee is the window's
epsilon; the day's sum bounds what an observer learns about any set of inputs with at
most one per window (a habit repeated every hour), which is what the server's ledger
accounts.

numpy only: the device SDK applies it.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from pocketml.errors import InvalidInput
from pocketml.sketch._sketch import MAX_SKETCH_ROWS, Sketch, SketchLayout

__all__ = [
    "geometric_variance",
    "noise_bound",
    "parse_noisy_counts",
    "privatize",
    "sensitivity_of",
]

# A noisy count further from its range than ``noise_bound`` happens with probability
# below this per count: a sender beyond it is broken or hostile, never unlucky.
_TAIL = 1e-12


def sensitivity_of(layout: SketchLayout) -> int:
    """L1 sensitivity of a window's counts (``n`` included) to one scored input."""
    return len(layout.names) + 1


def _ratio(epsilon: float, sensitivity: int) -> float:
    if not (isinstance(epsilon, int | float) and math.isfinite(epsilon) and epsilon > 0):
        raise InvalidInput(f"epsilon must be a finite number > 0; got {epsilon!r}.")
    return math.exp(-float(epsilon) / sensitivity)


def geometric_variance(epsilon: float, sensitivity: int) -> float:
    """Variance of one count's two-sided geometric noise: ``2a / (1 - a)^2``."""
    a = _ratio(epsilon, sensitivity)
    return 2 * a / (1 - a) ** 2


def noise_bound(epsilon: float, sensitivity: int) -> int:
    """The noise magnitude a count exceeds with probability below 10^-12.

    ``P(|Z| >= t) = 2 a^t / (1 + a)``, so ``t = ceil(log(TAIL (1 + a) / 2) / log a)``.
    """
    a = _ratio(epsilon, sensitivity)
    return math.ceil(math.log(_TAIL * (1 + a) / 2) / math.log(a))


def privatize(sketch: Sketch, epsilon: float, rng: np.random.Generator) -> tuple[Sketch, float]:
    """The sketch with two-sided geometric noise on every count and on ``n``.

    Args:
        sketch: the exact counts of one window.
        epsilon: the privacy this sketch spends (for one scored input, see the module).
        rng: the random generator (a device seeds it from the OS; tests fix a seed).

    Returns:
        ``(noisy sketch, noise variance per count)``; the noisy counts may be negative.

    Raises:
        InvalidInput: epsilon is not a finite number > 0.
    """
    sensitivity = sensitivity_of(sketch.layout)
    a = _ratio(epsilon, sensitivity)
    size = sketch.layout.total + 1
    noise = rng.geometric(1 - a, size) - rng.geometric(1 - a, size)
    counts = sketch.counts + noise[:-1]
    variance = 2 * a / (1 - a) ** 2
    return Sketch(sketch.layout, int(sketch.n + noise[-1]), counts.astype(np.int64)), variance


def parse_noisy_counts(
    counts: npt.ArrayLike, n: int, layout: SketchLayout, epsilon: float
) -> Sketch:
    """The server's gate for a noisy sketch: counts within what the noise can explain.

    Exact counts lie in ``[0, n_true]`` and sum to ``n_true`` per block; noise of this
    epsilon moves each by less than ``t = noise_bound(...)`` (but with probability
    10^-12). So ``n`` must lie in ``[-t, MAX_SKETCH_ROWS + t]``, every count in
    ``[-t, max(n, 0) + 2t]`` (the true n is at most ``n + t``), and a block's sum may differ
    from ``n`` by at most ``t * (bins + 1)``.

    Raises:
        InvalidInput: naming ``n``, ``counts.<block>[i]`` or ``counts.<block>``.
    """
    t = noise_bound(epsilon, sensitivity_of(layout))
    if not -t <= n <= MAX_SKETCH_ROWS + t:
        raise InvalidInput(
            f"n must be in [{-t}, {MAX_SKETCH_ROWS + t}] at epsilon={epsilon:g}; got {n}."
        )
    array = np.asarray(counts, dtype=np.int64)
    high = max(n, 0) + 2 * t
    offsets = layout.offsets
    for index, (name, size) in enumerate(zip(layout.names, layout.sizes, strict=True)):
        block = array[offsets[index] : offsets[index + 1]]
        bad = np.flatnonzero((block < -t) | (block > high))
        if bad.size:
            position = int(bad[0])
            raise InvalidInput(
                f"counts.{name}[{position}] must be in [{-t}, {high}] (n={n} plus noise of "
                f"epsilon={epsilon:g}); got {int(block[position])}."
            )
        total = int(block.sum())
        if abs(total - n) > t * (size + 1):
            raise InvalidInput(
                f"counts.{name} must sum to n={n} within the noise (+-{t * (size + 1)}); "
                f"got {total}."
            )
    return Sketch(layout, int(n), array)
