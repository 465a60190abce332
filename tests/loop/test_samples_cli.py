"""``pocketml samples list|export`` against a live server, in a child process at 80 columns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from samples_kit import DEVICE_B, batch, normalize, sample, shipped_app

from pocketml.data import load_dataset
from pocketml.testing import AppKeys, LiveServer


def cli(server: LiveServer, app: AppKeys, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POCKETML_")}
    env |= {"POCKETML_SERVER_URL": server.url, "POCKETML_TOKEN": app.admin_token}
    env |= {"COLUMNS": "80", "POCKETML_HOME": str(server.settings.home)}
    command = [sys.executable, "-m", "pocketml", "samples", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_list_and_export_write_a_loadable_dataset_with_its_fingerprint(
    live_server: LiveServer, tmp_path: Path
) -> None:
    app = shipped_app(live_server, "samples-cli", tmp_path)
    raw = np.arange(2 * 64, dtype=np.float32).reshape(2, 64) % 16
    body = batch(
        [
            sample(normalize(raw[0]), label="3"),
            sample(normalize(raw[1]), label="7", device_class="ios-high"),
            sample(normalize(raw[1])),  # unlabelled: listed, not exported
        ],
        device_id=DEVICE_B,
    )
    with live_server.http(app.device_key) as http:
        assert http.post("/v1/samples", json=body).status_code == 200

    listed = cli(live_server, app, "list", "digits")
    exported = cli(live_server, app, "export", "digits", "--out", str(tmp_path / "out"))

    assert listed.returncode == 0, listed.stderr
    assert exported.returncode == 0, exported.stderr
    assert all(len(line) <= 80 for line in listed.stdout.splitlines()), listed.stdout
    assert "android-mid" in listed.stdout and "ios-high" in listed.stdout
    dataset = load_dataset(tmp_path / "out" / "samples.npz")
    assert f"fingerprint: {dataset.fingerprint}" in exported.stdout
    assert "samples: 2" in exported.stdout
    order = np.argsort(dataset.labels)
    np.testing.assert_allclose(dataset.features[order], raw, atol=1e-5)
    assert [dataset.class_names[y] for y in dataset.labels[order]] == ["3", "7"]
