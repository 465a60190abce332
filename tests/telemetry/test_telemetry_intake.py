"""POST /v1/telemetry and /v1/feedback, and the metrics route, on a live server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pocketml.db import create_engine
from pocketml.telemetry import RELATIVE_ERROR, TelemetryExporter
from pocketml.testing import DIGITS_SCHEMA, AppKeys, LiveServer, live_server, server_settings

T0 = 1_795_240_000.0


def inference(i: int, **kw: Any) -> dict[str, Any]:
    event = {
        "type": "inference",
        "ts": T0 + i,
        "model": "digits",
        "version": 1,
        "variant": "small-tflite",
        "source": "local",
        "latency_ms": float(i),
        "confidence": 0.9,
        "label": "7",
        "prediction_id": f"pred-{i}",
    }
    event.update(kw)
    return event


def batch(batch_id: str, events: list[dict[str, Any]], device_class: str = "android-mid") -> dict:
    return {
        "batch_id": batch_id,
        "device_id": "device-0001",
        "device": {"platform": "android", "device_class": device_class, "app_version": "2.3.1"},
        "events": events,
    }


def parquet_files(server: LiveServer, app: AppKeys) -> list[Path]:
    return sorted((server.settings.home / "telemetry" / f"app={app.app_id}").rglob("*.parquet"))


def export_parquet(server: LiveServer) -> int:
    """Run the Parquet exporter on the server's database now (its own loop is off)."""
    engine = create_engine(server.settings.resolved_database_url)
    try:
        root = server.settings.home / "telemetry"
        return TelemetryExporter(engine, root).flush()
    finally:
        engine.dispose()


def metrics(server: LiveServer, app: AppKeys, **params: float) -> list[dict[str, Any]]:
    with server.http(app.admin_token) as http:
        response = http.get("/v1/admin/models/digits/metrics", params=params)
    assert response.status_code == 200, response.text
    return response.json()["groups"]


def test_a_batch_is_stored_once_in_the_database_and_in_parquet(
    server: LiveServer, app_keys: AppKeys
) -> None:
    events = [inference(i) for i in range(10)] + [
        {
            "type": "error",
            "ts": T0,
            "model": "digits",
            "version": 1,
            "stage": "load",
            "message": "out of memory",
        },
        {
            "type": "download",
            "ts": T0,
            "model": "digits",
            "version": 1,
            "variant": "v",
            "bytes": 1000,
            "duration_ms": 12.5,
            "outcome": "done",
        },
    ]
    with server.http(app_keys.device_key) as http:
        first = http.post("/v1/telemetry", json=batch("batch-0001", events))
        second = http.post("/v1/telemetry", json=batch("batch-0001", events))
    nothing_corrected = {"rejected": [], "clock_offset_s": 0.0, "clamped": 0, "stale": 0}
    assert first.status_code == 202
    assert first.json() == {"accepted": 12, "duplicate": False, **nothing_corrected}
    assert second.status_code == 200
    assert second.json() == {"accepted": 0, "duplicate": True, **nothing_corrected}
    (group,) = metrics(server, app_keys)
    assert group["count"] == 10 and group["errors"] == 1
    assert export_parquet(server) == 12
    (path,) = parquet_files(server, app_keys)
    assert path.name.startswith("part-") and path.parent.name.startswith("date=")
    table = pq.read_table(path)
    assert table.num_rows == 12 and set(table.column("batch_id").to_pylist()) == {"batch-0001"}
    assert sorted(set(table.column("type").to_pylist())) == ["download", "error", "inference"]
    assert set(table.column("device_class").to_pylist()) == {"android-mid"}


def test_the_same_batch_id_in_another_app_is_not_a_duplicate(
    server: LiveServer, app_keys: AppKeys
) -> None:
    other = server.create_app("other")
    with server.admin(other.admin_token) as client:
        client.create_model("digits", schema=DIGITS_SCHEMA)
    with server.http(app_keys.device_key) as a, server.http(other.device_key) as b:
        first = a.post("/v1/telemetry", json=batch("batch-shared", [inference(1)]))
        second = b.post("/v1/telemetry", json=batch("batch-shared", [inference(1)]))
    assert first.status_code == 202 and second.status_code == 202


