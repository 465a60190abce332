"""Helpers of the alert tests: an open registry with one app and model, telemetry
written through the real ``TelemetryStore``, and a real HTTP receiver.

``Receiver`` is a ``http.server`` on 127.0.0.1 and a free port, in a thread: it answers
the statuses of its script in turn (then 200), verifies the HMAC of every request with
the secret it is given, and keeps what it got. Webhook deliveries are synchronous POSTs,
so a test knows the receiver has answered when ``deliver`` returns: no sleeps.

``serve`` runs a live server (alert loops off, metrics on) with app "shop" and model
"digits", plus a second ``AlertService`` on its database and master key (``Live.replica``):
the tests drive evaluation and delivery through it, as another replica would.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from pocketml.monitor.alerts import (
    AlertService,
    Backoff,
    MetricSources,
    telemetry_sources,
    verify_signature,
)
from pocketml.protect import MasterKey
from pocketml.registry import LocalArtifactStore, ModelCreate, Registry
from pocketml.server.client import AdminClient
from pocketml.telemetry import Feedback, TelemetryStore
from pocketml.testing import DIGITS_SCHEMA, AppKeys, LiveServer, live_server, server_settings

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class World:
    """An open registry with app "app-a" and model "digits", and its alert service."""

    registry: Registry
    app_id: str
    service: AlertService

    @property
    def telemetry(self) -> TelemetryStore:
        return TelemetryStore(self.registry.store.engine)

    def add_events(
        self,
        at: datetime,
        *,
        latencies: Sequence[float] = (),
        errors: int = 0,
        version: int = 1,
        device_class: str = "android-mid",
        source: str = "device",
    ) -> None:
        """One batch of inference events (one per latency) and ``errors`` error events."""
        ts = at.timestamp()
        rows: list[dict[str, Any]] = [
            {"type": "inference", "latency_ms": latency, "confidence": 0.9, "source": source}
            for latency in latencies
        ]
        rows += [
            {"type": "error", "latency_ms": None, "confidence": None, "source": source}
        ] * errors
        events = [{"ts": ts, "model": "digits", "version": version, **row} for row in rows]
        self.telemetry.insert_batch(
            self.app_id,
            f"b-{uuid.uuid4().hex[:12]}",
            f"dev-{device_class}",
            {"device_class": device_class},
            events,
            at,
        )

    def add_labelled(self, at: datetime, *, correct: int, wrong: int) -> None:
        """Inference events predicting "3", with label feedback: ``correct`` say "3"."""
        device = "dev-android-mid"
        ids = [uuid.uuid4().hex for _ in range(correct + wrong)]
        events = [
            {"ts": at.timestamp(), "model": "digits", "version": 1, "type": "inference",
             "latency_ms": 20.0, "confidence": 0.9, "source": "device", "prediction_id": pid,
             "label": "3"}
            for pid in ids
        ]  # fmt: skip
        self.telemetry.insert_batch(
            self.app_id, f"b-{uuid.uuid4().hex[:12]}", device,
            {"device_class": "android-mid"}, events, at,
        )  # fmt: skip
        for i, pid in enumerate(ids):
            label = "3" if i < correct else "4"
            feedback = Feedback(pid, device, "digits", at.timestamp(), version=1, label=label)
            self.telemetry.upsert_feedback(self.app_id, feedback, at)


def master_key() -> MasterKey:
    return MasterKey.from_b64(base64.b64encode(bytes(range(32))).decode("ascii"))


@contextmanager
def open_world(database_url: str, tmp: Path, **service: Any) -> Iterator[World]:
    """A registry on ``database_url`` with "app-a"/"digits" and an ``AlertService``."""
    registry = Registry(
        database_url, LocalArtifactStore(tmp / "artifacts"), master_key(), tmp_dir=tmp
    )
    registry.open()
    try:
        app_id = registry.create_app("app-a").app.id
        registry.create_model(app_id, ModelCreate(name="digits", schema=DIGITS_SCHEMA))
        sources = MetricSources(telemetry_sources(TelemetryStore(registry.store.engine)))
        service.setdefault("backoff", Backoff(max_attempts=3, base_s=10.0, max_s=60.0))
        yield World(registry, app_id, AlertService(registry, sources, **service))
    finally:
        registry.close()


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    signature_ok: bool

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real webhook receiver: answers ``script`` statuses in turn, then 200."""

    secret: str = ""
    script: list[int] = field(default_factory=list)
    got: list[Received] = field(default_factory=list)
    url: str = ""

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        ok = verify_signature(self.secret, body, headers.get("x-pocketml-signature"))
        self.got.append(Received(headers, body, ok))
        return self.script.pop(0) if self.script else 200


@contextmanager
def receiver(script: Sequence[int] = ()) -> Iterator[Receiver]:
    """Serve a ``Receiver`` on 127.0.0.1 and a free port until the block ends."""
    state = Receiver(script=list(script))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status = state.answer(headers, body)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port_url() -> str:
    """A loopback URL nothing listens on (a receiver that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


METRICS_TOKEN = "pml_metrics_alerts-test"


@dataclass
class Live:
    server: LiveServer
    app: AppKeys
    replica: AlertService

    def admin(self) -> AdminClient:
        return self.server.admin(self.app.admin_token)

    def send_latencies(self, latency_ms: float, n: int = 150) -> int:
        """POST one telemetry batch of ``n`` inferences; returns the status."""
        now = time.time() - 1
        batch_id = uuid.uuid4().hex
        events = [
            {"type": "inference", "ts": now, "model": "digits", "version": 1,
             "variant": "onnx-fp32", "source": "local", "latency_ms": latency_ms,
             "confidence": 0.9, "label": "7", "prediction_id": f"{batch_id}-{i}"}
            for i in range(n)
        ]  # fmt: skip
        body = {
            "batch_id": batch_id,
            "device_id": "device-0001",
            "device": {"platform": "android", "device_class": "android-mid", "app_version": "2"},
            "events": events,
        }
        with self.server.http(self.app.device_key) as http:
            return http.post("/v1/telemetry", json=body).status_code

    def scrape(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        with self.server.http(METRICS_TOKEN) as http:
            text = http.get("/metrics").text
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


@contextmanager
def serve(tmp_path: Path, database_url: str) -> Iterator[Live]:
    settings = server_settings(
        tmp_path / "home",
        database_url,
        alerts={"eval_interval_s": 0, "delivery_interval_s": 0, "max_attempts": 2},
        metrics={"enabled": True, "token": METRICS_TOKEN, "cache_ttl_s": 0},
        telemetry_export={"interval_s": 0},
        rollout_eval={"interval_s": 0},
    )
    with live_server(settings) as server:
        app = server.create_app("shop")
        with server.admin(app.admin_token) as client:
            client.create_model("digits", schema=DIGITS_SCHEMA)
        key = MasterKey.load_or_create(settings.home / "master.key")
        registry = Registry(
            settings.resolved_database_url, LocalArtifactStore(tmp_path / "replica"), key
        )
        registry.open()
        try:
            sources = MetricSources(telemetry_sources(TelemetryStore(registry.store.engine)))
            backoff = Backoff(max_attempts=settings.server.alerts.max_attempts)
            yield Live(server, app, AlertService(registry, sources, backoff=backoff))
        finally:
            registry.close()
