"""LocalModel.predict / apredict: local, cascade, cloud, fallback and the circuit breaker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import numpy as np
import pytest

from pocketml.device import CircuitBreaker, Device, DeviceFacts, DeviceState
from pocketml.errors import InvalidInput, Unavailable
from pocketml.schema import ModelSchema
from pocketml.testing import live_server

from .conftest import (
    ANDROID,
    LINUX,
    DeviceFactory,
    FaultTransport,
    ManualClock,
    Shipped,
    is_predict,
    server_settings,
    ship,
)


@pytest.fixture
def near_tie(digit_centroids: np.ndarray) -> np.ndarray:
    """Halfway between the 1 and 7 centroids: the local model is unsure (< 0.8)."""
    return (digit_centroids[1] + digit_centroids[7]) / 2


def test_a_confident_local_answer_stays_local(
    make_device: DeviceFactory, digit_centroids: np.ndarray
) -> None:
    device = make_device(ANDROID)
    device.sync()

    prediction = device.model("digits").predict(digit_centroids[4][np.newaxis])

    assert (prediction.label, prediction.source, prediction.class_index) == ("4", "local", 4)
    assert prediction.confidence > 0.8
    assert prediction.probabilities.shape == (10,)
    assert prediction.probabilities.sum() == pytest.approx(1.0, abs=1e-5)


def test_the_schema_normalization_is_applied_before_the_local_model(
    make_device: DeviceFactory, digit_centroids: np.ndarray
) -> None:
    device = make_device()
    device.sync()

    raw = device.model("digits").predict(digit_centroids[3])
    pre_scaled = device.model("digits").predict(digit_centroids[3] / 16)

    assert raw.label == "3" and raw.confidence > 0.8
    assert pre_scaled.confidence < raw.confidence  # scaled twice: a flatter answer


def test_a_wrong_input_shape_is_refused_with_the_expected_shape(
    make_device: DeviceFactory,
) -> None:
    device = make_device()
    device.sync()

    with pytest.raises(InvalidInput, match=r"shape \(64\)"):
        device.model("digits").predict(np.zeros((2, 64)))


def test_cascade_escalates_an_unsure_answer_to_the_cloud(
    make_device: DeviceFactory, near_tie: np.ndarray
) -> None:
    transport = FaultTransport()
    device = make_device(transport=transport)
    device.sync()
    model = device.model("digits")

    prediction = model.predict(near_tie)

    assert model.policy.mode == "cascade" and model.policy.threshold == 0.8
    assert prediction.source == "cloud" and prediction.label in {"1", "7"}
    sent = [r for r in transport.requests if is_predict(r)]
    assert len(sent) == 1
    body = httpx.Response(200, content=sent[0].content).json()
    assert np.allclose(np.asarray(body["inputs"]), near_tie[np.newaxis] / 16, atol=1e-6)
    assert body["prediction_id"] == prediction.prediction_id


def test_cloud_mode_sends_even_confident_inputs_to_the_cloud(
    make_device: DeviceFactory, shipped: Shipped, digit_centroids: np.ndarray
) -> None:
    shipped.set_policy(shipped.version, hybrid={"mode": "cloud"})
    device = make_device()
    device.sync()

    prediction = device.model("digits").predict(digit_centroids[9])

    assert (prediction.source, prediction.label, prediction.version) == ("cloud", "9", 1)


@pytest.mark.parametrize("twin", ["predict", "apredict"])
def test_cloud_mode_falls_back_to_the_local_model_when_the_cloud_fails(
    make_device: DeviceFactory, shipped: Shipped, digit_centroids: np.ndarray, twin: str
) -> None:
    shipped.set_policy(shipped.version, hybrid={"mode": "cloud"})
    refuse = FaultTransport(
        fail=lambda r: httpx.ConnectError("down", request=r) if is_predict(r) else None
    )
    async_refuse = httpx.MockTransport(
        lambda r: (_ for _ in ()).throw(httpx.ConnectError("down", request=r))
    )
    device = make_device(transport=refuse, async_transport=async_refuse)
    device.sync()
    model = device.model("digits")

    if twin == "predict":
        prediction = model.predict(digit_centroids[7])
    else:
        prediction = asyncio.run(model.apredict(digit_centroids[7]))

    assert (prediction.source, prediction.label, prediction.version) == ("fallback", "7", 1)


def test_without_a_local_model_predictions_go_to_the_cloud(
    make_device: DeviceFactory, demo_build: Path, digit_centroids: np.ndarray
) -> None:
    schema = ModelSchema.from_json((demo_build / "schema.json").read_text())
    device = make_device(state=DeviceState(free_disk_bytes=lambda: 0), schemas={"digits": schema})
    assert device.sync().models["digits"].summary == "failed: disk"

    prediction = device.model("digits").predict(digit_centroids[6])

    assert (prediction.source, prediction.label) == ("cloud", "6")


def test_a_device_with_no_loadable_format_is_served_by_the_cloud(
    make_device: DeviceFactory, demo_build: Path, digit_centroids: np.ndarray
) -> None:
    schema = ModelSchema.from_json((demo_build / "schema.json").read_text())
    iphone = DeviceFacts(platform="ios", os_version="17", app_version="1.0", formats=("coreml",))
    device = make_device(iphone, schemas={"digits": schema})

    assert device.sync().models["digits"].status == "cloud-only"
    assert device.model("digits").predict(digit_centroids[0]).source == "cloud"


def test_no_local_model_and_no_cloud_raises_unavailable(
    make_device: DeviceFactory, digit_centroids: np.ndarray
) -> None:
    down = FaultTransport(fail=lambda r: httpx.ConnectError("down", request=r))
    device = make_device(transport=down)

    with pytest.raises(Unavailable, match="no local model"):
        device.model("digits").predict(digit_centroids[0])


def test_when_the_server_is_down_cascade_falls_back_to_the_local_answer(
    tmp_path: Path, demo_build: Path, near_tie: np.ndarray, clock: ManualClock
) -> None:
    with live_server(server_settings(tmp_path / "home")) as live:
        url = live.url
        app = ship(url, demo_build)
        device = Device(url, app.device_key, LINUX, tmp_path / "cache", sleep=clock.sleep)
        device.sync()
    with device:  # the server has stopped: connections are refused
        prediction = device.model("digits").predict(near_tie)

    assert prediction.source == "fallback" and prediction.label in {"1", "7"}
    assert prediction.confidence < 0.8
    assert len(clock.slept) == 2  # max_retries=2 backoffs, no real sleeping


def test_a_cloud_timeout_falls_back_to_the_local_answer(
    make_device: DeviceFactory, near_tie: np.ndarray
) -> None:
    slow = FaultTransport(
        fail=lambda r: httpx.ReadTimeout("slow", request=r) if is_predict(r) else None
    )
    device = make_device(transport=slow)
    device.sync()

    prediction = device.model("digits").predict(near_tie)

    assert prediction.source == "fallback"
    assert [r.extensions["timeout"]["read"] for r in slow.requests if is_predict(r)] == [1.5] * 3


def test_the_circuit_breaker_opens_then_half_opens_after_the_cool_down(
    make_device: DeviceFactory, near_tie: np.ndarray, clock: ManualClock
) -> None:
    cloud_up = {"value": False}

    def fail(request: httpx.Request) -> Exception | None:
        if is_predict(request) and not cloud_up["value"]:
            return httpx.ConnectError("cloud down", request=request)
        return None

    transport = FaultTransport(fail=fail)
    device = make_device(
        transport=transport, clock=clock, breaker_threshold=2, breaker_cooldown_s=30.0
    )
    device.sync()
    model = device.model("digits")

    def predict_calls() -> int:
        return len([r for r in transport.requests if is_predict(r)])

    sources = [model.predict(near_tie).source for _ in range(2)]
    assert sources == ["fallback", "fallback"] and predict_calls() == 6
    assert device.breaker.state == "open"

    assert model.predict(near_tie).source == "fallback"
    assert predict_calls() == 6  # open: the cloud is not called at all

    clock.now += 30.0
    cloud_up["value"] = True
    assert device.breaker.state == "half-open"
    assert model.predict(near_tie).source == "cloud"
    assert predict_calls() == 7 and device.breaker.state == "closed"


def test_a_failed_half_open_probe_opens_the_breaker_again(clock: ManualClock) -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=10.0, clock=clock)
    for _ in range(3):
        breaker.record_failure()
    clock.now += 10.0

    assert breaker.allow() and not breaker.allow()  # one probe only
    breaker.record_failure()

    assert breaker.state == "open" and not breaker.allow()
    clock.now += 10.0
    assert breaker.allow()


def test_apredict_escalates_without_blocking_the_event_loop(
    make_device: DeviceFactory, near_tie: np.ndarray, digit_centroids: np.ndarray
) -> None:
    device = make_device()
    device.sync()
    model = device.model("digits")

    async def both() -> tuple[str, str]:
        unsure, sure = await asyncio.gather(
            model.apredict(near_tie), model.apredict(digit_centroids[0])
        )
        await device.aclose()
        return unsure.source, sure.source

    assert asyncio.run(both()) == ("cloud", "local")


def test_a_new_package_is_picked_up_by_an_existing_model_handle(
    make_device: DeviceFactory, shipped: Shipped, demo_build: Path, digit_centroids: np.ndarray
) -> None:
    device = make_device()
    device.sync()
    model = device.model("digits")
    assert model.predict(digit_centroids[1]).version == 1

    shipped.push_again(demo_build)
    device.sync()

    assert model.predict(digit_centroids[1]).version == 2
