"""The sample store end to end: a real server (SQLite and PostgreSQL), real HTTP."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from samples_kit import (
    DEVICE_A,
    DEVICE_B,
    batch,
    normalize,
    open_store,
    sample,
    shipped_app,
)

from pocketml.testing import LiveServer


def _post(server: LiveServer, key: str, body: dict) -> tuple[int, dict]:
    with server.http(key) as http:
        response = http.post("/v1/samples", json=body)
    return response.status_code, response.json()


def _listed(server: LiveServer, token: str) -> dict:
    with server.admin(token) as admin:
        return admin.list_samples("digits")


def test_a_batch_is_stored_once_and_a_resent_batch_only_counts_duplicates(
    live_server: LiveServer, tmp_path: Path
) -> None:
    app = shipped_app(live_server, "samples-once", tmp_path)
    body = batch([sample(np.zeros(64)), sample(np.ones(64))])

    first = _post(live_server, app.device_key, body)
    again = _post(live_server, app.device_key, body)

    assert first == (200, {"accepted": 2, "duplicates": 0})
    assert again == (200, {"accepted": 0, "duplicates": 2})
    assert len(_listed(live_server, app.admin_token)["items"]) == 2


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            {"values": 63},
            r"samples\[1\]\.input\.shape: model 'digits' v1 expects \[64\]",
        ),
        ({"input": {"dtype": "float64"}}, r"samples\[1\]\.input\.dtype must be float32"),
        ({"label": "cat"}, r"samples\[1\]\.label: model 'digits' v1 has no label 'cat'"),
        ({"model": "faces"}, r"samples\[1\]\.model: this app has no model 'faces'"),
        ({"version": 9}, r"samples\[1\]\.version: model 'digits' has no version 9"),
        ({"nan": True}, r"samples\[1\]\.input\.data holds NaN"),
    ],
)
def test_a_bad_sample_rejects_the_whole_batch_with_422_naming_it_and_stores_nothing(
    live_server: LiveServer, tmp_path: Path, change: dict, named: str
) -> None:
    app = shipped_app(live_server, f"samples-bad-{abs(hash(named)) % 10**6}", tmp_path)
    good = sample(np.zeros(64))
    values = np.zeros(change.get("values", 64))
    bad = sample(np.full(64, np.nan) if change.get("nan") else values)
    for key, value in change.items():
        if key == "input":
            bad["input"].update(value)
        elif key not in ("nan", "values"):
            bad[key] = value

    status, answer = _post(live_server, app.device_key, batch([good, bad]))

    assert status == 422
    import re

    assert re.search(named, answer["error"]["message"]), answer
    assert _listed(live_server, app.admin_token)["items"] == []


def test_labelled_returns_raw_units_within_1e_5_and_joins_feedback_by_prediction_id(
    live_server: LiveServer, tmp_path: Path
) -> None:
    app = shipped_app(live_server, "samples-labelled", tmp_path)
    rng = np.random.default_rng(7)
    raw = rng.uniform(0, 16, size=(3, 64)).astype(np.float32)
    body = batch(
        [
            sample(normalize(raw[0]), label="4"),
            sample(normalize(raw[1]), prediction_id="p-1"),  # labelled by feedback below
            sample(normalize(raw[2]), prediction_id="p-2"),  # never labelled
        ]
    )
    assert _post(live_server, app.device_key, body)[0] == 200
    with live_server.http(app.device_key) as http:
        answer = http.post(
            "/v1/feedback",
            json={
                "prediction_id": "p-1",
                "device_id": DEVICE_A,
                "model": "digits",
                "label": "9",
                "ts": time.time(),
            },
        )
        assert answer.status_code == 202
    store, registry = open_store(live_server)
    try:
        got = store.labelled(app.app_id, "digits")
        count = store.count_labelled(app.app_id, "digits")
    finally:
        registry.close()

    order = np.argsort([{"4": 0, "9": 1}[got.class_names[y]] for y in got.labels])
    assert [got.class_names[y] for y in got.labels[order]] == ["4", "9"]
    np.testing.assert_allclose(got.features[order], raw[:2], atol=1e-5)
    assert count == 2
    assert set(got.device_id) == {DEVICE_A}


def test_forget_deletes_one_device_only_and_is_audited(
    live_server: LiveServer, tmp_path: Path
) -> None:
    app = shipped_app(live_server, "samples-forget", tmp_path)
    for device in (DEVICE_A, DEVICE_B):
        body = batch([sample(np.zeros(64), prediction_id="p-1")], device_id=device)
        assert _post(live_server, app.device_key, body)[0] == 200
        with live_server.http(app.device_key) as http:
            feedback = {"prediction_id": "p-1", "device_id": device, "model": "digits"}
            http.post("/v1/feedback", json={**feedback, "label": "1", "ts": time.time()})
            event = {
                "type": "inference",
                "ts": time.time(),
                "model": "digits",
                "version": 1,
                "variant": "onnx-fp32",
                "source": "local",
                "latency_ms": 1.0,
                "confidence": 0.9,
                "label": "1",
                "prediction_id": "p-1",
            }
            telemetry = {"batch_id": f"b-{device}", "device_id": device, "events": [event]}
            assert http.post("/v1/telemetry", json=telemetry).status_code == 202

    with live_server.admin(app.admin_token) as admin:
        report = admin.forget_device(DEVICE_A)
        left = admin.list_samples("digits")
        metrics = admin.model_metrics("digits")
    store, registry = open_store(live_server)
    try:
        audit = store.audit(app.app_id)
        labelled = store.labelled(app.app_id, "digits")
    finally:
        registry.close()

    assert report["samples"] == 1 and report["feedback"] == 1
    assert report["telemetry_chunks"] == 1 and report["telemetry_batches"] == 1
    assert {item["device_id"] for item in left["items"]} == {DEVICE_B}
    assert sum(group["count"] for group in metrics["groups"]) == 1
    assert list(labelled.device_id) == [DEVICE_B]
    assert audit[0]["action"] == "forget_device" and audit[0]["device_id"] == DEVICE_A
    assert audit[0]["actor"] == f"admin:{app.app_id}" and audit[0]["id"] == report["audit_id"]


def test_the_device_forget_route_forgets_the_named_device(
    live_server: LiveServer, tmp_path: Path
) -> None:
    app = shipped_app(live_server, "samples-self-forget", tmp_path)
    assert _post(live_server, app.device_key, batch([sample(np.zeros(64))]))[0] == 200

    with live_server.http(app.device_key) as http:
        answer = http.delete("/v1/device/data", params={"device_id": DEVICE_A})

    assert answer.status_code == 200 and answer.json()["samples"] == 1
    assert _listed(live_server, app.admin_token)["items"] == []


def test_a_samples_body_over_the_limit_is_413_before_authentication(
    live_server: LiveServer,
) -> None:
    limit = live_server.settings.server.limits.max_samples_body_kb * 1024
    with live_server.http("not-a-key") as http:
        answer = http.post(
            "/v1/samples",
            content=b"x" * (limit + 1),
            headers={"Content-Type": "application/json"},
        )

    assert answer.status_code == 413
    assert "MAX_SAMPLES_BODY_KB" in answer.json()["error"]["message"]


def test_the_list_counts_labelled_and_unlabelled_per_device_class(
    live_server: LiveServer, tmp_path: Path
) -> None:
    app = shipped_app(live_server, "samples-list", tmp_path)
    body = batch(
        [
            sample(np.zeros(64), label="1", device_class="android-mid"),
            sample(np.zeros(64), device_class="android-mid"),
            sample(np.zeros(64), label="2", device_class="ios-high"),
        ]
    )
    assert _post(live_server, app.device_key, body)[0] == 200

    with live_server.admin(app.admin_token) as admin:
        first = admin.list_samples("digits", limit=2)
        rest = admin.list_samples("digits", after=first["next_after"], limit=2)

    assert first["counts"] == {
        "android-mid": {"labelled": 1, "unlabelled": 1},
        "ios-high": {"labelled": 1, "unlabelled": 0},
    }
    assert len(first["items"]) == 2 and len(rest["items"]) == 1
    assert rest["next_after"] is None


def test_purge_expired_deletes_samples_received_longer_ago_than_the_retention(
    live_server: LiveServer, tmp_path: Path
) -> None:
    app = shipped_app(live_server, "samples-purge", tmp_path)
    assert _post(live_server, app.device_key, batch([sample(np.zeros(64), label="1")]))[0] == 200
    now = time.time()
    store, registry = open_store(live_server)
    try:
        kept = store.purge_expired(now + 29 * 86_400)  # default retention: 30 days
        purged = store.purge_expired(now + 31 * 86_400)
        left = store.labelled(app.app_id, "digits")
        audit = store.audit(app.app_id)
    finally:
        registry.close()

    assert (kept, purged, len(left)) == (0, 1, 0)
    assert audit[0]["action"] == "purge" and audit[0]["detail"]["samples"] == 1


def test_another_apps_device_key_cannot_forget_or_list_this_apps_samples(
    live_server: LiveServer, tmp_path: Path
) -> None:
    mine = shipped_app(live_server, "samples-mine", tmp_path / "a")
    other = shipped_app(live_server, "samples-other", tmp_path / "b")
    assert _post(live_server, mine.device_key, batch([sample(np.zeros(64))]))[0] == 200

    with live_server.http(other.device_key) as http:
        forgot = http.delete("/v1/device/data", params={"device_id": DEVICE_A})
        listed = http.get("/v1/admin/models/digits/samples")
        admin_forget = http.delete(f"/v1/admin/devices/{DEVICE_A}/data")

    assert forgot.status_code == 200 and forgot.json()["samples"] == 0  # its own app: nothing
    assert (listed.status_code, admin_forget.status_code) == (403, 403)
    assert len(_listed(live_server, mine.admin_token)["items"]) == 1
