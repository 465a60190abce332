"""Consented sample capture on a real device SDK against a real server (SQLite)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from pocketml.device import Device

from .conftest import ANDROID, DeviceFactory, FaultTransport, Shipped

CAPTURE_ALL = {"enabled": True, "when": "all", "rate": 1.0, "wifi_only": False}
SAMPLE_BYTES = 64 * 4  # one digits input as float32


def _capturing(shipped: Shipped, **capture: Any) -> None:
    shipped.set_policy(
        shipped.version, hybrid={"mode": "local"}, capture={**CAPTURE_ALL, **capture}
    )


def _server_samples(shipped: Shipped) -> list[dict[str, Any]]:
    with shipped.admin() as admin:
        return list(admin.list_samples("digits", limit=1000)["items"])


def _predict(device: Device, inputs: np.ndarray) -> list[str]:
    model = device.model("digits")
    return [model.predict(x).prediction_id for x in inputs]


def _stored_blobs(cache: Path) -> list[bytes]:
    with sqlite3.connect(cache / "samples.db") as db:
        return [row[0] for row in db.execute("SELECT data FROM samples")]


def test_without_consent_nothing_is_captured_or_sent(
    shipped: Shipped, make_device: DeviceFactory, digit_centroids: np.ndarray
) -> None:
    _capturing(shipped)
    transport = FaultTransport()
    device = make_device(transport=transport)
    device.sync()

    _predict(device, digit_centroids)
    report = device.flush()

    assert device.consent is False
    assert device.capture.pending() == 0
    assert report.samples.skipped == "no consent"
    assert not [r for r in transport.requests if r.url.path == "/v1/samples"]
    assert _server_samples(shipped) == []


def test_with_consent_every_sample_arrives_once_with_the_device_class(
    shipped: Shipped, make_device: DeviceFactory, digit_centroids: np.ndarray
) -> None:
    _capturing(shipped)
    device = make_device(ANDROID)
    device.sync()
    device.set_consent(True)

    _predict(device, digit_centroids)
    first = device.flush().samples
    second = device.flush().samples

    assert (first.sent, first.pending) == (10, 0)
    assert second.sent == 0
    stored = _server_samples(shipped)
    assert len(stored) == 10
    assert {s["device_class"] for s in stored} == {"android-mid"}
    assert sorted(s["predicted"] for s in stored) == [str(i) for i in range(10)]


def test_a_policy_that_is_not_enabled_captures_nothing_even_with_consent(
    shipped: Shipped, make_device: DeviceFactory, digit_centroids: np.ndarray
) -> None:
    _capturing(shipped, enabled=False)
    device = make_device()
    device.sync()
    device.set_consent(True)

    _predict(device, digit_centroids)

    assert device.capture.pending() == 0


def test_the_daily_byte_budget_is_honoured_and_the_rest_counted(
    shipped: Shipped, make_device: DeviceFactory, digit_centroids: np.ndarray
) -> None:
    _capturing(shipped, max_bytes_per_day=3 * SAMPLE_BYTES)
    device = make_device()
    device.sync()
    device.set_consent(True)

    _predict(device, digit_centroids)

    assert device.capture.pending() == 3
    assert device.capture.counter("dropped_budget") == 7


def test_wifi_only_samples_wait_for_wifi(
    shipped: Shipped, make_device: DeviceFactory, digit_centroids: np.ndarray
) -> None:
    _capturing(shipped, wifi_only=True)
    network = {"wifi": False}
    device = make_device(on_wifi=lambda: network["wifi"])
    device.sync()
    device.set_consent(True)
    _predict(device, digit_centroids[:4])

    on_cellular = device.flush().samples
    network["wifi"] = True
    on_wifi = device.flush().samples

    assert (on_cellular.sent, on_cellular.pending, on_cellular.skipped) == (0, 4, "not on wifi")
    assert (on_wifi.sent, on_wifi.pending) == (4, 0)
    assert len(_server_samples(shipped)) == 4


def test_the_pii_hook_runs_before_anything_is_written(
    shipped: Shipped, make_device: DeviceFactory, digit_centroids: np.ndarray, tmp_path: Path
) -> None:
    _capturing(shipped)
    seen: list[tuple[str, tuple[int, ...]]] = []

    def redact(model: str, x: np.ndarray) -> np.ndarray | None:
        seen.append((model, x.shape))
        if float(x.sum()) < 0:  # never true here; a real app would test for PII
            return None
        return np.zeros_like(x)

    device = make_device(redact=redact)
    device.sync()
    device.set_consent(True)
    _predict(device, digit_centroids[:3])

    blobs = _stored_blobs(tmp_path / "cache")
    assert seen == [("digits", (1, 64))] * 3
    assert len(blobs) == 3 and all(blob == bytes(SAMPLE_BYTES) for blob in blobs)


def test_a_redactor_returning_none_drops_the_sample_unwritten(
    shipped: Shipped, make_device: DeviceFactory, digit_centroids: np.ndarray, tmp_path: Path
) -> None:
    _capturing(shipped)
    device = make_device()
    device.set_redactor(lambda model, x: None)
    device.sync()
    device.set_consent(True)

    _predict(device, digit_centroids[:3])

    assert _stored_blobs(tmp_path / "cache") == []
    assert device.capture.counter("dropped_redacted") == 3


def test_feedback_mode_keeps_only_labelled_predictions_with_their_label(
    shipped: Shipped, make_device: DeviceFactory, digit_centroids: np.ndarray
) -> None:
    _capturing(shipped, when="feedback")
    device = make_device()
    device.sync()
    device.set_consent(True)
    pids = _predict(device, digit_centroids[:3])
    held_before = (device.capture.held(), device.capture.pending())

    device.feedback(pids[1], label="5")
    device.flush()

    assert held_before == (3, 0)
    stored = _server_samples(shipped)
    assert [(s["prediction_id"], s["label"]) for s in stored] == [(pids[1], "5")]


def test_a_label_given_later_is_attached_to_an_unsent_sample(
    shipped: Shipped, make_device: DeviceFactory, digit_centroids: np.ndarray
) -> None:
    _capturing(shipped, when="all")
    device = make_device()
    device.sync()
    device.set_consent(True)
    pids = _predict(device, digit_centroids[:2])

    device.feedback(pids[0], label="8")
    device.flush()

    labels = {s["prediction_id"]: s["label"] for s in _server_samples(shipped)}
    assert labels == {pids[0]: "8", pids[1]: None}


def test_low_confidence_mode_skips_confident_answers(
    shipped: Shipped, make_device: DeviceFactory, digit_centroids: np.ndarray
) -> None:
    _capturing(shipped, when="low_confidence", low_confidence_below=0.5)
    device = make_device()
    device.sync()
    device.set_consent(True)

    _predict(device, digit_centroids)  # centroids: confident answers

    assert device.capture.pending() == 0


def test_samples_survive_a_killed_app_and_are_sent_after_restart(
    shipped: Shipped, make_device: DeviceFactory, digit_centroids: np.ndarray
) -> None:
    _capturing(shipped)
    first = make_device()
    first.sync()
    first.set_consent(True)
    _predict(first, digit_centroids[:3])
    first.close()  # the app dies without a flush

    again = make_device()
    report = again.flush().samples

    assert again.consent is True
    assert report.sent == 3
    assert len(_server_samples(shipped)) == 3


def test_turning_consent_off_deletes_the_queued_samples(
    shipped: Shipped, make_device: DeviceFactory, digit_centroids: np.ndarray
) -> None:
    _capturing(shipped)
    device = make_device()
    device.sync()
    device.set_consent(True)
    _predict(device, digit_centroids[:3])

    device.set_consent(False)
    _predict(device, digit_centroids[:3])
    device.flush()

    assert device.capture.pending() == 0
    assert _server_samples(shipped) == []


def _device_with_data(
    make_device: DeviceFactory, digit_centroids: np.ndarray, cache: str, **kwargs: Any
) -> Device:
    device = make_device(cache=cache, **kwargs)
    device.sync()
    device.set_consent(True)
    pids = _predict(device, digit_centroids[:3])
    device.feedback(pids[0], label="0")
    assert device.flush().error is None
    return device


def test_forget_me_deletes_this_devices_data_here_and_on_the_server_only(
    shipped: Shipped, make_device: DeviceFactory, digit_centroids: np.ndarray
) -> None:
    _capturing(shipped)
    mine = _device_with_data(make_device, digit_centroids, "mine")
    other = _device_with_data(make_device, digit_centroids, "other")
    _predict(mine, digit_centroids[:2])  # queued, not sent yet

    report = mine.forget_me()

    assert report.queued is False and report.samples == 2
    assert report.server is not None and report.server["samples"] == 3
    assert report.server["feedback"] == 1 and report.server["telemetry_chunks"] >= 1
    assert mine.capture.pending() == 0 and mine.queue.pending() == 0
    assert {s["device_id"] for s in _server_samples(shipped)} == {other.device_id}
    assert sum(group["count"] for group in shipped.metrics()) == 3  # the other's inferences


def test_forget_me_offline_is_retried_at_the_next_flush(
    shipped: Shipped, make_device: DeviceFactory, digit_centroids: np.ndarray
) -> None:
    _capturing(shipped)
    offline = {"on": False}

    def fail(request: httpx.Request) -> Exception | None:
        return httpx.ConnectError("offline (test fault)") if offline["on"] else None

    device = _device_with_data(
        make_device, digit_centroids, "cache", transport=FaultTransport(fail=fail)
    )
    offline["on"] = True
    report = device.forget_me()
    queued_then = len(_server_samples(shipped))

    offline["on"] = False
    device.flush()

    assert report.queued is True and report.server is None
    assert queued_then == 3
    assert _server_samples(shipped) == []


def test_the_capture_policy_reaches_the_device_through_the_manifest(
    shipped: Shipped, make_device: DeviceFactory
) -> None:
    _capturing(shipped, rate=0.25, retention_days=7)
    device = make_device()
    device.sync()

    entry = device.manifest_entry("digits")

    assert entry is not None and entry.capture is not None
    assert (entry.capture.enabled, entry.capture.rate, entry.capture.retention_days) == (
        True,
        0.25,
        7,
    )


@pytest.mark.parametrize("bad", [{"rate": 1.5}, {"when": "sometimes"}, {"retention_days": 0}])
def test_a_capture_policy_out_of_bounds_is_refused_with_422(shipped: Shipped, bad: dict) -> None:
    answer = httpx.put(
        f"{shipped.url}/v1/admin/models/digits/versions/{shipped.version}/policy",
        json={"capture": bad},
        headers={"Authorization": f"Bearer {shipped.admin_token}"},
    )

    assert answer.status_code == 422


def test_feedback_mode_holds_at_most_max_hold_predictions(
    shipped: Shipped, make_device: DeviceFactory, digit_centroids: np.ndarray
) -> None:
    _capturing(shipped, when="feedback", max_hold=2)
    device = make_device()
    device.sync()
    device.set_consent(True)
    pids = _predict(device, digit_centroids[:5])

    device.feedback(pids[0], label="0")  # evicted: nothing to write

    assert device.capture.held() == 2
    assert device.capture.counter("evicted") == 3
    assert device.capture.pending() == 0


def test_a_device_that_never_consented_creates_no_sample_file(
    shipped: Shipped, make_device: DeviceFactory, digit_centroids: np.ndarray, tmp_path: Path
) -> None:
    _capturing(shipped)
    device = make_device()
    device.sync()

    _predict(device, digit_centroids[:2])
    device.flush()

    assert not (tmp_path / "cache" / "samples.db").exists()


def test_retention_also_deletes_a_batch_that_could_not_be_sent(tmp_path: Path) -> None:
    # A batch claimed while the server was down stays claimed; past retention it must go
    # all the same (retention is a promise to the user, not to the upload).
    from pocketml.device._capture_queue import HeldSample, SampleQueue
    from pocketml.protocol import CapturePolicy

    queue = SampleQueue(tmp_path / "samples.db")
    policy = CapturePolicy(enabled=True, wifi_only=False, retention_days=1)
    held = HeldSample(
        "digits", 1, "p-1", np.zeros((1, 8, 8), np.float32), "3", 0.9, 1_000.0, policy
    )
    assert queue.write(held, "3")
    claimed = queue.claim(on_wifi=True)
    assert claimed is not None and queue.pending() == 1

    assert queue.expire(1_000.0 + 86_400 - 1) == 0
    assert queue.expire(1_000.0 + 86_400 + 1) == 1
    assert queue.pending() == 0
