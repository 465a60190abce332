"""What a client can rely on: per-device prediction ids, unknown models, device clocks.

Service-level tests on SQLite and PostgreSQL (the ``database_url`` fixture), plus the
feedback route's 404 on a live server.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from pocketml.errors import NotFound
from pocketml.protect import MasterKey
from pocketml.registry import LocalArtifactStore, ModelCreate, Registry
from pocketml.server.device_api._telemetry_check import decode_batch
from pocketml.telemetry import Feedback, TelemetryBatch, TelemetryExporter, TelemetryService
from pocketml.telemetry._intake import ClockPolicy, IngestReport, RejectedModel, correct_clock
from pocketml.testing import DIGITS_SCHEMA, AppKeys, LiveServer

NOW = 1_796_000_000.0  # the server's clock in these tests
HOUR = 3600.0
DEVICE_A, DEVICE_B = "device-aaaa", "device-bbbb"


@pytest.fixture
def registry(database_url: str, tmp_path: Path) -> Iterator[Registry]:
    """An open registry (migrated to head) on SQLite or PostgreSQL."""
    master = MasterKey.from_b64(base64.b64encode(bytes(range(32))).decode("ascii"))
    with Registry(database_url, LocalArtifactStore(tmp_path / "artifacts"), master) as opened:
        yield opened


@pytest.fixture
def app_id(registry: Registry) -> str:
    """An app with the models 'digits' and 'faces'."""
    app = registry.create_app("semantics").app.id
    for name in ("digits", "faces"):
        registry.create_model(app, ModelCreate(name=name, schema=DIGITS_SCHEMA))
    return app


@pytest.fixture
def service(registry: Registry, tmp_path: Path) -> TelemetryService:
    """An open service whose clock reads ``NOW``."""
    opened = TelemetryService(registry, tmp_path / "telemetry", clock=lambda: NOW)
    opened.open()
    return opened


def inference(ts: float, prediction_id: str, label: str, **changes: Any) -> dict[str, Any]:
    event = {
        "type": "inference",
        "ts": ts,
        "model": "digits",
        "version": 1,
        "variant": "v",
        "source": "local",
        "latency_ms": 5.0,
        "confidence": 0.9,
        "label": label,
        "prediction_id": prediction_id,
    }
    event.update(changes)
    return event


def label(service: TelemetryService, app_id: str, device: str, prediction: str, value: str) -> None:
    service.record_feedback(app_id, Feedback(prediction, device, "digits", NOW, label=value))


# -- prediction ids are unique per device -----------------------------------------------


def test_two_devices_labelling_the_same_prediction_id_each_label_their_own_inference(
    service: TelemetryService, app_id: str
) -> None:
    service.ingest(
        app_id, TelemetryBatch("batch-a-0001", DEVICE_A, [inference(NOW, "p-000123", "7")])
    )
    service.ingest(
        app_id, TelemetryBatch("batch-b-0001", DEVICE_B, [inference(NOW, "p-000123", "3")])
    )

    label(service, app_id, DEVICE_A, "p-000123", "7")  # A was right
    label(service, app_id, DEVICE_B, "p-000123", "9")  # B was wrong

    events = service.store.events(app_id, "digits")
    assert sorted(
        zip(events.label.to_pylist(), events.feedback_label.to_pylist(), strict=True)
    ) == [
        ("3", "9"),
        ("7", "7"),
    ]
    (group,) = service.model_metrics(app_id, "digits")
    assert (group.feedback_count, group.accuracy) == (2, 0.5)


def test_feedback_of_one_device_never_labels_another_devices_inference(
    service: TelemetryService, app_id: str
) -> None:
    service.ingest(app_id, TelemetryBatch("batch-a-0002", DEVICE_A, [inference(NOW, "p-1", "7")]))

    label(service, app_id, DEVICE_B, "p-1", "7")

    assert service.store.events(app_id, "digits").feedback_label.to_pylist() == [None]


def test_a_later_feedback_of_the_same_device_replaces_only_its_own(
    service: TelemetryService, app_id: str
) -> None:
    for device in (DEVICE_A, DEVICE_B):
        batch = TelemetryBatch(f"batch-{device}", device, [inference(NOW, "p-1", "7")])
        service.ingest(app_id, batch)
        label(service, app_id, device, "p-1", "7")

    service.record_feedback(app_id, Feedback("p-1", DEVICE_B, "digits", NOW + 1, label="2"))

    events = service.store.events(app_id, "digits")
    assert sorted(events.feedback_label.to_pylist()) == ["2", "7"]


# -- unknown models ----------------------------------------------------------------------


def test_events_of_an_unknown_model_are_not_stored_and_are_reported(
    service: TelemetryService, app_id: str
) -> None:
    events = [inference(NOW, "p-1", "1"), inference(NOW, "p-2", "2", model="ghost")]
    events.append(inference(NOW, "p-3", "3", model="ghost"))

    report = service.ingest(app_id, TelemetryBatch("batch-ghost-1", DEVICE_A, events))

    assert report.accepted == 1 and not report.duplicate
    assert report.rejected == (RejectedModel("ghost", 2, "not_found"),)
    assert service.store.count_events(app_id) == 1
    assert len(service.store.events(app_id, "ghost")) == 0


def test_a_batch_of_only_unknown_models_stores_nothing_and_answers_the_same_when_retried(
    service: TelemetryService, app_id: str
) -> None:
    batch = TelemetryBatch("batch-ghost-2", DEVICE_A, [inference(NOW, "p-1", "1", model="ghost")])

    first = service.ingest(app_id, batch)
    second = service.ingest(app_id, batch)

    expected = IngestReport(accepted=0, duplicate=False, rejected=(RejectedModel("ghost", 1),))
    assert first == second == expected
    assert service.store.count_events(app_id) == 0


def test_a_retried_batch_with_an_unknown_model_is_a_duplicate_that_still_says_what_was_refused(
    service: TelemetryService, app_id: str
) -> None:
    events = [inference(NOW, "p-1", "1"), inference(NOW, "p-2", "2", model="ghost")]
    batch = TelemetryBatch("batch-ghost-3", DEVICE_A, events)

    first = service.ingest(app_id, batch)
    again = service.ingest(app_id, batch)

    assert (first.accepted, first.duplicate) == (1, False)
    assert (again.accepted, again.duplicate) == (0, True)
    assert again.rejected == first.rejected == (RejectedModel("ghost", 1),)
    assert service.store.count_events(app_id) == 1


def test_a_model_created_after_a_refusal_is_accepted_at_once(
    registry: Registry, service: TelemetryService, app_id: str
) -> None:
    refused = service.ingest(
        app_id,
        TelemetryBatch("batch-late-01", DEVICE_A, [inference(NOW, "p-1", "1", model="late")]),
    )
    registry.create_model(app_id, ModelCreate(name="late", schema=DIGITS_SCHEMA))

    accepted = service.ingest(
        app_id,
        TelemetryBatch("batch-late-02", DEVICE_A, [inference(NOW, "p-1", "1", model="late")]),
    )

    assert (refused.accepted, accepted.accepted) == (0, 1)


def test_msgspec_events_of_unknown_models_are_filtered_like_dicts(
    service: TelemetryService, app_id: str
) -> None:
    body = {
        "batch_id": "batch-fast-01",
        "device_id": DEVICE_A,
        "events": [inference(NOW, "p-1", "1"), inference(NOW, "p-2", "2", model="ghost")],
    }
    batch = decode_batch(orjson.dumps(body))
    assert batch is not None and not isinstance(batch.events[0], dict)

    report = service.ingest(app_id, batch)

    assert (report.accepted, report.rejected) == (1, (RejectedModel("ghost", 1),))


def test_feedback_for_an_unknown_model_is_not_found_and_not_stored(
    service: TelemetryService, app_id: str
) -> None:
    with pytest.raises(NotFound, match="'ghost'"):
        service.record_feedback(app_id, Feedback("p-1", DEVICE_A, "ghost", NOW, label="1"))


def test_the_feedback_route_answers_404_not_found_for_an_unknown_model(
    server: LiveServer, app_keys: AppKeys
) -> None:
    body = {
        "prediction_id": "p-1",
        "device_id": DEVICE_A,
        "model": "ghost",
        "ts": 1.0,
        "label": "1",
    }
    with server.http(app_keys.device_key) as http:
        refused = http.post("/v1/feedback", json=body)
        stored = http.post("/v1/feedback", json={**body, "model": "digits"})

    assert refused.status_code == 404, refused.text
    assert refused.json()["error"]["code"] == "not_found"
    assert stored.status_code == 202, stored.text


# -- device clocks -----------------------------------------------------------------------


def test_a_clock_hours_behind_is_shifted_by_its_offset(
    service: TelemetryService, app_id: str
) -> None:
    skew = -3 * HOUR  # the device's clock reads three hours early
    events = [inference(NOW + skew - 60 + i, f"p-{i}", "1") for i in range(3)]

    report = service.ingest(
        app_id, TelemetryBatch("batch-skew-01", DEVICE_A, events), device_sent_at=NOW + skew
    )

    assert report.clock_offset_s == 3 * HOUR and (report.clamped, report.stale) == (0, 0)
    in_last_minute = service.model_metrics(app_id, "digits", since=NOW - 60, until=NOW)
    assert [group.count for group in in_last_minute] == [3]


def test_a_clock_hours_ahead_is_shifted_back_instead_of_clamped(
    service: TelemetryService, app_id: str
) -> None:
    events = [inference(NOW + 5 * HOUR - 30, "p-1", "1")]

    report = service.ingest(
        app_id, TelemetryBatch("batch-skew-02", DEVICE_A, events), device_sent_at=NOW + 5 * HOUR
    )

    assert (report.clock_offset_s, report.clamped) == (-5 * HOUR, 0)
    assert [
        g.count for g in service.model_metrics(app_id, "digits", since=NOW - 31, until=NOW - 29)
    ] == [1]


def test_a_small_skew_is_trusted_and_nothing_moves(service: TelemetryService, app_id: str) -> None:
    events = [inference(NOW - 100, "p-1", "1")]

    report = service.ingest(
        app_id, TelemetryBatch("batch-skew-03", DEVICE_A, events), device_sent_at=NOW - 45
    )

    assert (report.clock_offset_s, report.clamped, report.stale) == (0.0, 0, 0)
    assert [
        g.count for g in service.model_metrics(app_id, "digits", since=NOW - 100, until=NOW - 99)
    ] == [1]


def test_a_clock_reset_to_1970_shifts_its_events_and_leaves_the_ones_stamped_before(
    service: TelemetryService, app_id: str
) -> None:
    booted = 600.0  # ten minutes after the battery pull the clock reads 1970-01-01 00:10
    before_pull = inference(NOW - HOUR, "p-old", "1")
    after_pull = inference(booted - 120, "p-new", "1")

    report = service.ingest(
        app_id,
        TelemetryBatch("batch-1970-01", DEVICE_A, [before_pull, after_pull]),
        device_sent_at=booted,
    )

    assert report.clock_offset_s == NOW - booted and (report.clamped, report.stale) == (0, 0)
    hour_ago = service.model_metrics(app_id, "digits", since=NOW - HOUR, until=NOW - HOUR + 1)
    two_minutes_ago = service.model_metrics(app_id, "digits", since=NOW - 121, until=NOW - 119)
    assert [g.count for g in hour_ago] == [1] and [g.count for g in two_minutes_ago] == [1]


def test_events_in_the_future_without_a_send_time_are_clamped_to_the_receive_time(
    service: TelemetryService, app_id: str
) -> None:
    events = [inference(NOW + 2 * HOUR, "p-1", "1"), inference(NOW - 10, "p-2", "1")]

    report = service.ingest(app_id, TelemetryBatch("batch-future-1", DEVICE_A, events))

    assert (report.clock_offset_s, report.clamped, report.stale) == (0.0, 1, 0)
    assert [g.count for g in service.model_metrics(app_id, "digits", since=NOW, until=NOW + 1)] == [
        1
    ]
    assert len(service.store.events(app_id, "digits", since=NOW + 1)) == 0


def test_events_older_than_the_stale_horizon_are_kept_and_counted(
    service: TelemetryService, app_id: str
) -> None:
    events = [inference(1.0, "p-1970", "1"), inference(NOW - 40 * 86_400, "p-old", "1")]
    events.append(inference(NOW - 5, "p-new", "1"))

    report = service.ingest(app_id, TelemetryBatch("batch-stale-01", DEVICE_A, events))

    assert (report.accepted, report.stale, report.clamped) == (3, 2, 0)
    assert service.store.count_events(app_id) == 3


def test_the_parquet_files_keep_the_offset_so_the_device_ts_is_recoverable(
    service: TelemetryService, app_id: str, tmp_path: Path
) -> None:
    device_ts = NOW - 2 * HOUR - 30
    service.ingest(
        app_id,
        TelemetryBatch("batch-parq-01", DEVICE_A, [inference(device_ts, "p-1", "1")]),
        device_sent_at=NOW - 2 * HOUR,
    )

    assert service.export_parquet() == 1
    (path,) = (tmp_path / "telemetry").rglob("*.parquet")
    (row,) = pq.read_table(path).to_pylist()
    assert row["ts"] == NOW - 30 and row["clock_offset_s"] == 2 * HOUR
    assert row["ts"] - row["clock_offset_s"] == device_ts


def test_a_duplicate_batch_with_a_skewed_clock_is_still_stored_once(
    service: TelemetryService, app_id: str
) -> None:
    def send() -> IngestReport:
        events = [inference(NOW - 3 * HOUR - 1, "p-1", "1")]  # a fresh copy, like a retry
        batch = TelemetryBatch("batch-skew-dup", DEVICE_A, events)
        return service.ingest(app_id, batch, device_sent_at=NOW - 3 * HOUR)

    first, second = send(), send()

    assert (first.accepted, second.duplicate) == (1, True)
    assert service.store.count_events(app_id) == 1


def test_correct_clock_changes_nothing_in_a_batch_that_needs_no_correction() -> None:
    events = [inference(NOW - 10, "p-1", "1"), inference(NOW, "p-2", "1")]
    before = [dict(event) for event in events]

    correction = correct_clock(events, NOW, NOW - 1, ClockPolicy())

    assert (correction.offset_s, correction.clamped, correction.stale) == (0.0, 0, 0)
    assert events == before


def test_the_exported_rows_of_a_trusted_clock_have_a_zero_offset(
    service: TelemetryService, app_id: str, registry: Registry, tmp_path: Path
) -> None:
    service.ingest(app_id, TelemetryBatch("batch-zero-01", DEVICE_A, [inference(NOW, "p-1", "1")]))

    TelemetryExporter(registry.store.engine, tmp_path / "other").flush()

    (path,) = (tmp_path / "other").rglob("*.parquet")
    assert pq.read_table(path).column("clock_offset_s").to_pylist() == [0.0]


def test_downgrading_keeps_the_newest_feedback_of_colliding_prediction_ids(
    service: TelemetryService, app_id: str, registry: Registry
) -> None:
    import sqlalchemy as sa
    from alembic import command

    from pocketml.db import alembic_config, run_migrations

    service.record_feedback(app_id, Feedback("p-1", DEVICE_A, "digits", NOW, label="old"))
    service.record_feedback(app_id, Feedback("p-1", DEVICE_B, "digits", NOW + 1, label="new"))
    engine = registry.store.engine
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0005")
    feedback = sa.table("feedback", sa.column("prediction_id"), sa.column("label"))
    with engine.connect() as conn:
        rows = conn.execute(sa.select(feedback.c.prediction_id, feedback.c.label)).all()

    run_migrations(engine)

    assert [tuple(row) for row in rows] == [("p-1", "new")]
    service.record_feedback(app_id, Feedback("p-1", DEVICE_A, "digits", NOW, label="again"))
    assert service.store.events(app_id, "digits").feedback_label.to_pylist() == []
