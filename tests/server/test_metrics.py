"""GET /metrics: the Prometheus text, parsed by prometheus-client's own parser, after
real requests to a live server; and its refusals."""

from __future__ import annotations

import json
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from pocketml.config import MetricsSettings
from pocketml.server._metrics import ServerMetrics
from pocketml.testing import (
    DIGITS_SCHEMA,
    AppKeys,
    LiveServer,
    live_server,
    model_variant,
    monitor_profile,
    push_version,
    server_settings,
    store_sketches,
)

METRICS_TOKEN = "pml_metrics_test-scrape-token"
FACTS = {
    "device_id": "device-0001",
    "platform": "android",
    "os_version": "14",
    "app_version": "2.3.1",
    "device_model": "Pixel 7",
    "device_class": "android-mid",
    "formats": ["onnx"],
    "runtimes": {"onnxruntime": "1.20.0"},
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metrics_server(home: Path, database_url: str | None = None, **metrics: Any) -> Any:
    """A live server with metrics on; exporter and rollout loops off (no background I/O)."""
    settings = server_settings(
        home,
        database_url,
        metrics={"enabled": True, "token": METRICS_TOKEN, "cache_ttl_s": 0, **metrics},
        telemetry_export={"interval_s": 0},
        rollout_eval={"interval_s": 0},
    )
    return live_server(settings)


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[LiveServer]:
    with metrics_server(tmp_path / "home", database_url) as live:
        yield live


def with_digits(server: LiveServer) -> AppKeys:
    app = server.create_app("shop")
    with server.admin(app.admin_token) as client:
        client.create_model("digits", schema=DIGITS_SCHEMA)
    return app


def telemetry(batch_id: str, device_class: str, n: int, **fields: Any) -> dict[str, Any]:
    now = time.time() - 1
    events = [
        {
            "type": "inference",
            "ts": now,
            "model": "digits",
            "version": 1,
            "variant": "onnx-fp32",
            "source": "local",
            "latency_ms": 10.0 + i,
            "confidence": 0.9,
            "label": "7",
            "prediction_id": f"{batch_id}-{i}",
            **fields,
        }
        for i in range(n)
    ]
    device = {"platform": "android", "device_class": device_class, "app_version": "2.3.1"}
    return {"batch_id": batch_id, "device_id": "device-0001", "device": device, "events": events}


def scrape(server: LiveServer, token: str | None = METRICS_TOKEN) -> Samples:
    """Every sample of GET /metrics, parsed by prometheus-client's parser."""
    with server.http(token) as http:
        response = http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_requests_on_both_doors_move_the_counters_and_the_model_metrics(
    server: LiveServer,
) -> None:
    app = with_digits(server)
    with server.http(app.device_key) as device, server.http() as anonymous:
        first = device.post("/v1/checkin", json=FACTS)
        again = device.post(
            "/v1/checkin", json=FACTS, headers={"If-None-Match": first.headers["etag"]}
        )
        stored = device.post("/v1/telemetry", json=telemetry("batch-0001", "android-mid", 3))
        assert (
            device.post("/v1/telemetry", json=telemetry("batch-0001", "android-mid", 3)).status_code
            == 200
        )
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/no/such/route").status_code == 404
        assert anonymous.get("/v1/admin/apps").status_code == 401  # the guard: no token
    assert (first.status_code, again.status_code, stored.status_code) == (200, 304, 202)

    samples = scrape(server)

    requests = "pocketml_http_requests_total"
    assert value(samples, requests, method="POST", route="/v1/checkin", status="200") == 1
    assert value(samples, requests, method="POST", route="/v1/checkin", status="304") == 1
    assert value(samples, requests, method="POST", route="/v1/telemetry", status="202") == 1
    assert value(samples, requests, method="POST", route="/v1/telemetry", status="200") == 1
    assert value(samples, requests, method="GET", route="/healthz", status="200") == 1
    assert value(samples, requests, method="GET", route="(unmatched)", status="404") == 1
    assert value(samples, requests, method="GET", route="(refused)", status="401") == 1
    latency = "pocketml_http_request_duration_seconds_count"
    assert value(samples, latency, method="POST", route="/v1/checkin") == 2
    assert value(samples, "pocketml_telemetry_events_ingested_total") == 3  # not the duplicate
    group = {"app": "shop", "model": "digits", "version": "1", "device_class": "android-mid"}
    assert value(samples, "pocketml_model_inferences", **group) == 3
    assert value(samples, "pocketml_model_latency_p95_seconds", **group) == pytest.approx(
        0.0119, abs=1e-3
    )
    assert value(samples, "pocketml_model_error_rate", **group) == 0
    assert value(samples, "pocketml_model_cloud_share", **group) == 0
    assert value(samples, "pocketml_model_groups_dropped") == 0
    assert value(samples, "pocketml_metrics_database_up") == 1
    assert value(samples, "pocketml_telemetry_export_backlog_chunks") == 1  # exporter off
    lag = value(samples, "pocketml_telemetry_export_lag_seconds")
    assert lag is not None and lag >= 0


def test_drift_and_the_label_free_estimate_are_scraped_per_device_class(
    server: LiveServer, tmp_path: Path
) -> None:
    app = server.create_app("watched")
    profile = monitor_profile()
    with server.admin(app.admin_token) as client:
        push_version(
            client,
            "digits",
            [model_variant(tmp_path, "onnx-fp32")],
            schema=DIGITS_SCHEMA,
            stage="production",
            reference_profile=profile.to_dict(),
        )
    # the hour that holds "now": the scrape reads the last hour of sketches
    start = int(time.time()) // 3600 * 3600
    url = server.settings.resolved_database_url
    store_sketches(url, app.app_id, profile, "phone", start=start, hours=1, seed=1)
    store_sketches(url, app.app_id, profile, "tablet", start=start, hours=1, seed=2, shift=1.0)

    samples = scrape(server)

    labels = {"app": "watched", "model": "digits", "version": "1"}
    assert value(samples, "pocketml_model_drift_share", **labels, device_class="phone") == 0.0
    shifted = value(samples, "pocketml_model_drift_share", **labels, device_class="tablet")
    assert shifted is not None and shifted > 0
    assert value(samples, "pocketml_model_psi_max", **labels, device_class="phone") == 0.0
    psi = value(samples, "pocketml_model_psi_max", **labels, device_class="tablet")
    assert psi is not None and psi > 0.25
    estimate = value(samples, "pocketml_model_accuracy_estimated", **labels, device_class="phone")
    assert estimate is not None and 0.0 < estimate <= 1.0


def test_the_busiest_model_groups_are_kept_and_the_rest_counted_as_dropped(
    tmp_path: Path,
) -> None:
    with metrics_server(tmp_path / "home", max_model_series=1) as server:
        app = with_digits(server)
        with server.http(app.device_key) as device:
            device.post("/v1/telemetry", json=telemetry("batch-0001", "android-mid", 2))
            device.post("/v1/telemetry", json=telemetry("batch-0002", "ios-high", 5))
        samples = scrape(server)
    kept = [labels for name, labels in samples if name == "pocketml_model_inferences"]
    assert [dict(labels)["device_class"] for labels in kept] == ["ios-high"]
    assert value(samples, "pocketml_model_groups_dropped") == 1


@pytest.mark.parametrize("token", [None, "pml_metrics_wrong", "operator"])
def test_a_scrape_without_the_metrics_token_is_refused(tmp_path: Path, token: str | None) -> None:
    with metrics_server(tmp_path / "home") as server:
        given = server.operator_token if token == "operator" else token
        with server.http(given) as http:
            response = http.get("/metrics")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert "metrics token" in response.json()["error"]["message"]


def test_metrics_are_off_unless_enabled(tmp_path: Path) -> None:
    with live_server(server_settings(tmp_path / "home")) as server, server.http() as http:
        response = http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 404


def test_without_a_configured_token_one_is_generated_into_a_private_file(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    with metrics_server(home, token=None) as server:
        path = home / "metrics.token"
        token = path.read_text(encoding="utf-8").strip()
        samples = scrape(server, token)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert token.startswith("pml_metrics_")
    assert value(samples, "pocketml_metrics_database_up") == 1


def test_two_apps_in_one_process_keep_their_own_registries() -> None:
    first, second = ServerMetrics(MetricsSettings()), ServerMetrics(MetricsSettings())
    first.observe("GET", "/healthz", 200, 0.001)
    first.observe("BREW", "/healthz", 200, 0.001)  # an unknown method is one label
    assert (
        first.registry.get_sample_value(
            "pocketml_http_requests_total", {"method": "GET", "route": "/healthz", "status": "200"}
        )
        == 1
    )
    assert (
        first.registry.get_sample_value(
            "pocketml_http_requests_total",
            {"method": "OTHER", "route": "/healthz", "status": "200"},
        )
        == 1
    )
    assert (
        second.registry.get_sample_value(
            "pocketml_http_requests_total", {"method": "GET", "route": "/healthz", "status": "200"}
        )
        is None
    )


def test_the_example_dashboard_and_alert_rules_name_only_metrics_the_server_exposes(
    tmp_path: Path,
) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs"
    rules = yaml.safe_load((docs / "prometheus-alerts.yml").read_text(encoding="utf-8"))
    dashboard = json.loads((docs / "grafana-dashboard.json").read_text(encoding="utf-8"))
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    expressions += [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", ())
    ]
    named = {
        re.sub(r"_(total|bucket|count|sum)$", "", name)
        for expr in expressions
        for name in re.findall(r"pocketml_[a-z0-9_]+", expr)
    }
    with metrics_server(tmp_path / "home") as server, server.http(METRICS_TOKEN) as http:
        text = http.get("/metrics").text
    exposed = {family.name for family in text_string_to_metric_families(text)}
    assert len(named) >= 12
    assert named <= exposed, f"not exposed by the server: {sorted(named - exposed)}"
