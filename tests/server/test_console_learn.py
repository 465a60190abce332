"""The console's learn pages on a live server (SQLite and PostgreSQL) holding real data:
telemetry sent by a device, sketches of the monitor, an alert fired by a replica's
evaluation pass, and a retraining job; each page's numbers are the API's.

Every test works in an app of its own, so the module shares one server per database. The
server's own background passes are off (Parquet export, alert evaluation): the tests run
them, as ``pocketml telemetry export`` and another replica would, so nothing races.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from pocketml.monitor.alerts import AlertService, Backoff, MetricSources, telemetry_sources
from pocketml.protect import MasterKey
from pocketml.registry import LocalArtifactStore, Registry
from pocketml.server.console._common import COOKIE, csrf_token
from pocketml.server.console._format import count, duration, num, pct
from pocketml.telemetry import TelemetryStore
from pocketml.testing import (
    DIGITS_SCHEMA,
    AppKeys,
    LiveServer,
    model_variant,
    monitor_profile,
    push_version,
    store_sketches,
)
from shared_server import shared_server_fixture, unique_app_name

HOUR = 3600
T0 = 1_795_240_000 - 1_795_240_000 % HOUR
UNTIL = T0 + 3 * HOUR
PAGES = ("/ui/fleet", "/ui/telemetry", "/ui/alerts", "/ui/loop")

module_server = shared_server_fixture(
    telemetry_export={"interval_s": 0},
    alerts={"eval_interval_s": 0, "delivery_interval_s": 0},
)


@pytest.fixture
def live(module_server: LiveServer) -> LiveServer:
    return module_server


@pytest.fixture
def app(live: LiveServer) -> AppKeys:
    """A new app with model "digits" (no data yet)."""
    keys = live.create_app(unique_app_name("learn"))
    with live.admin(keys.admin_token) as client:
        client.create_model("digits", DIGITS_SCHEMA)
    return keys


@contextmanager
def browser(live: LiveServer, app: AppKeys) -> Iterator[httpx.Client]:
    """An httpx client logged into the console as the app's admin."""
    with live.http() as client:
        login = client.post("/ui/login", data={"token": app.admin_token})
        assert login.status_code == 303
        yield client


def send_telemetry(
    live: LiveServer, app: AppKeys, latency_ms: float = 400.0, n: int = 150, ago_s: float = 5
) -> None:
    """One device's batch: ``n`` inferences, a failed download and a finished one."""
    now = time.time() - ago_s
    batch = uuid.uuid4().hex
    events = [
        {"type": "inference", "ts": now, "model": "digits", "version": 1,
         "variant": "onnx-fp32", "source": "cloud" if i % 10 == 0 else "local",
         "latency_ms": latency_ms + i, "confidence": 0.9, "label": "7",
         "prediction_id": f"{batch}-{i}"}
        for i in range(n)
    ]  # fmt: skip
    events += [
        {"type": "error", "ts": now, "model": "digits", "version": 1, "stage": "download",
         "message": "connection reset"},
        {"type": "download", "ts": now, "model": "digits", "version": 1,
         "variant": "onnx-fp32", "bytes": 20_000, "duration_ms": 120.0, "outcome": "done"},
    ]  # fmt: skip
    body = {
        "batch_id": batch,
        "device_id": "device-0001",
        "device": {"platform": "android", "device_class": "android-mid", "app_version": "2.1"},
        "events": events,
    }
    with live.http(app.device_key) as http:
        assert http.post("/v1/telemetry", json=body).status_code == 202


@contextmanager
def replica(live: LiveServer) -> Iterator[AlertService]:
    """An ``AlertService`` on the server's database and master key: another replica."""
    settings = live.settings
    key = MasterKey.load_or_create(settings.home / "master.key")
    registry = Registry(
        settings.resolved_database_url, LocalArtifactStore(settings.home / "replica"), key
    )
    registry.open()
    try:
        sources = MetricSources(telemetry_sources(TelemetryStore(registry.store.engine)))
        yield AlertService(registry, sources, backoff=Backoff(max_attempts=2))
    finally:
        registry.close()


def fire_latency_alert(live: LiveServer, app: AppKeys) -> str:
    """Slow telemetry and a latency rule, evaluated once: the firing alert's id."""
    with live.admin(app.admin_token) as client:
        client.create_alert_rule(
            "digits", name="latency", metric="latency_p95_ms", threshold=250.0,
            window_s=600.0, min_n=100,
        )  # fmt: skip
        send_telemetry(live, app)
        with replica(live) as service:
            service.evaluate()
        (alert,) = client.list_alerts(states=["firing"]).items
    return alert.id


