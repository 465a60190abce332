"""Fixtures of the device SDK tests: a real server, a shipped demo model, device factories.

One real uvicorn server (``serve_in_thread(create_app(settings))``, SQLite) runs per test
module; each test gets its own app (a separate tenant), with the deterministic demo build
(ONNX + TFLite device variants, an ONNX cloud variant) pushed to production. Faults are
injected only through httpx transports (``FaultTransport`` below).
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from pocketml import testing
from pocketml.config import Settings
from pocketml.device import Device, DeviceFacts
from pocketml.server.client import AdminClient
from pocketml.sim import centroids, write_demo_build
from pocketml.testing import OPERATOR_TOKEN, live_server

_names = itertools.count()


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo digits build (ONNX + TFLite device variants, ONNX cloud variant)."""
    return write_demo_build(tmp_path_factory.mktemp("build"), formats=("onnx", "tflite"))


@pytest.fixture(scope="session")
def digit_centroids() -> np.ndarray:
    """Raw class centroids: confident inputs for the demo model."""
    return centroids()


def server_settings(home: Path) -> Settings:
    """Settings of a test server (SQLite, fixed operator token, no catalog cache).

    The catalog cache is off so a promotion is seen at once (the default keeps catalogs
    for 1 s, which would make "push then sync" depend on timing).
    """
    return testing.server_settings(home, devices={"catalog_ttl_s": 0})


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real pocketml server on SQLite for the whole module."""
    with live_server(server_settings(tmp_path_factory.mktemp("server-home"))) as live:
        yield live.url


@dataclass(frozen=True)
class Shipped:
    """An app with the demo model in production."""

    url: str
    app_id: str
    admin_token: str
    device_key: str
    public_keys: dict[str, bytes]
    version: int

    def admin(self) -> AdminClient:
        """An admin client of this app."""
        return AdminClient(self.url, self.admin_token)

    def push_again(self, build: Path) -> int:
        """Push the build again as a new production version (forced: the same files)."""
        with self.admin() as client:
            return client.push_build(build, stage="production", force=True).version

    def set_policy(self, version: int, **sections: Any) -> None:
        """PUT the version's hybrid and/or download policy."""
        with self.admin() as client:
            client.request(
                "PUT", f"/v1/admin/models/digits/versions/{version}/policy", json=sections
            )

    def metrics(self) -> list[dict[str, Any]]:
        """The model's telemetry aggregates (one row per version and device class)."""
        with self.admin() as client:
            return list(client.request("GET", "/v1/admin/models/digits/metrics").json()["groups"])


def ship(url: str, build: Path) -> Shipped:
    """Create an app on ``url`` and push ``build`` to production."""
    with AdminClient(url, OPERATOR_TOKEN) as operator:
        created = operator.create_app(f"device-test-{next(_names)}")
    with AdminClient(url, created.admin_token) as admin:
        version = admin.push_build(build, stage="production")
    keys = {k: base64.b64decode(v) for k, v in created.app.public_keys.items()}
    return Shipped(
        url, created.app.id, created.admin_token, created.device_key, keys, version.version
    )


@pytest.fixture
def shipped(server_url: str, demo_build: Path) -> Shipped:
    """A fresh app with the demo model v1 in production."""
    return ship(server_url, demo_build)


LINUX = DeviceFacts(
    platform="linux",
    os_version="6.1",
    app_version="1.0.0",
    formats=("onnx",),
    device_class="edge-linux",
)
ANDROID = DeviceFacts(
    platform="android",
    os_version="14",
    app_version="2.3.1",
    formats=("tflite",),
    device_class="android-mid",
)


class ManualClock:
    """A clock tests move by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        """Record the wait and move the clock (no real sleep)."""
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    """A hand-moved clock."""
    return ManualClock()


DeviceFactory = Callable[..., Device]


@pytest.fixture
def make_device(shipped: Shipped, tmp_path: Path, clock: ManualClock) -> Iterator[DeviceFactory]:
    """Build Devices on the shipped app (closed after the test)."""
    made: list[Device] = []

    def factory(facts: DeviceFacts = LINUX, cache: str = "cache", **kwargs: Any) -> Device:
        kwargs.setdefault("sleep", clock.sleep)
        kwargs.setdefault("seed", 0)
        device = Device(shipped.url, shipped.device_key, facts, tmp_path / cache, **kwargs)
        made.append(device)
        return device

    yield factory
    for device in made:
        device.close()


class FaultTransport(httpx.BaseTransport):
    """A real HTTP transport with injectable faults (the only fake in these tests).

    Args:
        fail: callable(request) -> an exception to raise instead of sending, or None.
        mangle: callable(request, body bytes) -> the body to deliver (or raise mid-body).
        lose_answer: callable(request) -> True to drop the response after the server
            handled the request.
    """

    def __init__(
        self,
        *,
        fail: Callable[[httpx.Request], Exception | None] | None = None,
        mangle: Callable[[httpx.Request, bytes], httpx.SyncByteStream | bytes] | None = None,
        lose_answer: Callable[[httpx.Request], bool] | None = None,
    ) -> None:
        self.inner = httpx.HTTPTransport()
        self.fail = fail
        self.mangle = mangle
        self.lose_answer = lose_answer
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fail is not None and (error := self.fail(request)) is not None:
            raise error
        response = self.inner.handle_request(request)
        body = response.read()
        response.close()
        if self.lose_answer is not None and self.lose_answer(request):
            raise httpx.ReadError("answer lost (test fault)", request=request)
        if self.mangle is None:
            return httpx.Response(
                response.status_code, headers=response.headers, content=body, request=request
            )
        mangled = self.mangle(request, body)
        headers = [(k, v) for k, v in response.headers.raw if k.lower() != b"content-length"]
        if isinstance(mangled, bytes):
            return httpx.Response(
                response.status_code, headers=headers, content=mangled, request=request
            )
        return httpx.Response(
            response.status_code, headers=headers, stream=mangled, request=request
        )

    def close(self) -> None:
        self.inner.close()


class CutStream(httpx.SyncByteStream):
    """Yields the first ``cut`` bytes, then breaks the connection."""

    def __init__(self, body: bytes, cut: int, request: httpx.Request) -> None:
        self.body, self.cut, self.request = body, cut, request

    def __iter__(self) -> Iterator[bytes]:
        yield self.body[: self.cut]
        raise httpx.ReadError("connection cut (test fault)", request=self.request)


def is_package(request: httpx.Request) -> bool:
    """True for package downloads."""
    return request.url.path.startswith("/v1/packages/")


def is_predict(request: httpx.Request) -> bool:
    """True for cloud predictions."""
    return request.url.path.endswith("/predict")