def test_bad_events_are_named_by_index_and_field_and_nothing_is_stored(
    server: LiveServer, app_keys: AppKeys
) -> None:
    events = [
        inference(0),
        inference(1, latency_ms=-1.0),
        inference(2, confidence=1.5),
        {"type": "teleport", "ts": T0, "model": "digits"},
        {"type": "error", "ts": T0, "model": "digits", "stage": "load", "message": "x" * 501},
    ]
    with server.http(app_keys.device_key) as http:
        response = http.post("/v1/telemetry", json=batch("batch-bad-1", events))
    message = response.json()["error"]["message"]
    assert response.status_code == 422
    for fragment in (
        "events[1].latency_ms",
        "events[2].confidence",
        "events[3]",
        "events[4].message",
    ):
        assert fragment in message
    assert "events[0]" not in message
    assert export_parquet(server) == 0
    assert metrics(server, app_keys) == [] and parquet_files(server, app_keys) == []


def test_nan_tokens_are_refused_as_malformed_json(server: LiveServer, app_keys: AppKeys) -> None:
    body = (
        b'{"batch_id": "batch-nan-1", "device_id": "device-0001", "events": [{"type": '
        b'"inference", "ts": 1.0, "model": "digits", "variant": null, "source": "local", '
        b'"latency_ms": NaN, "confidence": 0.5, "label": "1", "prediction_id": "p"}]}'
    )
    with server.http(app_keys.device_key) as http:
        response = http.post(
            "/v1/telemetry", content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400  # NaN is not JSON: the strict parser says so
    assert response.json()["error"]["code"] == "malformed_json"
    assert "NaN" in response.json()["error"]["message"]


def test_batches_over_the_limit_are_413(server: LiveServer, app_keys: AppKeys) -> None:
    too_many = batch("batch-big-01", [inference(i) for i in range(51)])
    too_big = batch("batch-big-02", [inference(0, label="x" * 200_000)])
    with server.http(app_keys.device_key) as http:
        count = http.post("/v1/telemetry", json=too_many)
        size = http.post("/v1/telemetry", json=too_big)
        empty = http.post("/v1/telemetry", json=batch("batch-empty", []))
    assert count.status_code == 413 and "50" in count.json()["error"]["message"]
    assert size.status_code == 413
    assert empty.status_code == 422
    assert metrics(server, app_keys) == []


def test_feedback_gives_accuracy_and_the_newest_feedback_wins(
    server: LiveServer, app_keys: AppKeys
) -> None:
    events = [inference(i, label="7") for i in range(4)]
    with server.http(app_keys.device_key) as http:
        http.post("/v1/telemetry", json=batch("batch-fb-01", events))

        def send(pred: str, ts: float, **kw: Any) -> int:
            body = {
                "prediction_id": pred,
                "device_id": "device-0001",
                "model": "digits",
                "version": 1,
                "ts": ts,
                **kw,
            }
            return http.post("/v1/feedback", json=body).status_code

        codes = [
            send("pred-0", T0 + 10, label="7"),
            send("pred-1", T0 + 10, label="7"),
            send("pred-1", T0 + 20, label="1"),  # newer: replaces the first label
            send("pred-2", T0 + 30, label="7"),
            send("pred-2", T0 + 5, label="3"),  # older: ignored
            send("pred-3", T0 + 10, thumbs="up"),  # not a label: not in accuracy
        ]
        both = send("pred-3", T0, label="7", thumbs="up")
        neither = send("pred-3", T0)
    assert codes == [202] * 6 and both == 422 and neither == 422
    (group,) = metrics(server, app_keys)
    assert group["feedback_count"] == 3 and group["accuracy"] == 2 / 3


def test_metrics_group_by_version_and_device_class_within_the_window(
    server: LiveServer, app_keys: AppKeys
) -> None:
    with server.http(app_keys.device_key) as http:
        http.post(
            "/v1/telemetry",
            json=batch(
                "batch-m-0001",
                [
                    inference(0, latency_ms=10.0, source="cloud"),
                    inference(1, latency_ms=30.0),
                    inference(100, latency_ms=99.0),  # outside the window below
                ],
                device_class="android-low",
            ),
        )
        http.post(
            "/v1/telemetry",
            json=batch(
                "batch-m-0002",
                [
                    inference(2, version=2, latency_ms=4.0, source="fallback"),
                ],
                device_class="iphone",
            ),
        )
    groups = metrics(server, app_keys, since=T0, until=T0 + 50)
    by_key = {(g["version"], g["device_class"]): g for g in groups}
    low, iphone = by_key[(1, "android-low")], by_key[(2, "iphone")]
    assert low["count"] == 2 and low["cloud_share"] == 0.5
    assert low["latency_p50_ms"] == pytest.approx(20.0, rel=RELATIVE_ERROR)  # the sketch's bound
    assert iphone["count"] == 1 and iphone["fallback_share"] == 1.0
    assert [g["version"] for g in groups] == [2, 1]


def test_telemetry_and_metrics_stay_inside_their_app(server: LiveServer, app_keys: AppKeys) -> None:
    other = server.create_app("other-app")
    with server.http(app_keys.device_key) as http:
        http.post("/v1/telemetry", json=batch("batch-iso-01", [inference(0)]))
    with server.http(other.admin_token) as http:
        foreign = http.get("/v1/admin/models/digits/metrics")
    with server.http(app_keys.device_key) as http:
        as_device = http.get("/v1/admin/models/digits/metrics")
    assert foreign.status_code == 404
    assert as_device.status_code == 403


def test_the_server_exports_to_parquet_in_the_background_and_flushes_on_shutdown(
    tmp_path: Path, database_url: str
) -> None:
    home = tmp_path / "home"
    settings = server_settings(
        home, database_url, telemetry_export={"interval_s": 3600}, devices={"catalog_ttl_s": 0}
    )
    with live_server(settings) as live:
        app = live.create_app("flushing")
        with live.admin(app.admin_token) as client:  # telemetry of unknown models is refused
            client.create_model("digits", schema=DIGITS_SCHEMA)
        with live.http(app.device_key) as http:
            for b in range(3):
                events = [inference(b * 10 + i) for i in range(10)]
                assert http.post(
                    "/v1/telemetry", json=batch(f"batch-sd-{b:03d}", events)
                ).is_success

    files = list((home / "telemetry" / f"app={app.app_id}").rglob("*.parquet"))
    rows = sum(pq.read_metadata(path).num_rows for path in files)
    assert rows == 30 and len(files) >= 1


def test_the_cli_prints_the_metrics_table_and_refuses_a_bad_window(
    server: LiveServer, app_keys: AppKeys
) -> None:
    import os
    import subprocess
    import sys

    with server.http(app_keys.device_key) as http:
        http.post(
            "/v1/telemetry",
            json=batch("batch-cli-01", [inference(0, latency_ms=12.0), inference(1)]),
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("POCKETML_")}
    env |= {"POCKETML_SERVER_URL": server.url, "POCKETML_TOKEN": app_keys.admin_token}
    env["COLUMNS"] = "200"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "pocketml", "telemetry", "metrics", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    with server.admin(app_keys.admin_token) as client:
        client.create_model("quiet", schema={**DIGITS_SCHEMA, "name": "quiet"})
    shown, empty = cli("digits"), cli("quiet")
    unknown, bad = cli("nothing-here"), cli("digits", "--hours", "0")

    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if "android-mid" in line)
    cells = [cell.strip() for cell in row.split("│") if cell.strip()]
    assert cells[:4] == ["v1", "android-mid", "2", "0"]
    assert empty.returncode == 0 and "no telemetry for quiet" in empty.stdout
    assert unknown.returncode == 2 and "no model named 'nothing-here'" in unknown.stderr
    assert bad.returncode == 2 and "--hours must be positive" in bad.stderr
