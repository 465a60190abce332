"""The device SDK against ``pocketml server`` run as a separate process, killed and restarted.

The server is the CLI a user runs (``python -m pocketml server --port N``), on SQLite
or PostgreSQL. A device syncs, predicts locally and through the cloud model; the server
is killed with SIGKILL (predictions fall back to the local model, telemetry waits in the
queue); the server is started again on the same home and port and the queued telemetry
arrives exactly once.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from pocketml.device import Device
from pocketml.server.background import serve_in_process

from .conftest import LINUX, OPERATOR_TOKEN, ManualClock, ship


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def pocketml_server(home: Path, database_url: str, port: int) -> Iterator[subprocess.Popen[str]]:
    """``pocketml server`` as a child process on ``home``, ``database_url`` and ``port``."""
    env = {
        "POCKETML_HOME": str(home),
        "POCKETML_DATABASE_URL": database_url,
        "POCKETML_OPERATOR_TOKEN": OPERATOR_TOKEN,
        "POCKETML_SERVER__DEVICES__CATALOG_TTL_S": "0",
    }
    with serve_in_process(env, port=port) as (process, _):
        yield process


def test_a_device_survives_a_killed_server_and_its_telemetry_arrives_once_after_restart(
    tmp_path: Path, database_url: str, demo_build: Path, digit_centroids: np.ndarray
) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    home = tmp_path / "server-home"
    clock = ManualClock()
    with pocketml_server(home, database_url, port) as first:
        shipped = ship(url, demo_build)
        shipped.set_policy(shipped.version, hybrid={"mode": "cloud", "timeout_ms": 5000})
        device = Device(url, shipped.device_key, LINUX, tmp_path / "cache", sleep=clock.sleep)
        report = device.sync()
        assert report.models["digits"].status == "updated"
        cloud = [device.model("digits").predict(digit_centroids[d]) for d in range(3)]
        first.send_signal(signal.SIGKILL)  # no shutdown, no goodbye
        first.wait(timeout=30)
        offline = [device.model("digits").predict(digit_centroids[d]) for d in range(3, 6)]
        unsent = device.flush()
    with pocketml_server(home, database_url, port):
        sent = device.flush()
        again = device.flush()
        groups = shipped.metrics()
    device.close()

    assert [p.source for p in cloud] == ["cloud"] * 3
    assert [p.label for p in cloud] == ["0", "1", "2"]
    assert [p.source for p in offline] == ["fallback"] * 3
    assert [p.label for p in offline] == ["3", "4", "5"]
    assert unsent.error is not None and unsent.pending > 0
    assert sent.error is None and sent.pending == 0 and sent.sent == unsent.pending
    assert again.sent == 0 and again.duplicates == 0
    assert sum(int(g["count"]) for g in groups) == 6  # every inference once, none twice
    by_source = sum(float(g["cloud_share"]) * int(g["count"]) for g in groups)
    assert round(by_source) == 3
