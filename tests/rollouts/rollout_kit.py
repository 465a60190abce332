"""Helpers of the rollout tests: an open Registry (SQLite and PostgreSQL) with one app.

The ``world`` fixture (conftest.py) holds app "app-a" with model "digits": version 1 in
production and version 2 (the candidate), each with a device variant made for class "mid";
``add_events`` stores telemetry through the real ``TelemetryStore`` (as intake does).
``serve_live`` runs the same world behind a real server (``Live``) for the HTTP tests.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from pocketml.config import ServerSettings, Settings
from pocketml.delivery import DeliveryService, RolloutService
from pocketml.protect import MasterKey
from pocketml.registry import LocalArtifactStore, Registry, VersionCreate
from pocketml.server.background import serve_in_thread
from pocketml.server.client import AdminClient
from pocketml.telemetry import TelemetryStore
from pocketml.testing import write_model_file

SCHEMA: dict[str, Any] = {
    "name": "digits",
    "inputs": [{"name": "pixels", "dtype": "float32", "shape": [None, 64], "layout": "NC"}],
    "outputs": [{"name": "probabilities", "kind": "probabilities", "labels": ["0", "1"]}],
}
T0 = datetime(2026, 1, 1, tzinfo=UTC)
OPERATOR = "pml_op_rollout-tests-operator-token"


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
        path = write_model_file(self.tmp / f"model-{seed}.onnx", "onnx", seed=seed, size=512)
        meta = VersionCreate.model_validate(
            {
                "variants": [
                    {
                        "name": "onnx-fp32",
                        "format": "onnx",
                        "precision": "fp32",
                        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                        "profiles": list(profiles),
                    }
                ]
            }
        )
        return self.registry.push_version(self.app_id, "digits", meta, {"onnx-fp32": path}).version


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
        path = write_model_file(self.tmp / f"m{seed}.onnx", "onnx", seed=seed, size=400)
        meta = {
            "variants": [
                {
                    "name": "onnx-fp32",
                    "format": "onnx",
                    "precision": "fp32",
                    "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                    "profiles": ["android-mid"],
                }
            ]
        }
        return client.push_files(model, meta, {"onnx-fp32": path}).version


@contextmanager
def serve_live(tmp: Path, database_url: str, **server: Any) -> Iterator[Live]:
    """A real server (``ServerSettings(**server)``) with app "app-a" and model "digits"."""
    settings = Settings(
        home=tmp / "home",
        database_url=database_url,
        operator_token=SecretStr(OPERATOR),
        server=ServerSettings(**server),
    )
    with serve_in_thread(settings) as url:
        with AdminClient(url, OPERATOR) as operator:
            created = operator.create_app("app-a")
        live = Live(url, created.admin_token, created.device_key, tmp)
        with live.admin() as client:
            client.create_model("digits", schema=SCHEMA)
            live.push(client, 1)
            client.set_stage("digits", 1, "production")
            live.push(client, 2)
        yield live