def with_profile(live: LiveServer, app: AppKeys, tmp_path: Path) -> None:
    """v1 of "digits" with a reference profile, and 3 hours of sketches: phones as the
    reference, tablets with x0 shifted by one sigma."""
    profile = monitor_profile()
    with live.admin(app.admin_token) as client:
        push_version(
            client, "digits", [model_variant(tmp_path, "onnx-fp32")], schema=DIGITS_SCHEMA,
            stage="production", reference_profile=profile.to_dict(),
        )  # fmt: skip
    url = live.settings.resolved_database_url
    store_sketches(url, app.app_id, profile, "phone", start=T0, seed=1)
    store_sketches(url, app.app_id, profile, "tablet", start=T0, seed=2, shift=1.0)


def test_every_page_says_so_when_there_is_no_data(live: LiveServer, app: AppKeys) -> None:
    with browser(live, app) as ui:
        pages = {path: ui.get(path) for path in PAGES}
        drift = ui.get("/ui/models/digits/drift")
        accuracy = ui.get("/ui/models/digits/accuracy")

    for path, response in pages.items():
        assert response.status_code == 200, path
        assert 'class="empty"' in response.text, path
        assert "<svg" not in response.text, path
    assert "No telemetry from devices" in pages["/ui/fleet"].text
    assert "No telemetry for digits" in pages["/ui/telemetry"].text
    assert "No alert is firing" in pages["/ui/alerts"].text
    assert "No retraining job has run yet" in pages["/ui/loop"].text
    for response in (drift, accuracy):
        assert response.status_code == 200
        assert "No " in response.text and 'class="empty"' in response.text


def test_the_telemetry_page_shows_the_metrics_api_numbers_and_charts(
    live: LiveServer, app: AppKeys
) -> None:
    send_telemetry(live, app)
    with browser(live, app) as ui:
        response = ui.get("/ui/telemetry", params={"model": "digits", "days": 1})
    window = re.search(r"metrics\?since=(\d+)&amp;until=(\d+)", response.text)
    assert response.status_code == 200 and window is not None
    since, until = window.groups()
    with live.http(app.admin_token) as http:
        api = http.get(
            "/v1/admin/models/digits/metrics", params={"since": since, "until": until}
        ).json()

    (group,) = api["groups"]
    row = re.search(r"<th scope=\"row\">v1</th><td>android-mid</td>(.*?)</tr>", response.text, re.S)
    assert row is not None
    cells = re.findall(r'<td class="num">([^<]*)</td>', row.group(1))
    assert cells[:7] == [
        count(group["count"]), count(group["errors"]), duration(group["latency_p50_ms"]),
        duration(group["latency_p95_ms"]), pct(group["error_rate"]), pct(group["cloud_share"]),
        pct(group["fallback_share"]),
    ]  # fmt: skip
    assert response.text.count('<svg class="chart"') == 5  # every metric but accuracy
    assert "No data for Accuracy (feedback)" in response.text
    assert int(until) - int(since) == 86_400 and int(until) % HOUR == 0


def test_the_telemetry_page_of_closed_days_read_from_rollups_equals_the_api(
    live: LiveServer, app: AppKeys
) -> None:
    send_telemetry(live, app, ago_s=3 * 86_400, latency_ms=80.0)  # closed hours: rollups
    send_telemetry(live, app, n=20)  # and the open hour: events
    with browser(live, app) as ui:
        first = ui.get("/ui/telemetry", params={"model": "digits", "days": 7})
        again = ui.get("/ui/telemetry", params={"model": "digits", "days": 7})
    window = re.search(r"metrics\?since=(\d+)&amp;until=(\d+)", first.text)
    assert first.status_code == 200 and window is not None
    since, until = window.groups()
    with live.http(app.admin_token) as http:
        api = http.get(
            "/v1/admin/models/digits/metrics", params={"since": since, "until": until}
        ).json()

    (group,) = api["groups"]
    assert group["count"] == 170
    for text in (first.text, again.text):  # built, then read back
        row = re.search(r"<th scope=\"row\">v1</th><td>android-mid</td>(.*?)</tr>", text, re.S)
        assert row is not None
        cells = re.findall(r'<td class="num">([^<]*)</td>', row.group(1))
        assert cells[:7] == [
            count(group["count"]), count(group["errors"]), duration(group["latency_p50_ms"]),
            duration(group["latency_p95_ms"]), pct(group["error_rate"]),
            pct(group["cloud_share"]), pct(group["fallback_share"]),
        ]  # fmt: skip


