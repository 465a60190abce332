"""The monitor's test world: a profile of known distributions and sketches stored from it.

``monitor_profile()`` builds a reference profile of three features (``x0`` normal, ``x1``
exponential, ``colour`` categorical), 3 predicted classes and a calibrated confidence (a
prediction is right with probability = its confidence). ``store_sketches`` bins rows of
the same world (``x0`` moved by ``shift`` standard deviations, confidences in ``[low, 1)``)
into one sketch per hour and stores them with ``add_sketches``, as intake does. The service,
route and CLI tests build their cases from these two, so "shifted on one device class" means
the same thing everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import sqlalchemy as sa

    from pocketml.sketch import ReferenceProfile

__all__ = ["monitor_profile", "monitor_rows", "store_sketches"]

_HOUR = 3600


def monitor_rows(
    rng: np.random.Generator, n: int, *, shift: float = 0.0, low: float = 0.4
) -> dict[str, Any]:
    """``n`` rows of the world: ``columns``, ``predicted`` classes, ``confidence`` in
    ``[low, 1)`` and ``correct`` (Bernoulli(confidence)); ``x0`` moved by ``shift`` sigma."""
    confidence = rng.uniform(low, 1.0, size=n)
    return {
        "columns": {
            "x0": rng.normal(shift, 1.0, size=n),
            "x1": rng.exponential(size=n),
            "colour": rng.choice(["red", "green", "blue"], size=n, p=[0.5, 0.3, 0.2]),
        },
        "predicted": rng.integers(0, 3, size=n),
        "confidence": confidence,
        "correct": rng.uniform(size=n) < confidence,
    }


def monitor_profile(seed: int = 1, rows: int = 20_000) -> ReferenceProfile:
    """The reference profile of the world (no PCA projection; accuracy ~0.70)."""
    from pocketml.sketch import build_profile

    data = monitor_rows(np.random.default_rng(seed), rows)
    return build_profile(
        data["columns"],
        categorical=["colour"],
        predicted_class=data["predicted"],
        confidence=data["confidence"],
        correct=data["correct"],
        num_classes=3,
        projections=0,
    )


def store_sketches(
    bind: sa.Engine | str,
    app_id: str,
    profile: ReferenceProfile,
    device_class: str,
    *,
    start: int,
    seed: int,
    rows: int = 600,
    hours: int = 3,
    model: str = "digits",
    version: int = 1,
    app_version: str = "2.0",
    shift: float = 0.0,
    low: float = 0.4,
) -> None:
    """Store one sketch of ``rows`` rows per hour for ``hours`` hours from ``start``.

    Args:
        bind: an engine, or the database URL of a running server.
        app_id, model, version, device_class, app_version: the sketches' key.
        start: the first hour (unix seconds, an hour boundary).
        seed: the rows' random seed.
        shift, low: the world's change (see ``monitor_rows``).
    """
    from pocketml.db import WRITE, create_engine
    from pocketml.monitor import SketchAddition, SketchKey, add_sketches

    rng = np.random.default_rng(seed)
    additions = []
    for hour in range(hours):
        data = monitor_rows(rng, rows, shift=shift, low=low)
        sketch = profile.sketch(data["columns"], data["predicted"], data["confidence"])
        key = SketchKey(model, version, device_class, app_version, start + hour * _HOUR)
        additions.append(SketchAddition(key, sketch))
    engine = create_engine(bind) if isinstance(bind, str) else bind
    try:
        with engine.connect().execution_options(**WRITE) as conn, conn.begin():
            add_sketches(conn, app_id, additions)
    finally:
        if isinstance(bind, str):
            engine.dispose()
