"""``pocketml import``: a trained file in, a model directory out, with no retraining."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from pocketml.train import TrainedModel


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pocketml", "import", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "120"},
    )


def test_import_refuses_an_untrusted_pickle_then_imports_it_when_trusted(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    estimator = LogisticRegression().fit(x, y)
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(estimator))
    np.savez(tmp_path / "data.npz", x=x, y=y)
    args = [str(tmp_path / "model.pkl"), "-e", str(tmp_path / "data.npz"), "-o"]
    refused = _run(*args, str(tmp_path / "out"))
    assert refused.returncode == 2 and "--trust-pickle" in refused.stderr
    assert not (tmp_path / "out").exists()
    done = _run(*args, str(tmp_path / "out"), "--trust-pickle", "--name", "tab")
    assert done.returncode == 0, done.stderr
    assert "accuracy on the example" in done.stdout and "[model] path" in done.stdout
    model = TrainedModel.load(tmp_path / "out")
    np.testing.assert_allclose(model.predict_proba(x), estimator.predict_proba(x), atol=1e-6)