def test_the_fleet_page_counts_devices_failures_and_downloads(
    live: LiveServer, app: AppKeys
) -> None:
    send_telemetry(live, app)  # not exported to Parquet: the page reads the database
    with browser(live, app) as ui:
        response = ui.get("/ui/fleet")

    assert response.status_code == 200
    text = response.text
    assert re.search(r'<div class="value">1</div><div class="label">devices</div>', text)
    assert re.search(r'<div class="value">152</div><div class="label">events</div>', text)
    for row in (
        ("android-mid", 1, 152), ("digits v1", 1, 150), ("digits · onnx-fp32", 1, 150),
        ("2.1", 1, 152), ("android", 1, 152), ("download", 1, 1), ("done", 1, 1),
    ):  # fmt: skip
        label, devices, events = row
        assert (
            f'<th scope="row">{label}</th><td class="num">{devices}</td>'
            f'<td class="num">{events}</td>'
        ) in text, label
    assert "20 KB" in text


def test_the_drift_page_shows_the_reports_decisions_and_links_each_feature(
    live: LiveServer, app: AppKeys, tmp_path: Path
) -> None:
    with_profile(live, app, tmp_path)
    with live.admin(app.admin_token) as client:
        api = client.drift("digits", until=UNTIL)
    with browser(live, app) as ui:
        response = ui.get("/ui/models/digits/drift", params={"until": UNTIL, "over_time": 1})
        fast = ui.get("/ui/models/digits/drift", params={"until": UNTIL})
        top = api.fleet.features[0]
        feature = ui.get(f"/ui/models/digits/drift/{top.name}", params={"until": UNTIL})
        history = ui.get(
            f"/ui/models/digits/drift/{top.name}",
            params={"until": UNTIL, "window": "6h", "over_time": 1},
        )
        missing = ui.get("/ui/models/digits/drift/nope", params={"until": UNTIL})
    with live.admin(app.admin_token) as client:
        last_hour = client.drift("digits", until=UNTIL, window="1h", group_by="")

    assert response.status_code == 200
    text = response.text
    assert api.fleet.state.replace("_", " ") in text
    assert f"{pct(api.fleet.drifted_share)}</div>" in text
    assert f'<td class="num">{num(top.score)}</td>' in text
    for block in api.fleet.features:
        assert f"/ui/models/digits/drift/{block.name}?" in text
    assert text.count('class="chart spark"') >= len(api.fleet.features)
    assert "tablet" in text and "Drifted share of input features over time" in text
    assert fast.status_code == 200 and "over_time=1" in fast.text
    assert (
        "over time</title>" not in fast.text
        and f"{pct(api.fleet.drifted_share)}</div>" in fast.text
    )
    assert feature.status_code == 200
    assert feature.text.count("reference vs current share per bin") == 1 + len(api.groups)
    last = next(b for b in last_hour.fleet.features if b.name == top.name)
    table = history.text.split("s test per sub-window</caption>")[1]
    rows = re.findall(r'<tr><th scope="row">[^<]*</th><td class="num">([^<]*)</td>', table)
    assert history.status_code == 200 and len(rows) == 6  # 6 hours: 3 without sketches
    assert rows[-1] == num(last.score)
    assert "drift score over time</title>" in history.text
    assert missing.status_code == 404 and "no feature &#39;nope&#39;" in missing.text


def test_the_accuracy_page_shows_estimated_and_realised_like_the_api(
    live: LiveServer, app: AppKeys, tmp_path: Path
) -> None:
    with_profile(live, app, tmp_path)
    with live.admin(app.admin_token) as client:
        api = client.accuracy("digits", until=UNTIL, window="6h")
    with browser(live, app) as ui:
        response = ui.get("/ui/models/digits/accuracy", params={"until": UNTIL, "window": "6h"})
        bad = ui.get("/ui/models/digits/accuracy", params={"window": "3 fortnights"})

    assert response.status_code == 200
    assert api.fleet.estimated is not None
    assert pct(api.fleet.estimated.value) in response.text
    assert pct(api.reference_accuracy) in response.text
    assert "Estimated and realised accuracy over time" in response.text
    assert bad.status_code == 422 and "query parameter &#39;window&#39;" in bad.text


