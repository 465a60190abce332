"""Helpers of the rollout tests: an open Registry (SQLite and PostgreSQL) with one app.

The ``world`` fixture (conftest.py) holds app "app-a" with model "digits": version 1 in
production and version 2 (the candidate), each with a device variant made for class "mid";
``add_events`` stores telemetry through the real ``TelemetryStore`` (as intake does).
``serve_live`` runs the same world behind ``pocketml.testing.live_server`` (``Live``) for
the HTTP tests; versions are pushed with ``pocketml.testing``'s push kit.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from pocketml.delivery import DeliveryService, RolloutService
from pocketml.protect import MasterKey
from pocketml.registry import LocalArtifactStore, Registry
from pocketml.server.client import AdminClient
from pocketml.telemetry import TelemetryStore
from pocketml.testing import (
    DIGITS_SCHEMA,
    live_server,
    model_variant,
    push_to_registry,
    push_version,
    server_settings,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class World:
    """An open registry, its delivery service, and the app of the test."""

    registry: Registry
    delivery: DeliveryService
    app_id: str
    tmp: Path

    @property
    def rollouts(self) -> RolloutService:
        """The delivery service's rollout service."""
        return self.delivery.rollouts

    def push(self, *, profiles: Sequence[str] = ("mid",), seed: int = 0) -> int:
        """Push a new candidate version of "digits" with one onnx device variant."""
        variant = model_variant(
            self.tmp,
            "onnx-fp32",
            filename=f"model-{seed}.onnx",
            seed=seed,
            size=512,
            profiles=list(profiles),
        )
        return push_to_registry(self.registry, self.app_id, "digits", [variant]).version


def open_world(database_url: str, tmp: Path, app_id: str | None = None) -> World:
    """Open a registry and delivery service on ``database_url`` (create the app if new)."""
    master = MasterKey.from_b64(base64.b64encode(bytes(range(32))).decode("ascii"))
    registry = Registry(database_url, LocalArtifactStore(tmp / "artifacts"), master, tmp_dir=tmp)
    registry.open()
    delivery = DeliveryService(registry, cache_ttl_s=0)
    delivery.open()
    if app_id is None:
        app_id = registry.create_app("app-a").app.id
    return World(registry, delivery, app_id, tmp)


def add_events(
    world: World,
    version: int,
    *,
    ts: float,
    latencies: Sequence[float] = (),
    confidences: Sequence[float] | None = None,
    errors: int = 0,
    device: str = "dev",
) -> None:
    """Store one batch: inference events (one per latency) and ``errors`` error events."""
    rows: list[dict[str, Any]] = []
    confs = list(confidences) if confidences is not None else [0.9] * len(latencies)
    for i, latency in enumerate(latencies):
        rows.append({"type": "inference", "latency_ms": latency, "confidence": confs[i]})
    rows += [{"type": "error", "latency_ms": None, "confidence": None}] * errors
    events = [
        {"ts": ts, "model": "digits", "version": version, "source": "device", **row} for row in rows
    ]
    if not events:
        return
    TelemetryStore(world.registry.store.engine).insert_batch(
        world.app_id,
        f"b-{version}-{uuid.uuid4().hex[:12]}",
        device,
        {},
        events,
        datetime.now(UTC),
    )


@dataclass(frozen=True)
class Live:
    """A live server with an app whose "digits" has v1 in production and v2 pushed."""

    url: str
    admin_token: str
    device_key: str
    tmp: Path

    def admin(self) -> AdminClient:
        return AdminClient(self.url, self.admin_token)

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.admin_token}"}
        )

    def checkin(self, device_id: str, **facts: object) -> dict[str, int | None]:
        """Check in as ``device_id``: model name -> the version the manifest offers."""
        body = {
            "device_id": device_id,
            "platform": "android",
            "os_version": "14",
            "app_version": "2.0",
            "device_class": "android-mid",
            "formats": ["onnx"],
            **facts,
        }
        headers = {"Authorization": f"Bearer {self.device_key}"}
        response = httpx.post(f"{self.url}/v1/checkin", json=body, headers=headers)
        response.raise_for_status()
        return {m["name"]: m["version"] for m in response.json()["models"]}

    def checkin_version(self, device_id: str, **facts: object) -> int | None:
        (version,) = self.checkin(device_id, **facts).values()
        return version

    def push(self, client: AdminClient, seed: int, model: str = "digits") -> int:
        """Push a version of ``model`` with one onnx device variant for "android-mid"."""
        variant = model_variant(
            self.tmp,
            "onnx-fp32",
            filename=f"m{seed}.onnx",
            seed=seed,
            size=400,
            profiles=["android-mid"],
        )
        return push_version(client, model, [variant]).version


@contextmanager
def serve_live(tmp: Path, database_url: str, **server: Any) -> Iterator[Live]:
    """A real server (``ServerSettings(**server)``: groups as mappings) with app "app-a"
    and model "digits"."""
    with live_server(server_settings(tmp / "home", database_url, **server)) as running:
        created = running.create_app("app-a")
        live = Live(running.url, created.admin_token, created.device_key, tmp)
        with live.admin() as client:
            client.create_model("digits", schema=DIGITS_SCHEMA)
            live.push(client, 1)
            client.set_stage("digits", 1, "production")
            live.push(client, 2)
        yield live
