"""Simulated networks: reproducible faults, simulated time, and answers on every profile."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.responses import Response

from pocketml.device import Device, DeviceFacts
from pocketml.sim import (
    PROFILES,
    AsyncSimulatedTransport,
    SimClock,
    SimulatedTransport,
    centroids,
    profile,
)

LINUX = DeviceFacts(platform="linux", os_version="6.1", app_version="1.0", formats=("onnx",))


def _echo_app() -> FastAPI:
    app = FastAPI()

    @app.get("/bytes/{n}")
    def payload(n: int) -> Response:
        return Response(b"x" * n, media_type="application/octet-stream")

    return app


@pytest.fixture
def echo() -> httpx.ASGITransport:
    """An in-memory ASGI app as the 'real' transport behind the simulation."""
    return httpx.ASGITransport(app=_echo_app())


def _fates(seed: int) -> list[str]:
    clock = SimClock()
    transport = SimulatedTransport("lossy", clock, seed=seed, inner=_SyncASGI())
    fates = []
    with httpx.Client(transport=transport, base_url="http://sim") as client:
        for _ in range(40):
            try:
                client.get("/bytes/4000").read()
                fates.append("ok")
            except httpx.HTTPError as exc:
                fates.append(type(exc).__name__)
    return fates


class _SyncASGI(httpx.BaseTransport):
    """A sync transport answering like the echo app, without a server."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        n = int(request.url.path.rsplit("/", 1)[-1])
        return httpx.Response(200, content=b"x" * n, request=request)


def test_the_same_seed_gives_the_same_faults_and_another_seed_other_ones() -> None:
    first, again, other = _fates(1), _fates(1), _fates(2)

    assert first == again
    assert first != other
    assert {"ok", "ConnectError", "ReadError"} <= set(first)


def test_bandwidth_and_latency_advance_the_simulated_clock_without_sleeping() -> None:
    clock = SimClock()
    slow = PROFILES["3g"].__class__("slow", latency_s=0.1, bandwidth_bps=1000.0)
    transport = SimulatedTransport(slow, clock, inner=_SyncASGI())
    started_real, started_sim = time.perf_counter(), clock.now()

    with httpx.Client(transport=transport, base_url="http://sim") as client:
        assert len(client.get("/bytes/5000", timeout=30.0).content) == 5000

    simulated = clock.now() - started_sim
    real = time.perf_counter() - started_real
    assert simulated - real == pytest.approx(5.2, abs=0.01)  # 2 x 0.1 s + 5000 B / 1000 B/s


def test_a_transfer_slower_than_the_timeout_raises_a_timeout() -> None:
    slow = profile("wifi").__class__("slow", bandwidth_bps=100.0)
    transport = SimulatedTransport(slow, SimClock(), inner=_SyncASGI())

    with (
        httpx.Client(transport=transport, base_url="http://sim") as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        client.get("/bytes/5000", timeout=1.0)


def test_an_outage_window_refuses_connections_only_inside_it() -> None:
    clock = SimClock()
    network = profile("wifi").with_outage(clock.now() + 10, clock.now() + 20)
    transport = SimulatedTransport(network, clock, inner=_SyncASGI())

    with httpx.Client(transport=transport, base_url="http://sim") as client:
        assert client.get("/bytes/10").status_code == 200
        clock.advance(10)
        with pytest.raises(httpx.ConnectError):
            client.get("/bytes/10")
        clock.advance(10)
        assert client.get("/bytes/10").status_code == 200


def test_the_async_transport_simulates_the_same_way(echo: httpx.ASGITransport) -> None:
    clock = SimClock()
    transport = AsyncSimulatedTransport("offline", clock, inner=echo)

    async def call() -> None:
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
            await client.get("/bytes/10")

    with pytest.raises(httpx.ConnectError):
        asyncio.run(call())
    assert transport.stats["outage"] == 1


def test_unknown_profiles_are_refused_with_the_known_names() -> None:
    with pytest.raises(ValueError, match="wifi, 4g, 3g, lossy, offline"):
        profile("5g")


@pytest.mark.parametrize("name", list(PROFILES))
def test_every_network_profile_still_yields_an_answer(
    name: str, shipped_url: tuple[str, str], tmp_path: Path
) -> None:
    url, key = shipped_url
    clock = SimClock()
    transport = SimulatedTransport("wifi", clock, seed=3)
    device = Device(
        url,
        key,
        LINUX,
        tmp_path / "cache",
        transport=transport,
        clock=clock.now,
        sleep=clock.sleep,
        seed=3,
    )
    device.sync()
    transport.set_network(name)
    mu = centroids()
    inputs = [mu[0], (mu[1] + mu[7]) / 2] * 5

    with device:
        answers = [device.model("digits").predict(x) for x in inputs]

    assert len(answers) == 10
    assert {a.label for a in answers[::2]} == {"0"}
    sources = {a.source for a in answers}
    assert sources <= {"local", "cloud", "fallback"}
    if name == "offline":
        assert sources == {"local", "fallback"}
    if name == "wifi":
        assert sources == {"local", "cloud"}
    assert all(np.isfinite(a.latency_ms) for a in answers)


def test_simulated_inputs_take_the_shape_of_the_model_schema() -> None:
    from pocketml.schema import InputSpec, ModelSchema, OutputSpec
    from pocketml.sim._demo import inputs_for_schema

    def schema(shape: list[int | None], layout: str) -> ModelSchema:
        return ModelSchema(
            name="m",
            inputs=[InputSpec(name="input", shape=shape, layout=layout, value_range=(0, 5))],  # type: ignore[arg-type]
            outputs=[OutputSpec(name="p", labels=["a", "b"])],
        )

    digits = inputs_for_schema(schema([None, 1, 8, 8], "NCHW"), 3)
    assert digits.shape == (3, 1, 8, 8) and digits.max() <= 16
    other = inputs_for_schema(schema([None, 5], "NC"), 4, seed=1)
    assert other.shape == (4, 5) and other.min() >= 0 and other.max() <= 5