def test_an_alert_is_acknowledged_through_the_form_and_audited_like_the_api(
    live: LiveServer, app: AppKeys
) -> None:
    alert_id = fire_latency_alert(live, app)
    with browser(live, app) as ui:
        before = ui.get("/ui/alerts")
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', before.text)
        assert csrf is not None
        acked = ui.post(f"/ui/alerts/{alert_id}/ack", data={"csrf": csrf.group(1)})
        after = ui.get(acked.headers["location"])
    with live.admin(app.admin_token) as client:
        alert = client.list_alerts().items[0]
        audit = client.audit(subject=alert_id).items

    assert before.status_code == 200 and f"/ui/alerts/{alert_id}/ack" in before.text
    assert acked.status_code == 303
    assert (alert.state, alert.acked_by) == ("firing", f"admin:{app.app_id}")
    assert [e.action for e in audit] == ["alert.ack", "alert.firing"]
    assert "acknowledged" in after.text and f"/ui/alerts/{alert_id}/ack" not in after.text


def test_an_ack_without_the_csrf_token_is_refused_and_changes_nothing(
    live: LiveServer, app: AppKeys
) -> None:
    alert_id = fire_latency_alert(live, app)
    with browser(live, app) as ui:
        forged = ui.post(f"/ui/alerts/{alert_id}/ack", data={"csrf": "0" * 64})
        foreign = ui.post(
            f"/ui/alerts/{alert_id}/ack",
            data={"csrf": "0" * 64},
            headers={"origin": "https://evil.example"},
        )
    with live.admin(app.admin_token) as client:
        alert = client.list_alerts().items[0]
        audit = client.audit(subject=alert_id).items

    assert forged.status_code == 403 and foreign.status_code == 403
    assert "CSRF" in forged.text and "<html" in forged.text
    assert alert.acked_at is None
    assert [e.action for e in audit] == ["alert.firing"]


def test_another_apps_model_and_alert_are_404_pages(live: LiveServer, app: AppKeys) -> None:
    alert_id = fire_latency_alert(live, app)
    other = live.create_app(unique_app_name("other"))
    with browser(live, other) as ui:
        responses = [
            ui.get("/ui/models/digits/drift"),
            ui.get("/ui/models/digits/accuracy"),
            ui.get("/ui/models/digits/drift/x0"),
            ui.get("/ui/telemetry", params={"model": "digits"}),
        ]
        alerts = ui.get("/ui/alerts")
        csrf = csrf_token(ui.cookies[COOKIE])  # the other app's own, valid token
        ack = ui.post(f"/ui/alerts/{alert_id}/ack", data={"csrf": csrf})
    with live.admin(app.admin_token) as client:
        alert = client.list_alerts().items[0]

    for response in responses:
        assert response.status_code == 404
        assert "<html" in response.text and "Not found" in response.text
    assert alert_id not in alerts.text and "No alert is firing" in alerts.text
    assert ack.status_code == 404 and "<html" in ack.text
    assert alert.acked_at is None


def test_the_loop_page_lists_a_job_with_its_state(live: LiveServer, app: AppKeys) -> None:
    with live.http(app.admin_token) as http:
        created = http.post("/v1/admin/models/digits/loop/jobs", json={"note": "console"})
    job = created.json()["job"]
    with browser(live, app) as ui:
        response = ui.get("/ui/loop")

    assert created.status_code == 201
    assert response.status_code == 200
    assert f"<code>{job['id'][:8]}</code>" in response.text
    assert "manual" in response.text and 'href="/ui/models/digits"' in response.text


def test_the_learn_pages_are_in_the_navigation_and_need_a_login(
    live: LiveServer, app: AppKeys
) -> None:
    with browser(live, app) as ui:
        fleet = ui.get("/ui/fleet")
    with live.http() as anonymous:
        redirected = [anonymous.get(path) for path in PAGES]

    for path in PAGES:
        assert f'href="{path}"' in fleet.text
    assert '<a href="/ui/fleet" aria-current="page">' in fleet.text
    assert all(r.status_code == 303 for r in redirected)


def test_out_of_range_query_values_answer_an_html_422_page(live: LiveServer, app: AppKeys) -> None:
    with browser(live, app) as ui:
        responses = [
            ui.get("/ui/fleet", params={"days": 0}),
            ui.get("/ui/telemetry", params={"days": 91}),
            ui.get("/ui/models/digits/drift", params={"window": "400d"}),
        ]

    for response in responses:
        assert response.status_code == 422
        assert response.headers["content-type"].startswith("text/html")
        assert "<html" in response.text
