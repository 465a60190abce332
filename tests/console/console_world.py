"""The console tests' world: one live server holding something for every console page.

Built the way users build it, through the public API and the device protocol:

- app "shop" with four models: "digits" (v1 in production with a reference profile and a
  model card with a table, v2 in a staged rollout with guardrails), "faces" (an A/B
  experiment between v1 and v2), "keyboard" (v2 waiting to be promoted) and "words" (a
  second rollout, for the test of an action that fails);
- a fleet of ``DEVICES`` phones that check in (so they get the rollout's and the
  experiment's versions) and send telemetry for what they run: slow enough on "digits"
  that a latency alert fires, with label feedback (accuracy);
- three hours of monitoring sketches per device class, one class drifted by one sigma
  (``pocketml.testing.store_sketches``, stored as intake stores them);
- a loop job queued for "digits", an alert rule on its latency;
- model "tinyfed" (tests/federated/fl_kit.py's federatable model) with a federated task;
- the telemetry exported to Parquet once, as ``pocketml telemetry export`` does.

The background loops (rollout evaluator, alert evaluator, loop runner) are off so nothing
moves while a test looks; one pass of the rollout and alert evaluators runs from a second
service on the same database and master key, exactly as another replica would
(tests/alerts/alerts_kit.py does the same).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pocketml.db import utcnow
from pocketml.delivery import DeliveryService, evaluate_rollouts
from pocketml.monitor.alerts import AlertService, MetricSources, telemetry_sources
from pocketml.protect import MasterKey
from pocketml.registry import LocalArtifactStore, Registry
from pocketml.server.client import AdminClient
from pocketml.telemetry import TelemetryStore, export_database
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

__all__ = ["DEVICES", "ConsoleWorld", "serve_world"]

DEVICES = 24
"""Phones in the fleet: half android-mid, half android-high."""

CLASSES = ("android-mid", "android-high")
HOUR = 3600

CARD = """# digits

A small digits classifier.

| slice | accuracy |
| --- | --- |
| phones | 0.961 |
| tablets | 0.948 |
"""

LATENCY_RULE = {
    "name": "slow-digits",
    "metric": "latency_p95_ms",
    "threshold": 250.0,
    "window_s": 3600.0,
    "min_n": 50,
}


@dataclass(frozen=True)
class ConsoleWorld:
    """A running server with one app whose every console page has data."""

    server: LiveServer
    app: AppKeys
    rollout_id: str
    spare_rollout_id: str
    experiment_id: str
    alert_id: str
    job_id: str
    task_id: str
    devices: int

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self.server.url

    def admin(self) -> AdminClient:
        """An AdminClient with the app's admin token (the API the pages must agree with)."""
        return self.server.admin(self.app.admin_token)


def _variant(tmp: Path, model: str, version: int) -> Any:
    return model_variant(
        tmp,
        "onnx-fp32",
        filename=f"{model}-{version}.onnx",
        seed=f"{model}-{version}",
        size=600 + 100 * version,
        profiles=list(CLASSES),
        metrics={"accuracy": 0.9 + version / 100},
    )


def _push_models(client: AdminClient, tmp: Path) -> None:
    profile = monitor_profile().to_dict()
    for model in ("digits", "faces", "keyboard", "words"):
        schema = {**DIGITS_SCHEMA, "name": model}
        extra: dict[str, Any] = {"reference_profile": profile, "card": CARD}
        push_version(
            client,
            model,
            [_variant(tmp, model, 1)],
            schema=schema,
            stage="production",
            **(extra if model == "digits" else {}),
        )
        push_version(client, model, [_variant(tmp, model, 2)], metrics={"accuracy": 0.93})


def _checkin(http: httpx.Client, device_id: str, device_class: str) -> dict[str, int]:
    body = {
        "device_id": device_id,
        "platform": "android",
        "os_version": "14",
        "app_version": "2.0",
        "device_class": device_class,
        "formats": ["onnx"],
    }
    response = http.post("/v1/checkin", json=body)
    response.raise_for_status()
    return {m["name"]: m["version"] for m in response.json()["models"] if m["version"]}


def _send_telemetry(
    http: httpx.Client, device_id: str, device_class: str, versions: dict[str, int], slow: bool
) -> None:
    now = time.time()
    events: list[dict[str, Any]] = []
    for model, version in sorted(versions.items()):
        latency = 400.0 if slow and model == "digits" else 20.0 + version
        for i in range(10):
            label = "7" if i < 8 else "3"
            events.append(
                {"type": "inference", "ts": now, "model": model, "version": version,
                 "variant": "onnx-fp32", "source": "local", "latency_ms": latency + i,
                 "confidence": 0.9, "label": label,
                 "prediction_id": f"{device_id}-{model}-{i}"}
            )  # fmt: skip
        events.append(
            {"type": "error", "ts": now, "model": model, "version": version,
             "stage": "inference", "message": "input tensor was empty"}
        )  # fmt: skip
    body = {
        "batch_id": uuid.uuid4().hex,
        "device_id": device_id,
        "device": {"platform": "android", "device_class": device_class, "app_version": "2.0"},
        "events": events,
    }
    response = http.post("/v1/telemetry", json=body)
    if response.status_code != 202:
        raise AssertionError(f"telemetry refused: {response.text}")
    if "digits" in versions:  # the user says what two predictions really were
        for i, label in ((0, "7"), (1, "4")):
            feedback = {"prediction_id": f"{device_id}-digits-{i}", "device_id": device_id,
                        "model": "digits", "version": versions["digits"], "label": label,
                        "ts": now}  # fmt: skip
            http.post("/v1/feedback", json=feedback).raise_for_status()


