"""Write a small tabular set: six numeric customer features and a churn label, seeded.

    python make_data.py [OUT_DIR]      # default: ./data next to this file

``churn.csv`` has one column per feature and the ``churn`` label (``yes``/``no``): the
table layout (N, F), NC. The label depends on a few features plus noise, so a linear
model does well but not perfectly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

FEATURES = ("tenure_months", "monthly_fee", "support_calls", "logins_week", "discount", "age")


def make_table(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of the six features and the churn label (0 = no, 1 = yes)."""
    rng = np.random.default_rng(seed)
    x = np.column_stack(
        [
            rng.integers(1, 72, n),
            rng.uniform(5, 80, n).round(2),
            rng.poisson(1.5, n),
            rng.poisson(4, n),
            rng.choice([0.0, 0.1, 0.2], n),
            rng.integers(18, 80, n),
        ]
    ).astype(np.float32)
    score = -0.05 * x[:, 0] + 0.03 * x[:, 1] + 0.6 * x[:, 2] - 0.3 * x[:, 3] - 4 * x[:, 4]
    y = (score + rng.normal(0, 0.8, n) > np.median(score)).astype(int)
    return x, y


def main(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    x, y = make_table()
    path = out / "churn.csv"
    rows = [",".join((*FEATURES, "churn"))]
    for row, label in zip(x, y, strict=True):
        rows.append(",".join([*(f"{v:g}" for v in row), "yes" if label else "no"]))
    path.write_text("\n".join(rows) + "\n")
    print(f"wrote {path}: {len(y)} rows of {len(FEATURES)} features (NC), label 'churn'")
    return path


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data")
