"""Telemetry rollups: the latency sketch's bound, exact merges, invalidation, series."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa

from pocketml.errors import InvalidInput
from pocketml.protect import MasterKey
from pocketml.registry import LocalArtifactStore, ModelCreate, Registry
from pocketml.telemetry import (
    RELATIVE_ERROR,
    EventRows,
    Feedback,
    MetricsRow,
    TelemetryBatch,
    TelemetryService,
    aggregate_events,
)
from pocketml.telemetry._rollup import Cell, metrics_rows, plan, summarise
from pocketml.testing import DIGITS_SCHEMA

DAY0 = 1_795_219_200.0  # a UTC midnight
NOW = DAY0 + 3 * 86_400 + 1800  # half past midnight on day 3: day 3's first hour is open


def _events(rng: np.random.Generator, n: int) -> EventRows:
    kinds = rng.choice(["inference"] * 9 + ["error"], n)
    latency = rng.lognormal(3.0, 1.0, n)
    latency[rng.uniform(size=n) < 0.05] = 0.0
    latency_list: list[Any] = latency.tolist()
    for i in np.flatnonzero(rng.uniform(size=n) < 0.03):
        latency_list[i] = None
    return EventRows(
        version=pa.array(rng.choice([1, 2, 3], n).tolist(), pa.int64()),
        device_class=pa.array([("phone", "tablet", None)[i] for i in rng.integers(0, 3, n)]),
        type=pa.array(kinds.tolist(), pa.string()),
        source=pa.array(rng.choice(["local", "cloud", "fallback"], n).tolist(), pa.string()),
        latency_ms=pa.array(
            [None if k == "error" else v for k, v in zip(kinds, latency_list, strict=True)],
            pa.float64(),
        ),
        confidence=pa.array(rng.uniform(size=n).tolist(), pa.float64()),
        label=pa.array(rng.choice(["a", "b"], n).tolist(), pa.string()),
        feedback_label=pa.nulls(n, pa.string()),
    )


def assert_within_bound(actual: list[MetricsRow], exact: list[MetricsRow]) -> None:
    """Counts and shares equal; p50/p95 within RELATIVE_ERROR; mean to float rounding."""
    assert [(r.version, r.device_class) for r in actual] == [
        (r.version, r.device_class) for r in exact
    ]
    for got, want in zip(actual, exact, strict=True):
        assert (got.count, got.errors, got.error_rate, got.cloud_share, got.fallback_share) == (
            want.count,
            want.errors,
            want.error_rate,
            want.cloud_share,
            want.fallback_share,
        )
        assert (got.feedback_count, got.accuracy) == (want.feedback_count, want.accuracy)
        assert got.mean_confidence == pytest.approx(want.mean_confidence, rel=1e-12)
        for name in ("latency_p50_ms", "latency_p95_ms"):
            value, truth = getattr(got, name), getattr(want, name)
            assert (value is None) == (truth is None)
            if truth is not None:
                assert abs(value - truth) <= RELATIVE_ERROR * truth + 1e-9


@pytest.mark.parametrize("seed", range(8))
def test_sketch_percentiles_are_within_the_stated_bound_of_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    events = _events(rng, int(rng.integers(1, 3000)))
    parts = summarise(events, np.zeros(len(events), np.int64))

    rows = metrics_rows([Cell(0, 1, list(parts.values()))], None)[0]

    assert_within_bound(rows, aggregate_events(events))


def test_merging_parts_equals_summarising_everything_at_once() -> None:
    rng = np.random.default_rng(7)
    events = _events(rng, 5000)
    split = rng.integers(0, 24, len(events))
    together = metrics_rows(
        [Cell(0, 1, list(summarise(events, np.zeros(len(events), np.int64)).values()))], None
    )[0]
    by_hour = summarise(events, split)
    encoded = [type(p).decode(p.encode()) for p in by_hour.values()]  # through the blob

    merged = metrics_rows([Cell(0, 1, encoded)], None)[0]

    assert len(merged) == len(together)
    for a, b in zip(merged, together, strict=True):  # same histogram: same percentiles
        assert a.mean_confidence == pytest.approx(b.mean_confidence, rel=1e-12)
        assert {**a.to_dict(), "mean_confidence": 0} == {**b.to_dict(), "mean_confidence": 0}


def test_the_plan_uses_closed_days_then_hours_then_events() -> None:
    since = DAY0 + 1800  # mid-hour
    until = DAY0 + 2 * 86_400 + 3 * 3600 + 60
    pieces = list(plan([since, until], closed_until=DAY0 + 2 * 86_400 + 2 * 3600))

    assert [(p.since - DAY0, p.until - DAY0, p.span) for p in pieces] == [
        (1800, 3600, 0),
        *[(h * 3600, (h + 1) * 3600, 3600) for h in range(1, 24)],
        (86_400, 2 * 86_400, 86_400),
        (2 * 86_400, 2 * 86_400 + 3600, 3600),
        (2 * 86_400 + 3600, 2 * 86_400 + 7200, 3600),
        (2 * 86_400 + 7200, until - DAY0, 0),  # the open hour and the cut one: raw
    ]


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> Iterator[tuple[TelemetryService, str]]:
    master = MasterKey.from_b64(base64.b64encode(bytes(range(32))).decode("ascii"))
    with Registry(database_url, LocalArtifactStore(tmp_path / "artifacts"), master) as reg:
        app = reg.create_app("rollups").app.id
        reg.create_model(app, ModelCreate(name="digits", schema=DIGITS_SCHEMA))
        telemetry = TelemetryService(reg, None, clock=lambda: NOW)
        telemetry.open()
        yield telemetry, app


def _inference(i: int, ts: float, **changes: Any) -> dict[str, Any]:
    event = {
        "type": "inference",
        "ts": ts,
        "model": "digits",
        "version": 1 + i % 2,
        "variant": "v",
        "source": ("local", "cloud", "fallback")[i % 3],
        "latency_ms": 5.0 + (i * 7919) % 200,
        "confidence": (i % 10) / 10,
        "label": str(i % 3),
        "prediction_id": f"p-{i}",
    }
    event.update(changes)
    return event


def _ingest(telemetry: TelemetryService, app: str, batch: str, events: list[Any]) -> None:
    report = telemetry.ingest(
        app, TelemetryBatch(batch, "device-0001", events, device_class="phone"), device_sent_at=None
    )
    assert report.accepted == len(events)


def _rollup_count(telemetry: TelemetryService) -> int:
    with telemetry.store.engine.connect() as conn:
        return int(conn.scalar(sa.text("SELECT count(*) FROM telemetry_rollups")) or 0)


def _exact(telemetry: TelemetryService, app: str, since: float, until: float) -> list[MetricsRow]:
    return aggregate_events(telemetry.store.events(app, "digits", since, until))


def test_windows_use_rollups_and_late_events_and_feedback_still_count(
    service: tuple[TelemetryService, str],
) -> None:
    telemetry, app = service
    events = [_inference(i, DAY0 + i * 517.0) for i in range(600)]  # ~3.6 days, past NOW
    events = [e for e in events if e["ts"] < NOW]
    for b in range(0, len(events), 100):
        _ingest(telemetry, app, f"b-{b}", events[b : b + 100])
    since, until = DAY0 + 1234, NOW

    first = telemetry.model_metrics(app, "digits", since=since, until=until)
    assert_within_bound(first, _exact(telemetry, app, since, until))
    built = _rollup_count(telemetry)
    assert built > 0  # closed days and hours were stored
    assert telemetry.model_metrics(app, "digits", since=since, until=until) == first  # reused
    assert _rollup_count(telemetry) == built

    # a late event in a closed hour of day 1: its rollups go, and the answer includes it
    _ingest(telemetry, app, "late", [_inference(9999, DAY0 + 86_400 + 7200, latency_ms=1e4)])
    assert _rollup_count(telemetry) == built - 1  # day 1 (a whole day: no hour rows)
    after = telemetry.model_metrics(app, "digits", since=since, until=until)
    assert sum(r.count for r in after) == sum(r.count for r in first) + 1
    assert_within_bound(after, _exact(telemetry, app, since, until))

    # feedback on an old prediction shows at once (it is never rolled up)
    telemetry.record_feedback(app, Feedback("p-3", "device-0001", "digits", NOW, label="0"))
    telemetry.record_feedback(app, Feedback("p-4", "device-0001", "digits", NOW, label="1"))
    labelled = telemetry.model_metrics(app, "digits", since=since, until=until)
    assert sum(r.feedback_count for r in labelled) == 2
    assert_within_bound(labelled, _exact(telemetry, app, since, until))

    # a restarted service (empty caches) answers the same from the stored rollups
    again = TelemetryService(telemetry.registry, None, clock=lambda: NOW)
    again.open()
    assert again.model_metrics(app, "digits", since=since, until=until) == labelled
    assert again.model_metrics(app, "digits") == again.model_metrics(
        app, "digits", since=DAY0, until=NOW
    )


def test_a_series_equals_the_metrics_of_each_bucket(service: tuple[TelemetryService, str]) -> None:
    telemetry, app = service
    events = [_inference(i, DAY0 + i * 311.0) for i in range(900)]
    _ingest(telemetry, app, "b-0", [e for e in events if e["ts"] < NOW])
    telemetry.record_feedback(app, Feedback("p-10", "device-0001", "digits", NOW, label="1"))
    since, bucket = DAY0, 6 * 3600

    series = telemetry.model_series(app, "digits", since, NOW, bucket)

    edges = [since + i * bucket for i in range(math.ceil((NOW - since) / bucket))] + [NOW]
    assert len(series) == len(edges) - 1
    for rows, start, end in zip(series, edges, edges[1:], strict=False):
        assert rows == telemetry.model_metrics(app, "digits", since=start, until=end)
        assert_within_bound(rows, _exact(telemetry, app, start, end))
    assert sum(r.feedback_count for rows in series for r in rows) == 1
    labels = telemetry.feedback_labels(app, "digits", edges)
    assert labels == [
        {
            (r.version, r.device_class): (
                round((r.accuracy or 0) * r.feedback_count),
                r.feedback_count,
            )
            for r in rows
            if r.feedback_count
        }
        for rows in series
    ]
    with pytest.raises(InvalidInput):
        telemetry.model_series(app, "digits", since, NOW, 1)  # too many buckets
    with pytest.raises(InvalidInput):
        telemetry.model_series(app, "digits", NOW, since, bucket)


def _fleet_oracle(events: list[dict[str, Any]], since: float, until: float) -> dict[str, Any]:
    """Devices and events per breakdown value, counted event by event."""
    found: dict[str, dict[str, tuple[set[str], list[int]]]] = {}

    def count(dim: str, key: str, event: dict[str, Any]) -> None:
        devices, n = found.setdefault(dim, {}).setdefault(key, (set(), [0]))
        devices.add(event["device"])
        n[0] += 1

    for e in events:
        if not since <= e["ts"] < until:
            continue
        count("all", "", e)
        for dim, name in (
            ("device_classes", "class"),
            ("app_versions", "app"),
            ("platforms", "platform"),
        ):
            count(dim, e[name] or "(none)", e)
        if e["type"] == "inference":
            count("versions", f"{e['model']} v{e['version']}", e)
            count("variants", f"{e['model']} · {e['variant']}", e)
        if e["type"] == "error" and e["stage"] in ("download", "verify", "load"):
            count("sync_failures", e["stage"], e)
        if e["type"] == "download":
            count("downloads", e["outcome"], e)
    return {
        dim: sorted(
            ((k, len(d), n[0]) for k, (d, n) in keys.items()), key=lambda r: (-r[1], -r[2], r[0])
        )
        for dim, keys in found.items()
    }


def test_the_fleet_from_rollups_counts_what_the_events_say(
    service: tuple[TelemetryService, str],
) -> None:
    telemetry, app = service
    telemetry.registry.create_model(app, ModelCreate(name="faces", schema=DIGITS_SCHEMA))
    rng = np.random.default_rng(3)
    sent: list[dict[str, Any]] = []
    for b in range(60):
        device = f"device-{b % 7:04d}"
        context = (("phone", "1.0", "android"), ("tablet", "1.1", "ios"))[b % 2]
        events: list[dict[str, Any]] = []
        for i in range(20):
            ts = DAY0 + float(rng.uniform(0, NOW - DAY0))
            model = ("digits", "faces")[i % 2]
            kind = ("inference", "inference", "error", "download")[int(rng.integers(0, 4))]
            event: dict[str, Any] = {"type": kind, "ts": ts, "model": model, "version": 1 + i % 3}
            if kind == "inference":
                event |= {"variant": ("fp32", "int8")[i % 2], "latency_ms": 3.0, "source": "local"}
            elif kind == "error":
                event |= {"stage": ("download", "inference", "load")[i % 3], "message": "x"}
            else:
                event |= {"variant": "fp32", "bytes": 100 + i, "duration_ms": 1.0}
                event["outcome"] = ("done", "failed")[i % 2]
            events.append(event)
            sent.append({**event, "device": device, "class": context[0], "app": context[1],
                         "platform": context[2]})  # fmt: skip
        batch = TelemetryBatch(
            f"f-{b}", device, events, device_class=context[0], app_version=context[1],
            platform=context[2],
        )  # fmt: skip
        telemetry.ingest(app, batch)

    def check(since: float, until: float) -> None:
        summary = telemetry.fleet(app, since, until)
        want = _fleet_oracle(sent, since, until)
        assert (summary.devices, summary.events) == (want["all"][0][1], want["all"][0][2])
        for dim in ("versions", "variants", "device_classes", "app_versions", "platforms",
                    "sync_failures", "downloads"):  # fmt: skip
            assert getattr(summary, dim) == want.get(dim, []), dim
        assert summary.download_bytes == sum(
            e["bytes"] for e in sent if e["type"] == "download" and since <= e["ts"] < until
        )

    window = (DAY0 + 777.0, NOW)
    check(*window)  # builds the rollups
    assert _rollup_count(telemetry) > 0
    check(*window)  # from them
    late = {"type": "error", "ts": DAY0 + 90_000.0, "model": "faces", "version": 9,
            "stage": "verify", "message": "bad"}  # fmt: skip
    telemetry.ingest(app, TelemetryBatch("late", "device-late", [late], device_class="watch"))
    sent.append({**late, "device": "device-late", "class": "watch", "app": None, "platform": None})
    check(*window)
    check(DAY0 + 86_400, DAY0 + 2 * 86_400)


def test_a_window_and_its_series_from_one_read_equal_the_separate_calls(
    service: tuple[TelemetryService, str],
) -> None:
    telemetry, app = service
    events = [_inference(i, DAY0 + i * 401.0) for i in range(700)]
    _ingest(telemetry, app, "b-0", [e for e in events if e["ts"] < NOW])
    telemetry.record_feedback(app, Feedback("p-12", "device-0001", "digits", NOW, label="0"))
    since, bucket = DAY0 + 3600, 12 * 3600

    rows, series = telemetry.model_window(app, "digits", since, NOW, bucket)

    assert series == telemetry.model_series(app, "digits", since, NOW, bucket)
    alone = telemetry.model_metrics(app, "digits", since=since, until=NOW)
    assert [{**r.to_dict(), "mean_confidence": 0} for r in rows] == [
        {**r.to_dict(), "mean_confidence": 0} for r in alone
    ]
    assert [r.mean_confidence for r in rows] == pytest.approx([r.mean_confidence for r in alone])
    assert sum(r.feedback_count for r in rows) == 1


def test_a_span_whose_events_arrive_while_it_is_built_is_not_stored(
    service: tuple[TelemetryService, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    telemetry, app = service
    _ingest(telemetry, app, "b-0", [_inference(i, DAY0 + 3600 + i) for i in range(10)])
    # the build takes its mark, then a batch of the same hour commits before it stores
    monkeypatch.setattr(telemetry.store, "chunk_mark", lambda: 0)

    rows = telemetry.model_metrics(app, "digits", since=DAY0 + 3600, until=DAY0 + 7200)

    assert sum(r.count for r in rows) == 10  # answered from the events it read
    assert _rollup_count(telemetry) == 0  # but not stored: the next read builds it again
    monkeypatch.undo()
    assert telemetry.model_metrics(app, "digits", since=DAY0 + 3600, until=DAY0 + 7200) == rows
    assert _rollup_count(telemetry) == 1
