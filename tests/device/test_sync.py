"""Device.sync() against the real server: download, verify, cache, resume, refuse, block."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np

from pocketml.device import DeviceFacts, DeviceState, DownloadEvent
from pocketml.protect import SigningKey

from .conftest import (
    ANDROID,
    LINUX,
    CutStream,
    DeviceFactory,
    FaultTransport,
    Shipped,
    is_package,
)


def test_sync_downloads_verifies_and_activates_the_variant_for_the_device(
    make_device: DeviceFactory, digit_centroids: np.ndarray, tmp_path: Path
) -> None:
    events: list[DownloadEvent] = []
    device = make_device(ANDROID, on_download=events.append)

    report = device.sync()

    entry = report.models["digits"]
    assert entry.status == "updated" and entry.variant == "nc-small-tflite-fp32"
    assert entry.bytes_downloaded > 0 and not entry.resumed
    assert events[0].kind == "started" and events[-1].kind == "done"
    assert events[-1].bytes == events[-1].total
    active = json.loads((tmp_path / "cache" / "active.json").read_text())
    assert active["digits"]["format"] == "tflite"
    prediction = device.model("digits").predict(digit_centroids[7])
    assert (prediction.label, prediction.source, prediction.version) == ("7", "local", 1)


def test_an_unchanged_manifest_costs_a_304_and_no_download(make_device: DeviceFactory) -> None:
    transport = FaultTransport()
    device = make_device(transport=transport)
    device.sync()
    before = len(transport.requests)

    report = device.sync()

    assert report.not_modified
    assert report.models["digits"].status == "unchanged"
    assert [r.url.path for r in transport.requests[before:]] == ["/v1/checkin"]


def test_an_app_upgrade_on_the_same_cache_does_not_download_again(
    make_device: DeviceFactory, digit_centroids: np.ndarray
) -> None:
    make_device().sync()
    transport = FaultTransport()
    upgraded = DeviceFacts(
        platform="linux",
        os_version="6.1",
        app_version="1.1.0",
        formats=("onnx",),
        device_class="edge-linux",
    )
    device = make_device(upgraded, transport=transport)

    report = device.sync()

    assert report.models["digits"].status in {"current", "unchanged"}
    assert not [r for r in transport.requests if is_package(r)]
    assert device.model("digits").predict(digit_centroids[2]).label == "2"


def test_a_package_already_in_the_cache_is_activated_without_downloading(
    make_device: DeviceFactory, tmp_path: Path
) -> None:
    make_device().sync()
    (tmp_path / "cache" / "active.json").unlink()  # e.g. a rollback to a cached package
    transport = FaultTransport()

    report = make_device(transport=transport).sync()

    assert report.models["digits"].status == "updated"
    assert report.models["digits"].from_cache
    assert not [r for r in transport.requests if is_package(r)]


def test_a_cut_download_resumes_with_a_range_request(make_device: DeviceFactory) -> None:
    cuts: list[int] = []

    def cut_once(request: httpx.Request, body: bytes) -> httpx.SyncByteStream | bytes:
        if is_package(request) and not cuts:
            cuts.append(len(body) // 2)
            return CutStream(body, len(body) // 2, request)
        return body

    transport = FaultTransport(mangle=cut_once)
    device = make_device(transport=transport)

    entry = device.sync().models["digits"]

    assert entry.status == "updated" and entry.resumed
    ranges = [r.headers.get("range") for r in transport.requests if is_package(r)]
    assert ranges == [None, f"bytes={cuts[0]}-"]


def test_a_package_with_one_flipped_byte_is_refused_and_the_old_model_keeps_serving(
    make_device: DeviceFactory, shipped: Shipped, demo_build: Path, digit_centroids: np.ndarray
) -> None:
    device = make_device()
    device.sync()
    v2 = shipped.push_again(demo_build)

    def flip(request: httpx.Request, body: bytes) -> bytes:
        if not is_package(request):
            return body
        middle = len(body) // 2
        return body[:middle] + bytes([body[middle] ^ 0x01]) + body[middle + 1 :]

    bad = make_device(transport=FaultTransport(mangle=flip))
    entry = bad.sync().models["digits"]

    assert v2 == 2
    assert (entry.status, entry.reason, entry.version) == ("failed", "verify", 2)
    prediction = bad.model("digits").predict(digit_centroids[5])
    assert (prediction.version, prediction.label, prediction.source) == (1, "5", "local")
    errors = [e for e in bad.queue.claim_batch(500).events if e["type"] == "error"]
    assert errors and errors[0]["stage"] == "verify"
    assert errors[0]["code"] == entry.error.code  # the cause, countable without the message


def test_a_package_signed_by_an_unpinned_key_is_refused(make_device: DeviceFactory) -> None:
    stranger = SigningKey.generate()
    device = make_device(trusted_keys={stranger.key_id: stranger.public_bytes()})

    entry = device.sync().models["digits"]

    assert (entry.status, entry.reason) == ("failed", "verify")
    assert device.model("digits").version is None


def test_not_enough_free_disk_fails_before_downloading(make_device: DeviceFactory) -> None:
    transport = FaultTransport()
    device = make_device(transport=transport, state=DeviceState(free_disk_bytes=lambda: 1000))

    entry = device.sync().models["digits"]

    assert entry.summary == "failed: disk"
    assert not [r for r in transport.requests if is_package(r)]


def test_a_wifi_only_policy_blocks_downloads_on_cellular(
    make_device: DeviceFactory, shipped: Shipped
) -> None:
    shipped.set_policy(shipped.version, download={"wifi_only": True})
    network = {"type": "cellular"}
    device = make_device(state=DeviceState(network_type=lambda: network["type"]))  # type: ignore[arg-type,return-value]

    blocked = device.sync().models["digits"]
    network["type"] = "wifi"
    retried = device.sync().models["digits"]

    assert (blocked.status, blocked.reason) == ("blocked", "wifi_only")
    assert retried.status == "updated"


def test_a_cellular_size_cap_blocks_a_larger_package(
    make_device: DeviceFactory, shipped: Shipped
) -> None:
    shipped.set_policy(shipped.version, download={"max_cellular_bytes": 100})
    device = make_device(state=DeviceState(network_type=lambda: "cellular"))

    assert device.sync().models["digits"].summary == "blocked: max_cellular_bytes"


def test_the_first_check_in_pins_the_public_keys(
    make_device: DeviceFactory, shipped: Shipped, tmp_path: Path
) -> None:
    make_device(LINUX).sync()

    pinned = json.loads((tmp_path / "cache" / "trust.json").read_text())["keys"]

    assert set(pinned) == set(shipped.public_keys)
