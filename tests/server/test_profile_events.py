"""Profile events over real HTTP: checked against the version's profile, merged once, budgeted.

Every test runs on SQLite and PostgreSQL, in an app of its own (sketches and the privacy
ledger are kept per app), so the module shares one server per database
(``module_live_server``, tests/shared_server.py) instead of starting one per test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from pocketml.db import create_engine
from pocketml.monitor import read_ledger, read_sketches, window_of
from pocketml.protocol import encode_sketch
from pocketml.sketch import ReferenceProfile, Sketch, privatize
from pocketml.testing import LiveServer, model_variant, write_profiled_build
from shared_server import unique_app_name

MODEL = "digits"


@pytest.fixture
def live_server(module_live_server: LiveServer) -> LiveServer:
    """This module's shared server (on SQLite, then PostgreSQL)."""
    return module_live_server


@pytest.fixture
def pushed(live_server: LiveServer, tmp_path: Path) -> tuple[Any, ReferenceProfile]:
    """An app with ``digits`` v1 (with a profile) and v2 (without one)."""
    keys = live_server.create_app(unique_app_name("profiles"))
    out, profile = write_profiled_build(tmp_path / "build", seed=3)
    with live_server.admin(keys.admin_token) as client:
        client.push_build(out, model=MODEL, stage="production")
    plain = model_variant(tmp_path, "plain-onnx", fmt="onnx", seed=9)
    live_server.push(keys, MODEL, [plain], stage="candidate")
    return keys, profile


@pytest.fixture
def engine(live_server: LiveServer) -> Iterator[sa.Engine]:
    opened = create_engine(live_server.settings.resolved_database_url)
    yield opened
    opened.dispose()


def _sketch(profile: ReferenceProfile, rows: int, seed: int) -> Sketch:
    rng = np.random.default_rng(seed)
    columns = {f"x{i}": rng.uniform(0, 16, size=rows) for i in range(64)}
    return profile.sketch(columns, rng.integers(0, 10, size=rows), rng.uniform(0.1, 1.0, size=rows))


def _event(sketch: Sketch, ts: float, version: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "type": "profile",
        "ts": ts,
        "model": MODEL,
        "version": version,
        "sketch": encode_sketch(sketch.counts),
        "n": sketch.n,
        **extra,
    }


def _inference(ts: float) -> dict[str, Any]:
    return {
        "type": "inference",
        "ts": ts,
        "model": MODEL,
        "version": 1,
        "variant": "m-onnx-fp32",
        "source": "local",
        "latency_ms": 1.0,
        "confidence": 0.9,
        "label": "3",
        "prediction_id": "p-1",
    }


def _send(live: LiveServer, keys: Any, events: list[dict[str, Any]], batch: str) -> Any:
    body = {
        "batch_id": batch,
        "device_id": "device-0001",
        "device": {"platform": "android", "device_class": "android-mid", "app_version": "2.1"},
        "events": events,
    }
    with live.http(keys.device_key) as http:
        return http.post("/v1/telemetry", json=body)


def _set_budget(live: LiveServer, keys: Any, epsilon: float | None) -> None:
    monitor = {} if epsilon is None else {"epsilon_per_day": epsilon}
    with live.http(keys.admin_token) as http:
        answer = http.put(f"/v1/admin/models/{MODEL}/versions/1/policy", json={"monitor": monitor})
    assert answer.status_code == 200, answer.text
    assert answer.json()["monitor"]["epsilon_per_day"] == epsilon


def _stored(engine: sa.Engine, app_id: str) -> list[Any]:
    return read_sketches(engine, app_id, MODEL, since=0, until=2**40)


def test_an_exact_profile_event_is_merged_once_under_its_device_group_and_hour(
    live_server: LiveServer, pushed: tuple[Any, ReferenceProfile], engine: sa.Engine
) -> None:
    keys, profile = pushed
    now = time.time()
    first, second = _sketch(profile, 40, seed=1), _sketch(profile, 25, seed=2)
    events = [_event(first, now - 5), _inference(now - 4), _event(second, now - 3)]

    answers = [_send(live_server, keys, events, "batch-profile-1") for _ in range(2)]

    assert [a.status_code for a in answers] == [202, 200]
    assert answers[0].json()["accepted"] == 3 and answers[1].json()["duplicate"] is True
    (row,) = _stored(engine, keys.app_id)
    assert (row.key.device_class, row.key.app_version) == ("android-mid", "2.1")
    assert row.key.window_start == window_of(now - 5)
    assert (row.n, row.events, row.noise_variance) == (65, 2, 0.0)
    assert np.array_equal(row.counts, first.merge(second).counts)


