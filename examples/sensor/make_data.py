"""Write a small sensor set: 3-axis windows of 64 steps in a Parquet tensor column, seeded.

    python make_data.py [OUT_DIR]      # default: ./data next to this file

Three activities (still, walk, run) told apart by the dominant frequency of the motion,
each window a random phase plus noise. ``imu.parquet`` has a ``window`` column (a
fixed-size list of 3 × 64 float32 per row, its shape ``[3, 64]`` recorded in the field
metadata) and an ``activity`` label column: a Parquet tensor column, which ``pocketml
build`` reads as (N, C, L) windows, layout NCL.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CLASSES = ("still", "walk", "run")
CHANNELS, STEPS = 3, 64


def make_windows(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` windows (N, 3, 64) and their class indices."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), n)
    freq = np.array([0.5, 4, 9])[labels][:, None, None]
    phase = rng.uniform(0, 2 * np.pi, (n, CHANNELS, 1))
    t = np.arange(STEPS) / STEPS
    x = np.sin(2 * np.pi * freq * t + phase) + 0.3 * rng.normal(size=(n, CHANNELS, STEPS))
    return x.astype(np.float32), labels


def main(out: Path) -> Path:
    from pocketml.data import tensor_field_metadata

    out.mkdir(parents=True, exist_ok=True)
    x, y = make_windows()
    field = pa.field(
        "window",
        pa.list_(pa.float32(), CHANNELS * STEPS),
        metadata=tensor_field_metadata((CHANNELS, STEPS)),
    )
    windows = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), CHANNELS * STEPS)
    table = pa.Table.from_arrays(
        [windows, pa.array([CLASSES[i] for i in y])],
        schema=pa.schema([field, pa.field("activity", pa.string())]),
    )
    path = out / "imu.parquet"
    pq.write_table(table, path)
    print(f"wrote {path}: {len(y)} windows of {CHANNELS}x{STEPS} (NCL), classes {CLASSES}")
    return path


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data")
