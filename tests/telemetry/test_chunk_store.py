"""Chunked telemetry storage: idempotency, the Parquet exporter, migrations, the read path."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from pocketml.protect import MasterKey
from pocketml.registry import LocalArtifactStore, ModelCreate, Registry
from pocketml.telemetry import (
    RELATIVE_ERROR,
    Feedback,
    MetricsRow,
    TelemetryBatch,
    TelemetryExporter,
    TelemetryService,
    TelemetryStore,
    aggregate,
)
from pocketml.testing import DIGITS_SCHEMA

T0 = 1_795_240_000.0
RECEIVED = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.fixture
def registry(database_url: str, tmp_path: Path) -> Iterator[Registry]:
    """An open registry (migrated to head) on SQLite or PostgreSQL."""
    master = MasterKey.from_b64(base64.b64encode(bytes(range(32))).decode("ascii"))
    with Registry(database_url, LocalArtifactStore(tmp_path / "artifacts"), master) as opened:
        yield opened


@pytest.fixture
def app_id(registry: Registry) -> str:
    """An app with a 'digits' model to store telemetry for (the service refuses others)."""
    app = registry.create_app("telemetry").app.id
    registry.create_model(app, ModelCreate(name="digits", schema=DIGITS_SCHEMA))
    return app


def assert_same_metrics(actual: list[MetricsRow], exact: list[MetricsRow]) -> None:
    """Equal rows, except p50/p95 (from the latency sketch) within ``RELATIVE_ERROR``."""
    assert len(actual) == len(exact)
    for got, want in zip(actual, exact, strict=True):
        for name in ("latency_p50_ms", "latency_p95_ms"):
            value, truth = getattr(got, name), getattr(want, name)
            assert (value is None) == (truth is None)
            if truth is not None:
                assert abs(value - truth) <= RELATIVE_ERROR * truth + 1e-12
        sketched = {"latency_p50_ms": None, "latency_p95_ms": None}
        assert got.__class__(**{**got.to_dict(), **sketched}) == want.__class__(
            **{**want.to_dict(), **sketched}
        )


def inference(i: int, **changes: Any) -> dict[str, Any]:
    event = {
        "type": "inference",
        "ts": T0 + i,
        "model": "digits",
        "version": 1 + i % 2,
        "variant": "v",
        "source": ("local", "cloud", "fallback")[i % 3],
        "latency_ms": float(i % 17),
        "confidence": (i % 10) / 10,
        "label": str(i % 3),
        "prediction_id": f"p-{i}",
    }
    event.update(changes)
    return event


def store_batch(
    store: TelemetryStore, app_id: str, batch_id: str, events: list[dict[str, Any]]
) -> bool:
    context = {"platform": "android", "device_class": "android-mid", "app_version": "1.0"}
    return store.insert_batch(app_id, batch_id, "device-0001", context, events, RECEIVED)


def test_a_batch_sent_twice_is_stored_once(registry: Registry, app_id: str) -> None:
    store = TelemetryStore(registry.store.engine)
    events = [inference(i) for i in range(20)]

    first = store_batch(store, app_id, "batch-000001", events)
    second = store_batch(store, app_id, "batch-000001", events)

    assert (first, second) == (True, False)
    assert store.count_events(app_id) == 20


def test_concurrent_duplicates_store_the_batch_exactly_once(
    registry: Registry, app_id: str
) -> None:
    stores = [TelemetryStore(registry.store.engine) for _ in range(6)]  # like replicas
    events = [inference(i) for i in range(50)]
    barrier = threading.Barrier(len(stores))
    outcomes: list[bool] = []
    lock = threading.Lock()

    def send(store: TelemetryStore) -> None:
        barrier.wait()
        stored = store_batch(store, app_id, "batch-racing", events)
        with lock:
            outcomes.append(stored)

    threads = [threading.Thread(target=send, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == [False] * 5 + [True]
    assert stores[0].count_events(app_id) == 50


def test_a_batch_of_two_models_becomes_two_chunks_read_back_per_model(
    registry: Registry, app_id: str
) -> None:
    store = TelemetryStore(registry.store.engine)
    events = [inference(0), inference(1, model="faces"), inference(2)]

    store_batch(store, app_id, "batch-two-models", events)

    assert len(store.events(app_id, "digits")) == 2
    assert store.events(app_id, "faces").label.to_pylist() == ["1"]
    assert store.count_events(app_id) == 3


def _exporter(registry: Registry, root: Path) -> TelemetryExporter:
    return TelemetryExporter(registry.store.engine, root)


def _parquet_rows(root: Path) -> list[dict[str, Any]]:
    return [
        row for path in sorted(root.rglob("*.parquet")) for row in pq.read_table(path).to_pylist()
    ]


def test_the_exporter_writes_every_event_once_and_advances_its_watermark(
    registry: Registry, app_id: str, tmp_path: Path
) -> None:
    store = TelemetryStore(registry.store.engine)
    for b in range(3):
        store_batch(store, app_id, f"batch-{b:06d}", [inference(b * 10 + i) for i in range(10)])
    exporter = _exporter(registry, tmp_path / "telemetry")

    exported = exporter.flush()

    rows = _parquet_rows(tmp_path / "telemetry")
    (path,) = (tmp_path / "telemetry").rglob("*.parquet")
    assert exported == 30 and len(rows) == 30
    assert path.parent == tmp_path / "telemetry" / f"app={app_id}" / "date=2026-11-21"
    assert path.name == f"part-{rows[0]['chunk_id']}-{rows[-1]['chunk_id']}.parquet"
    assert exporter.watermark() == rows[-1]["chunk_id"] and exporter.flush() == 0
    assert {r["prediction_id"] for r in rows} == {f"p-{i}" for i in range(30)}
    assert {r["device_class"] for r in rows} == {"android-mid"}


def test_a_crash_between_rename_and_watermark_re_exports_the_same_file(
    registry: Registry, app_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = TelemetryStore(registry.store.engine)
    store_batch(store, app_id, "batch-crash-1", [inference(i) for i in range(10)])
    root = tmp_path / "telemetry"
    crashing = _exporter(registry, root)

    def crash(upper: int) -> None:
        raise RuntimeError("killed before the watermark moved")

    monkeypatch.setattr(crashing, "_advance", crash)
    with pytest.raises(RuntimeError):
        crashing.export_once()
    before = sorted(p.name for p in root.rglob("*.parquet"))
    store_batch(store, app_id, "batch-crash-2", [inference(i) for i in range(10, 15)])

    restarted = _exporter(registry, root)  # another owner, after the lease expired
    retry = restarted.export_once(now=datetime.now(UTC).timestamp() + 3600)
    rest = restarted.flush(now=datetime.now(UTC).timestamp() + 3600)

    after = sorted(p.name for p in root.rglob("*.parquet"))
    rows = _parquet_rows(root)
    assert retry is not None and [p.name for p in retry.files] == before
    assert rest == 5 and len(after) == 2 and before[0] in after
    assert sorted(r["prediction_id"] for r in rows) == sorted(f"p-{i}" for i in range(15))


def test_only_the_lease_holder_exports(registry: Registry, app_id: str, tmp_path: Path) -> None:
    store = TelemetryStore(registry.store.engine)
    store_batch(store, app_id, "batch-lease-1", [inference(0)])
    holder = _exporter(registry, tmp_path / "a")
    other = _exporter(registry, tmp_path / "b")

    assert holder.export_once() is not None
    idle = other.export_once()  # nothing new: answered without touching the lease
    store_batch(store, app_id, "batch-lease-2", [inference(1)])
    busy = other.export_once()  # work, but the holder's lease has not expired
    assert idle is not None and idle.chunks == 0
    assert busy is None
    assert holder.flush() == 1


def test_feedback_changes_show_although_decoded_chunks_are_cached(
    registry: Registry, app_id: str
) -> None:
    service = TelemetryService(registry, None)
    service.open()
    service.ingest(
        app_id,
        TelemetryBatch("batch-cache-1", "device-0001", [inference(0, label="7", version=1)]),
    )

    def accuracy() -> float | None:
        (group,) = service.model_metrics(app_id, "digits")
        return group.accuracy

    def label(value: str, ts: float) -> None:
        service.record_feedback(app_id, Feedback("p-0", "device-0001", "digits", ts, label=value))

    assert accuracy() is None
    label("7", T0 + 1)
    assert accuracy() == 1.0 and len(service.store.cache) == 1
    label("3", T0 + 2)
    assert accuracy() == 0.0


def test_chunk_ids_are_never_reused_after_deletes(registry: Registry, app_id: str) -> None:
    store = TelemetryStore(registry.store.engine)
    store_batch(store, app_id, "batch-gone-01", [inference(0, label="old")])
    assert store.events(app_id, "digits").label.to_pylist() == ["old"]  # now cached
    with registry.store.engine.begin() as conn:  # e.g. a retention job
        conn.execute(sa.text("DELETE FROM telemetry_chunks"))

    store_batch(store, app_id, "batch-new-001", [inference(0, label="new")])

    assert store.events(app_id, "digits").label.to_pylist() == ["new"]


def test_aggregates_equal_the_per_row_computation_on_constructed_data(
    registry: Registry, app_id: str
) -> None:
    service = TelemetryService(registry, None)
    service.open()
    events = [inference(i) for i in range(120)]
    events += [
        {
            "type": "error",
            "ts": T0 + 50,
            "model": "digits",
            "version": 2,
            "stage": "load",
            "message": "oom",
        },
        {
            "type": "download",
            "ts": T0 + 6,
            "model": "digits",
            "version": 1,
            "variant": "v",
            "bytes": 10,
            "duration_ms": 1.0,
            "outcome": "done",
        },
    ]
    for b in range(4):
        service.ingest(
            app_id,
            TelemetryBatch(
                f"batch-agg-{b:03d}",
                "device-0001",
                events[b::4],
                device_class=("iphone", "android-low")[b % 2],
            ),
        )
    truth = {f"p-{i}": str(i % 5) for i in range(0, 120, 3)}
    for prediction, value in truth.items():
        service.record_feedback(
            app_id, Feedback(prediction, "device-0001", "digits", T0, label=value)
        )
    since, until = T0 + 10, T0 + 100
    expected_rows = [
        (
            e.get("version"),
            ("iphone", "android-low")[(events.index(e) % 4) % 2],
            e["type"],
            e.get("source"),
            e.get("latency_ms"),
            e.get("confidence"),
            e.get("label"),
            truth.get(e.get("prediction_id", "")),
        )
        for e in events
        if e["type"] in ("inference", "error") and since <= e["ts"] < until
    ]

    metrics = service.model_metrics(app_id, "digits", since=since, until=until)

    assert_same_metrics(metrics, aggregate(expected_rows))
    assert {m.version for m in metrics} == {1, 2} and sum(m.errors for m in metrics) == 1


def test_migrating_down_to_0003_and_up_again_keeps_every_event(
    registry: Registry, app_id: str, database_url: str
) -> None:
    from alembic import command

    from pocketml.db import alembic_config, run_migrations

    engine = registry.store.engine
    store = TelemetryStore(engine)
    store_batch(store, app_id, "batch-mig-001", [inference(i) for i in range(7)])
    store_batch(store, app_id, "batch-mig-002", [inference(i, model="faces") for i in range(7, 9)])
    before = store.events(app_id, "digits")
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0003")
    events_table = sa.table(
        "telemetry_events", *(sa.column(c) for c in ("app_id", "batch_id", "model", "label"))
    )
    with engine.connect() as conn:
        rows = conn.execute(sa.select(events_table)).all()
    assert len(rows) == 9 and {r.batch_id for r in rows} == {"batch-mig-001", "batch-mig-002"}
    legacy = {
        "app_id": app_id,
        "batch_id": "batch-legacy",
        "device_id": "device-0002",
        "type": "inference",
        "ts": T0,
        "model": "digits",
        "version": 3,
        "source": "local",
        "latency_ms": 1.0,
        "confidence": 0.5,
        "label": "9",
        "prediction_id": "legacy",
    }
    with engine.begin() as conn:
        conn.execute(
            sa.table("telemetry_events", *(sa.column(c) for c in legacy)).insert(), [legacy]
        )

    run_migrations(engine)

    after = TelemetryStore(engine)
    assert "telemetry_events" not in sa.inspect(engine).get_table_names()
    assert after.count_events(app_id) == 10
    assert list(after.events(app_id, "digits", versions=[1, 2]).rows()) == list(before.rows())
    assert after.events(app_id, "digits", versions=[3]).label.to_pylist() == ["9"]
    assert after.events(app_id, "faces").label.to_pylist() == ["1", "2"]


def test_the_cli_exports_what_the_database_holds(
    registry: Registry, app_id: str, database_url: str, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    store_batch(TelemetryStore(registry.store.engine), app_id, "batch-cli-001", [inference(0)])
    env = {
        **os.environ,
        "POCKETML_HOME": str(tmp_path / "home"),
        "POCKETML_DATABASE_URL": database_url,
    }

    result = subprocess.run(
        [sys.executable, "-m", "pocketml", "telemetry", "export"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )

    assert result.returncode == 0, result.stderr
    assert "exported 1 events" in result.stdout
    assert len(_parquet_rows(tmp_path / "home" / "telemetry")) == 1


def test_exporting_during_concurrent_intake_writes_every_event_exactly_once(
    registry: Registry, app_id: str, tmp_path: Path
) -> None:
    root = tmp_path / "telemetry"
    exporter = _exporter(registry, root)

    def ingest(writer: int) -> None:
        store = TelemetryStore(registry.store.engine)
        for b in range(15):
            events = [inference(i) for i in range(b * 5, b * 5 + 5)]
            store_batch(store, app_id, f"batch-w{writer}-{b:04d}", events)

    writers = [threading.Thread(target=ingest, args=(w,)) for w in range(3)]
    for writer in writers:
        writer.start()
    while any(writer.is_alive() for writer in writers):
        exporter.export_once()  # ranges chosen while batches are being committed
    for writer in writers:
        writer.join()
    exporter.flush()

    rows = _parquet_rows(root)
    assert len(rows) == 3 * 15 * 5 == TelemetryStore(registry.store.engine).count_events(app_id)
    assert len({(r["batch_id"], r["prediction_id"]) for r in rows}) == len(rows)