def _run_fleet(server: LiveServer, app: AppKeys) -> None:
    with server.http(app.device_key) as http:
        for i in range(DEVICES):
            device_id = f"phone-{i:04d}"
            device_class = CLASSES[i % 2]
            versions = _checkin(http, device_id, device_class)
            _send_telemetry(http, device_id, device_class, versions, slow=i % 3 == 0)


def _store_monitoring(server: LiveServer, app: AppKeys) -> None:
    url = server.settings.resolved_database_url
    profile = monitor_profile()
    start = int(time.time()) // HOUR * HOUR - 3 * HOUR
    store_sketches(url, app.app_id, profile, CLASSES[0], start=start, seed=1)
    store_sketches(url, app.app_id, profile, CLASSES[1], start=start, seed=2, shift=1.0)


def _evaluate_as_a_replica(server: LiveServer) -> None:
    """One rollout-evaluator pass and one alert pass, from a second replica."""
    settings = server.settings
    registry = Registry(
        settings.resolved_database_url,
        LocalArtifactStore(settings.home / "replica-artifacts"),
        MasterKey.load_or_create(settings.home / "master.key"),
    )
    registry.open()
    try:
        delivery = DeliveryService(registry, cache_ttl_s=0)
        delivery.open()
        evaluate_rollouts(delivery.rollouts, now=utcnow())
        sources = MetricSources(telemetry_sources(TelemetryStore(registry.store.engine)))
        AlertService(registry, sources).evaluate()
    finally:
        registry.close()


def _start_federated_task(client: AdminClient, tmp: Path) -> str:
    """Model "tinyfed" (the federated tests' model: a frozen backbone, a trainable head) in
    production, and a federated task on it (round 1 open; no device joins)."""
    from federated.fl_kit import FED_PARAMS, SCHEMA, federatable_onnx, variant_entry

    path = federatable_onnx(tmp / "tinyfed.onnx")
    schema = {**SCHEMA, "name": "tinyfed"}
    variants = [(variant_entry(path), path)]
    push_version(client, "tinyfed", variants, schema=schema, stage="production", params=FED_PARAMS)
    recipe = {"epochs": 2, "batch_size": 8, "learning_rate": 0.5}
    spec = {"version": 1, "rounds": 2, "clients_per_round": 3, "min_reports": 2,
            "clip_norm": 5.0, "recipe": recipe}  # fmt: skip
    return client.start_federated_task("tinyfed", spec).id


def build_world(server: LiveServer, tmp: Path) -> ConsoleWorld:
    """Fill ``server`` with app "shop" (see the module docstring); returns its handles."""
    app = server.create_app("shop")
    with server.admin(app.admin_token) as client:
        _push_models(client, tmp)
        rollout = client.create_rollout(
            "digits",
            2,
            schedule=[25, 50, 100],
            min_dwell_s=86_400,
            min_samples=20,
            on_breach="pause",
            guardrails={"thresholds": {"error_rate": 0.5}, "alpha": 0.01},
        )
        spare = client.create_rollout("words", 2, schedule=[50, 100], min_dwell_s=86_400)
        experiment = client.start_experiment(
            "faces",
            [{"name": "control", "version": 1}, {"name": "treatment", "version": 2}],
            metric="latency_ms",
        )
        client.create_alert_rule("digits", **LATENCY_RULE)
        job = client.run_loop_job("digits", note="console browser test")
    _run_fleet(server, app)
    settings = server.settings  # what `pocketml telemetry export` does (the fleet pages)
    export_database(settings.resolved_database_url, settings.home / "telemetry")
    _store_monitoring(server, app)
    _evaluate_as_a_replica(server)
    with server.admin(app.admin_token) as client:
        alerts = client.list_alerts(states=["firing"]).items
        task_id = _start_federated_task(client, tmp)
    if not alerts:
        raise AssertionError("the world's latency alert did not fire; the world is wrong")
    return ConsoleWorld(
        server=server,
        app=app,
        rollout_id=rollout.id,
        spare_rollout_id=spare.id,
        experiment_id=experiment.id,
        alert_id=alerts[0].id,
        job_id=job.job.id,
        task_id=task_id,
        devices=DEVICES,
    )


@contextmanager
def serve_world(tmp: Path) -> Iterator[ConsoleWorld]:
    """A live server on SQLite (background loops off) holding the world."""
    settings = server_settings(
        tmp / "home",
        devices={"catalog_ttl_s": 0},
        rollout_eval={"interval_s": 0},
        alerts={"eval_interval_s": 0, "delivery_interval_s": 0},
        loop={"interval_s": 0},
        telemetry_export={"interval_s": 0},
    )
    with live_server(settings) as server:
        yield build_world(server, tmp)
