"""The Parquet export lease after a crash, and a final flush that cannot take it.

A real crash: a child process takes the lease, writes the Parquet files of a range and is
killed with SIGKILL before it moves the watermark (its lease has 30 s left). The restarted
exporter of the same home must export at once; one of another home must still wait.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_chunk_store import inference, store_batch

from pocketml.protect import MasterKey
from pocketml.registry import LocalArtifactStore, Registry
from pocketml.telemetry import TelemetryExporter, TelemetryStore

# The child: export one range and stop dead before the watermark moves, holding the lease.
_CRASHING_EXPORTER = """
import sys
from pathlib import Path
from pocketml.db import create_engine
from pocketml.telemetry import TelemetryExporter

exporter = TelemetryExporter(create_engine(sys.argv[1]), Path(sys.argv[2]))

def hang(upper):
    print(exporter.owner, flush=True)
    sys.stdin.read()  # until killed

exporter._advance = hang
exporter.export_once()
"""


@pytest.fixture
def registry(database_url: str, tmp_path: Path) -> Iterator[Registry]:
    master = MasterKey.from_b64(base64.b64encode(bytes(range(32))).decode("ascii"))
    with Registry(database_url, LocalArtifactStore(tmp_path / "artifacts"), master) as opened:
        yield opened


@pytest.fixture
def store(registry: Registry) -> TelemetryStore:
    return TelemetryStore(registry.store.engine)


@pytest.fixture
def app_id(registry: Registry) -> str:
    return registry.create_app("telemetry").app.id


def crash_mid_export(database_url: str, root: Path) -> str:
    """Run the crashing child on ``root`` and SIGKILL it mid-export; its owner id."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_EXPORTER, database_url, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        owner = child.stdout.readline().strip()
    finally:
        child.kill()
        child.wait(timeout=60)
    assert owner, "the child exporter did not reach the crash point"
    return owner


def test_a_restarted_exporter_of_the_same_home_exports_at_once(
    registry: Registry, store: TelemetryStore, app_id: str, database_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "home" / "telemetry"
    store_batch(store, app_id, "batch-before-crash", [inference(i) for i in range(10)])
    crashed_owner = crash_mid_export(database_url, root)
    store_batch(store, app_id, "batch-after-crash", [inference(i) for i in range(10, 15)])

    restarted = TelemetryExporter(registry.store.engine, root)
    exported = restarted.flush()  # the real clock: the crashed lease has not expired

    assert crashed_owner.startswith("home:") and restarted.owner == crashed_owner
    assert exported == 15
    assert restarted.watermark() > 0 and restarted.flush() == 0


def test_an_exporter_of_another_home_still_waits_for_the_crashed_lease(
    registry: Registry, store: TelemetryStore, app_id: str, database_url: str, tmp_path: Path
) -> None:
    store_batch(store, app_id, "batch-before-crash", [inference(i) for i in range(10)])
    crash_mid_export(database_url, tmp_path / "home-a" / "telemetry")

    other = TelemetryExporter(registry.store.engine, tmp_path / "home-b" / "telemetry")

    assert other.export_once() is None
    assert other.watermark() == 0


def test_two_live_exporters_of_one_home_never_share_an_owner(
    registry: Registry, tmp_path: Path
) -> None:
    root = tmp_path / "telemetry"
    first = TelemetryExporter(registry.store.engine, root)
    second = TelemetryExporter(registry.store.engine, root)

    assert first.owner.startswith("home:")
    assert second.owner != first.owner and not second.owner.startswith("home:")
    first.close()
    assert TelemetryExporter(registry.store.engine, root).owner == first.owner


def test_a_graceful_stop_that_cannot_take_the_lease_says_so_in_the_log(
    registry: Registry,
    store: TelemetryStore,
    app_id: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    holder = TelemetryExporter(registry.store.engine, tmp_path / "a")
    store_batch(store, app_id, "batch-held-1", [inference(0)])
    assert holder.export_once() is not None  # holds the lease for 30 s more
    store_batch(store, app_id, "batch-held-2", [inference(1), inference(2)])
    stopping = TelemetryExporter(registry.store.engine, tmp_path / "b")
    stop = asyncio.Event()
    stop.set()  # a stop requested at once: only the final flush runs

    with caplog.at_level(logging.WARNING, logger="pocketml.telemetry.export"):
        asyncio.run(stopping.run_forever(stop))

    (record,) = [r for r in caplog.records if "export skipped" in r.getMessage()]
    assert holder.owner in record.getMessage()
    assert "1 chunks stay in the database" in record.getMessage()
