"""Write a small digits-like image set: 8×8 grayscale strokes, values 0–16, seeded.

    python make_data.py [OUT_DIR]      # default: ./data next to this file

Four classes (a horizontal bar, a vertical bar, a cross, a box) drawn at a random position
with sensor noise, saved as ``shapes.npz`` (``x``: (N, 1, 8, 8) float32 NCHW, ``y``,
``class_names``): the layout ``pocketml build`` reads for images.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

CLASSES = ("hbar", "vbar", "cross", "box")


def make_images(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (N, 1, 8, 8) in [0, 16] and their class indices."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), n)
    images = np.zeros((n, 1, 8, 8), dtype=np.float32)
    for i, label in enumerate(labels):
        r, c = rng.integers(2, 6, 2)
        canvas = images[i, 0]
        if label in (0, 2):
            canvas[r, 1:7] = 16
        if label in (1, 2):
            canvas[1:7, c] = 16
        if label == 3:
            canvas[r - 2 : r + 2, c - 2 : c + 2] = 16
            canvas[r - 1 : r + 1, c - 1 : c + 1] = 0
    noisy = images + rng.normal(0, 2.0, images.shape)
    return np.clip(noisy, 0, 16).astype(np.float32), labels


def main(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    x, y = make_images()
    path = out / "shapes.npz"
    np.savez(path, x=x, y=y, class_names=np.array(CLASSES))
    print(f"wrote {path}: {x.shape[0]} images of {x.shape[1:]} (NCHW), classes {CLASSES}")
    return path


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data")