def test_profile_events_are_not_rows_of_the_event_table(
    live_server: LiveServer, pushed: tuple[Any, ReferenceProfile]
) -> None:
    keys, profile = pushed
    now = time.time()
    answer = _send(live_server, keys, [_event(_sketch(profile, 10, 1), now)], "batch-only-prof")
    assert answer.status_code == 202
    with live_server.http(keys.admin_token) as http:
        metrics = http.get(f"/v1/admin/models/{MODEL}/metrics").json()
    assert all(group["count"] == 0 for group in metrics.get("groups", []))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"version": 7}, "events[1].version"),  # no such version
        ({"version": 2}, "events[1].version"),  # a version without a profile
        ({"version": None}, "events[1].version"),
        ({"sketch": encode_sketch([1] * 5)}, "events[1].sketch"),  # wrong bin count
        ({"sketch": "BgAEAQ=="}, "events[1].sketch"),  # padding / garbage
        ({"n": 41}, "events[1].sketch"),  # blocks no longer sum to n
        ({"n": -1}, "events[1].n"),
        ({"n": 10**9 + 1}, "events[1].n"),  # over the limit: the schema refuses it
        ({"epsilon": 0.0}, "events[1].epsilon"),
    ],
)
def test_a_bad_profile_event_is_refused_naming_the_field_and_nothing_is_stored(
    live_server: LiveServer,
    pushed: tuple[Any, ReferenceProfile],
    engine: sa.Engine,
    change: dict[str, Any],
    field: str,
) -> None:
    keys, profile = pushed
    now = time.time()
    bad = {**_event(_sketch(profile, 40, 1), now), **change}
    events = [_inference(now), bad]

    answer = _send(live_server, keys, events, "batch-bad-profile")

    assert answer.status_code == 422, answer.text
    assert field in answer.json()["error"]["message"]
    assert _stored(engine, keys.app_id) == []
    fixed = _send(live_server, keys, [_inference(now)], "batch-bad-profile")
    assert fixed.status_code == 202  # the refused batch left no batch id behind


def test_an_exact_sketch_with_a_negative_count_is_refused(
    live_server: LiveServer, pushed: tuple[Any, ReferenceProfile], engine: sa.Engine
) -> None:
    keys, profile = pushed
    sketch = _sketch(profile, 40, 1)
    counts = sketch.counts.copy()
    counts[0] = -1
    event = {**_event(sketch, time.time()), "sketch": encode_sketch(counts)}

    answer = _send(live_server, keys, [event], "batch-negative")

    assert answer.status_code == 422
    assert "events[0].sketch" in answer.json()["error"]["message"]
    assert _stored(engine, keys.app_id) == []


def test_noisy_events_within_the_budget_are_merged_and_charged_to_the_device_day(
    live_server: LiveServer, pushed: tuple[Any, ReferenceProfile], engine: sa.Engine
) -> None:
    keys, profile = pushed
    _set_budget(live_server, keys, 1.0)
    rng = np.random.default_rng(5)
    now = time.time()
    noisy = [privatize(_sketch(profile, 30, s), 0.25, rng) for s in range(4)]
    events = [_event(sk, now - 10 + i, epsilon=0.25) for i, (sk, _) in enumerate(noisy)]

    answer = _send(live_server, keys, events, "batch-noisy-ok")

    assert answer.status_code == 202, answer.text
    (row,) = _stored(engine, keys.app_id)
    assert row.events == 4
    assert row.noise_variance == pytest.approx(4 * noisy[0][1])
    (day,) = read_ledger(engine, keys.app_id, "device-0001")
    assert day.events == 4 and day.epsilon <= 1.0 + 1e-3


def test_a_noisy_event_over_the_daily_budget_is_refused_naming_its_epsilon(
    live_server: LiveServer, pushed: tuple[Any, ReferenceProfile], engine: sa.Engine
) -> None:
    keys, profile = pushed
    _set_budget(live_server, keys, 1.0)
    rng = np.random.default_rng(6)
    now = time.time()
    spent = [_event(privatize(_sketch(profile, 30, 1), 0.6, rng)[0], now - 9, epsilon=0.6)]
    assert _send(live_server, keys, spent, "batch-spend-1").status_code == 202
    over = _event(privatize(_sketch(profile, 30, 2), 0.6, rng)[0], now - 8, epsilon=0.6)

    answer = _send(live_server, keys, [_inference(now), over], "batch-spend-2")

    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "privacy_budget_exceeded"
    assert "events[1].epsilon" in error["message"]
    (row,) = _stored(engine, keys.app_id)
    assert row.events == 1  # the refused batch added nothing
    (day,) = read_ledger(engine, keys.app_id, "device-0001")
    assert day.events == 1


def test_exact_counts_are_refused_when_the_policy_promises_noise(
    live_server: LiveServer, pushed: tuple[Any, ReferenceProfile]
) -> None:
    keys, profile = pushed
    _set_budget(live_server, keys, 2.0)

    answer = _send(live_server, keys, [_event(_sketch(profile, 5, 1), time.time())], "b-exact-dp")

    assert answer.status_code == 422
    assert "events[0].epsilon" in answer.json()["error"]["message"]


def test_the_manifest_announces_the_monitor_policy(
    live_server: LiveServer, pushed: tuple[Any, ReferenceProfile]
) -> None:
    keys, _ = pushed
    _set_budget(live_server, keys, 0.5)
    body = {
        "device_id": "device-0001",
        "platform": "android",
        "os_version": "14",
        "app_version": "2.1",
        "formats": ["onnx"],
    }
    with live_server.http(keys.device_key) as http:
        answer = http.post("/v1/checkin", json=body)
    assert answer.status_code == 200, answer.text
    (entry,) = [m for m in answer.json()["models"] if m["name"] == MODEL]
    assert entry["monitor"] == {
        "enabled": True,
        "window_s": 3600,
        "max_rows": 10_000,
        "epsilon_per_day": 0.5,
    }
