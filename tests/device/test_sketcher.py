"""The device's sketches: exact bins, windows, persistence, the DP budget, never a failed predict.

The unit tests drive a ``Sketcher`` on a real SQLite queue with a hand-set wall clock; the
end-to-end tests run a real ``Device`` against a real server (SQLite and PostgreSQL) and
read what the server merged.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pocketml.db import create_engine
from pocketml.device import Device, DeviceFacts
from pocketml.device._queue import TelemetryQueue
from pocketml.device._sketcher import Sketcher
from pocketml.monitor import read_ledger, read_sketches
from pocketml.protocol import MonitorPolicy, decode_sketch
from pocketml.sketch import ReferenceProfile, build_input_profile, build_profile
from pocketml.testing import LiveServer, write_profiled_build

HOUR = 3600
T0 = 1_795_240_000 - 1_795_240_000 % HOUR


class Wall:
    """A hand-set unix clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    rng = np.random.default_rng(1)
    return build_input_profile(
        rng.uniform(0, 16, size=(400, 64)), "NC", rng.dirichlet(np.ones(10), size=400)
    )


class Harness:
    """A Sketcher on a real queue, its emitted events and errors."""

    def __init__(self, path: Path, wall: Wall, seed: int = 0) -> None:
        self.events: list[dict[str, Any]] = []
        self.errors: list[tuple[Any, ...]] = []
        self.queue = TelemetryQueue(path)
        self.sketcher = Sketcher(
            self.queue,
            self.events.append,
            lambda *args: self.errors.append(args),
            rng=np.random.default_rng(seed),
            wall=wall,
        )

    def restart(self, path: Path, wall: Wall) -> Harness:
        self.queue.append([], [], self.sketcher.changed_windows())  # what persist() does
        self.queue.close()
        return Harness(path, wall)


def _rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 18, size=(n, 64))  # beyond the reference's range on both sides
    x[0, 3], x[-1, 5] = np.inf, -np.inf
    return x, rng.integers(0, 10, size=n), rng.uniform(0, 1, size=n)


def _columns(x: np.ndarray) -> dict[str, np.ndarray]:
    return {f"x{i}": x[:, i] for i in range(x.shape[1])}


def test_the_vectorised_binner_counts_exactly_what_profile_sketch_counts(
    profile: ReferenceProfile, tmp_path: Path
) -> None:
    h = Harness(tmp_path / "q.db", Wall(T0 + 10))
    tracker = h.sketcher.tracker("m", 1, profile, "NC", MonitorPolicy())
    assert tracker is not None and profile.projection is not None  # projections binned too
    x, classes, confidence = _rows(300, seed=2)

    for row, cls, conf in zip(x, classes, confidence, strict=True):
        tracker.add(row, int(cls), float(conf), T0 + 20)
    h.sketcher.close_windows(early=True)

    (event,) = h.events
    expected = profile.sketch(_columns(x), classes, confidence)
    assert event["n"] == 300 and event["ts"] == T0 and "epsilon" not in event
    assert decode_sketch(event["sketch"], profile.layout.total) == expected.counts.tolist()


def test_table_columns_are_binned_in_order_whatever_the_dataset_named_them(
    tmp_path: Path,
) -> None:
    # CSV datasets name their columns; the input tensor holds them in that order.
    x, classes, confidence = _rows(300, seed=5)
    names = [f"feature_{i:02d}" for i in range(x.shape[1])]
    reference = np.random.default_rng(6).normal(8.0, 4.0, size=(1000, x.shape[1]))
    named = build_profile(
        dict(zip(names, reference.T, strict=True)),
        predicted_class=np.random.default_rng(7).integers(0, 10, size=1000),
        confidence=np.random.default_rng(8).uniform(0, 1, size=1000),
        num_classes=10,
    )
    h = Harness(tmp_path / "q.db", Wall(T0 + 10))
    tracker = h.sketcher.tracker("m", 1, named, "NC", MonitorPolicy())
    assert tracker is not None

    for row, cls, conf in zip(x, classes, confidence, strict=True):
        tracker.add(row, int(cls), float(conf), T0 + 20)
    h.sketcher.close_windows(early=True)

    (event,) = h.events
    assert event["type"] == "profile"
    expected = named.sketch(dict(zip(names, x.T, strict=True)), classes, confidence)
    assert decode_sketch(event["sketch"], named.layout.total) == expected.counts.tolist()


def test_image_inputs_are_binned_on_their_raw_features(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 255, size=(200, 3, 6, 6))
    image_profile = build_input_profile(images, "NCHW", rng.dirichlet(np.ones(4), size=200))
    h = Harness(tmp_path / "q.db", Wall(T0))
    tracker = h.sketcher.tracker("img", 2, image_profile, "NCHW", MonitorPolicy())
    assert tracker is not None
    probe = rng.uniform(0, 255, size=(5, 3, 6, 6))

    for image in probe:  # one sample (C, H, W), as an app passes it
        tracker.add(image, 1, 0.5, T0 + 1)
    h.sketcher.close_windows(early=True)

    from pocketml.sketch import input_features

    expected = image_profile.sketch(input_features(probe, "NCHW"), np.ones(5, int), [0.5] * 5)
    assert decode_sketch(h.events[0]["sketch"], image_profile.layout.total) == (
        expected.counts.tolist()
    )


def test_a_window_closes_when_an_input_arrives_after_its_end(
    profile: ReferenceProfile, tmp_path: Path
) -> None:
    h = Harness(tmp_path / "q.db", Wall(T0 + 5))
    tracker = h.sketcher.tracker("m", 1, profile, "NC", MonitorPolicy(window_s=600))
    assert tracker is not None
    x, classes, confidence = _rows(3, seed=4)

    tracker.add(x[0], int(classes[0]), float(confidence[0]), T0 + 5)
    tracker.add(x[1], int(classes[1]), float(confidence[1]), T0 + 599)
    assert h.events == []
    tracker.add(x[2], int(classes[2]), float(confidence[2]), T0 + 600)

    assert [(e["ts"], e["n"]) for e in h.events] == [(T0, 2)]
    h.sketcher.close_windows(early=True)
    assert [(e["ts"], e["n"]) for e in h.events] == [(T0, 2), (T0 + 600, 1)]


def test_a_full_window_is_sent_at_max_rows(profile: ReferenceProfile, tmp_path: Path) -> None:
    h = Harness(tmp_path / "q.db", Wall(T0))
    tracker = h.sketcher.tracker("m", 1, profile, "NC", MonitorPolicy(max_rows=4))
    assert tracker is not None
    x, classes, confidence = _rows(10, seed=5)

    for row, cls, conf in zip(x, classes, confidence, strict=True):
        tracker.add(row, int(cls), float(conf), T0 + 1)

    assert [e["n"] for e in h.events] == [4, 4]


def test_an_open_window_survives_an_app_kill(profile: ReferenceProfile, tmp_path: Path) -> None:
    wall = Wall(T0 + 1)
    h = Harness(tmp_path / "q.db", wall)
    tracker = h.sketcher.tracker("m", 1, profile, "NC", MonitorPolicy())
    assert tracker is not None
    x, classes, confidence = _rows(20, seed=6)
    for row, cls, conf in zip(x[:12], classes[:12], confidence[:12], strict=True):
        tracker.add(row, int(cls), float(conf), T0 + 2)

    again = h.restart(tmp_path / "q.db", wall)
    resumed = again.sketcher.tracker("m", 1, profile, "NC", MonitorPolicy())
    assert resumed is not None
    for row, cls, conf in zip(x[12:], classes[12:], confidence[12:], strict=True):
        resumed.add(row, int(cls), float(conf), T0 + 3)
    again.sketcher.close_windows(early=True)

    (event,) = again.events
    assert event["n"] == 20
    expected = profile.sketch(_columns(x), classes, confidence)
    assert decode_sketch(event["sketch"], profile.layout.total) == expected.counts.tolist()


def test_a_window_left_open_by_a_killed_app_is_sent_once_its_hour_is_over(
    profile: ReferenceProfile, tmp_path: Path
) -> None:
    wall = Wall(T0 + 1)
    h = Harness(tmp_path / "q.db", wall)
    tracker = h.sketcher.tracker("m", 1, profile, "NC", MonitorPolicy())
    assert tracker is not None
    x, classes, confidence = _rows(3, seed=7)
    for row, cls, conf in zip(x, classes, confidence, strict=True):
        tracker.add(row, int(cls), float(conf), T0 + 2)

    again = h.restart(tmp_path / "q.db", Wall(T0 + 2 * HOUR))
    assert again.sketcher.close_windows(early=False) == 1  # no tracker needed: the row has it
    assert again.events[0]["n"] == 3 and again.events[0]["ts"] == T0


def test_with_local_dp_each_window_spends_its_share_and_the_day_is_never_overspent(
    profile: ReferenceProfile, tmp_path: Path
) -> None:
    wall = Wall(T0)
    h = Harness(tmp_path / "q.db", wall)
    policy = MonitorPolicy(window_s=6 * HOUR, epsilon_per_day=1.0)  # 4 windows a day
    tracker = h.sketcher.tracker("m", 1, profile, "NC", policy)
    assert tracker is not None
    x, classes, confidence = _rows(2, seed=8)
    day_start = T0 - T0 % 86_400

    for window in range(5):  # the 5th falls on the next UTC day
        tracker.add(x[1], int(classes[1]), float(confidence[1]), day_start + window * 6 * HOUR)
    assert h.sketcher.close_windows(early=True) == 0  # early closes would spend: none

    assert [e["epsilon"] for e in h.events] == [0.25] * 4
    assert h.queue.spent_privacy(day_start // 86_400) == pytest.approx(1.0)
    noisy = [decode_sketch(e["sketch"], profile.layout.total) for e in h.events]
    assert any(min(counts) < 0 for counts in noisy)  # sent as drawn, never clipped


def test_a_window_that_does_not_fit_the_days_budget_is_withheld(
    profile: ReferenceProfile, tmp_path: Path
) -> None:
    h = Harness(tmp_path / "q.db", Wall(T0))
    day = T0 // 86_400
    assert h.queue.spend_privacy(day, 0.99, 1.0)  # an earlier run spent the day
    tracker = h.sketcher.tracker("m", 1, profile, "NC", MonitorPolicy(epsilon_per_day=1.0))
    assert tracker is not None
    x, classes, confidence = _rows(2, seed=9)

    tracker.add(x[0], int(classes[0]), float(confidence[0]), T0 + 1)
    tracker.add(x[1], int(classes[1]), float(confidence[1]), T0 + HOUR + 1)

    assert h.events == [] and h.sketcher.withheld == 1


def test_inputs_the_binner_cannot_take_turn_sketching_off_with_one_error(
    profile: ReferenceProfile, tmp_path: Path
) -> None:
    h = Harness(tmp_path / "q.db", Wall(T0))
    tracker = h.sketcher.tracker("m", 1, profile, "NC", MonitorPolicy())
    assert tracker is not None
    x, _, _ = _rows(2, seed=10)

    tracker.add(x[0], 99, 0.5, T0 + 1)  # a class the profile does not have
    tracker.add(x[1], 1, 0.5, T0 + 2)

    assert len(h.errors) == 1 and "class 99" in h.errors[0][3]
    assert not tracker.enabled
    nan = x[0].copy()
    nan[0] = np.nan
    fresh = h.sketcher.tracker("m", 1, profile, "NC", MonitorPolicy())
    assert fresh is not None
    fresh.add(nan, 1, 0.5, T0 + 3)
    assert h.sketcher.skipped == 1


def test_a_profile_whose_features_the_input_lacks_is_reported_not_raised(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    odd = build_profile(
        {"brightness_0": rng.normal(size=200)},
        predicted_class=rng.integers(0, 2, size=200),
        confidence=rng.uniform(size=200),
        num_classes=2,
        projections=0,
    )
    h = Harness(tmp_path / "q.db", Wall(T0))
    tracker = h.sketcher.tracker("m", 1, odd, "NC", MonitorPolicy())
    assert tracker is not None
    tracker.add(np.zeros(4), 0, 0.9, T0 + 1)  # NC inputs have no brightness feature
    assert len(h.errors) == 1 and not tracker.enabled


def test_the_cost_per_scored_input_is_a_few_microseconds(
    profile: ReferenceProfile, tmp_path: Path
) -> None:
    h = Harness(tmp_path / "q.db", Wall(T0))
    tracker = h.sketcher.tracker("m", 1, profile, "NC", MonitorPolicy(max_rows=10**9))
    assert tracker is not None
    x, classes, confidence = _rows(2000, seed=12)
    started = time.perf_counter()
    for row, cls, conf in zip(x, classes, confidence, strict=True):
        tracker.add(row, int(cls), float(conf), T0 + 1)
    per_input_us = (time.perf_counter() - started) / 2000 * 1e6
    print(f"sketching costs {per_input_us:.1f} us per scored input (64 features + 5 PCs)")
    h.sketcher.close_windows(early=True)
    assert h.events[0]["n"] == 2000  # measured and reported, not asserted (timing)


# ---------------------------------------------------------------- against a real server


def _device(live: LiveServer, device_key: str, cache: Path) -> Device:
    facts = DeviceFacts("linux", "6.1", "1.0.0", formats=("onnx",), device_class="edge-linux")
    return Device(live.url, device_key, facts, cache, seed=0)


def test_a_device_sends_what_its_local_model_scored_and_the_server_merges_it(
    live_server: LiveServer, tmp_path: Path
) -> None:
    keys = live_server.create_app("sketching")
    out, profile = write_profiled_build(tmp_path / "build", seed=4)
    with live_server.admin(keys.admin_token) as client:
        client.push_build(out, model="digits", stage="production")
    x, _, _ = _rows(30, seed=13)
    x = np.clip(x, 0, 16)

    with _device(live_server, keys.device_key, tmp_path / "cache") as device:
        device.sync()
        predictions = [device.model("digits").predict(row.astype(np.float32)) for row in x]
        report = device.flush()

    assert report.error is None and {p.source for p in predictions} == {"local"}
    engine = create_engine(live_server.settings.resolved_database_url)
    try:
        (row,) = read_sketches(engine, keys.app_id, "digits", since=0, until=2**40)
    finally:
        engine.dispose()
    expected = profile.sketch(
        _columns(x.astype(np.float32).astype(np.float64)),
        [p.class_index for p in predictions],
        [p.confidence for p in predictions],
    )
    assert (row.n, row.key.device_class, row.key.app_version) == (30, "edge-linux", "1.0.0")
    assert row.counts.tolist() == expected.counts.tolist()


def test_a_broken_profile_on_the_device_is_one_error_event_and_predictions_go_on(
    live_server: LiveServer, tmp_path: Path
) -> None:
    keys = live_server.create_app("broken-profile")
    out, _ = write_profiled_build(tmp_path / "build", seed=6)
    with live_server.admin(keys.admin_token) as client:
        client.push_build(out, model="digits", stage="production")
    with _device(live_server, keys.device_key, tmp_path / "cache") as device:
        device.sync()
    (profile_file,) = (tmp_path / "cache").rglob("profile.json")
    profile_file.write_text('{"format": 1, "bins": "not a list"}')

    with _device(live_server, keys.device_key, tmp_path / "cache") as device:
        model = device.model("digits")
        for row in np.zeros((3, 64), np.float32):
            assert model.predict(row).source == "local"
        device.flush()
        events = device.queue.counter("rejected")

    assert events == 0
    engine = create_engine(live_server.settings.resolved_database_url)
    try:
        assert read_sketches(engine, keys.app_id, "digits", since=0, until=2**40) == []
    finally:
        engine.dispose()
    with live_server.admin(keys.admin_token) as client:
        groups = client.request("GET", "/v1/admin/models/digits/metrics").json()["groups"]
    assert sum(g["errors"] for g in groups) == 1  # "profile unusable", reported once


def test_a_device_under_a_dp_policy_sends_noisy_counts_the_server_charges(
    live_server: LiveServer, tmp_path: Path
) -> None:
    keys = live_server.create_app("private")
    out, _ = write_profiled_build(tmp_path / "build", seed=5)
    with live_server.admin(keys.admin_token) as client:
        version = client.push_build(out, model="digits", stage="production").version
        client.request(
            "PUT",
            f"/v1/admin/models/digits/versions/{version}/policy",
            json={"monitor": {"window_s": 60, "epsilon_per_day": 2.0}},
        )
    x, _, _ = _rows(5, seed=14)

    with _device(live_server, keys.device_key, tmp_path / "cache") as device:
        device.sync()
        model = device.model("digits")
        for row in np.clip(x, 0, 16):
            model.predict(row.astype(np.float32))
        device.flush()  # the window is not over: nothing is spent yet
        device.sketcher.wall = lambda: time.time() + 120  # two minutes later
        device.sketcher.close_windows(early=False)
        report = device.flush()

    assert report.error is None
    engine = create_engine(live_server.settings.resolved_database_url)
    try:
        (row,) = read_sketches(engine, keys.app_id, "digits", since=0, until=2**40)
        (day,) = read_ledger(engine, keys.app_id, device.device_id)
    finally:
        engine.dispose()
    assert row.events == 1 and row.noise_variance > 0
    assert day.events == 1 and day.epsilon == pytest.approx(2.0 / 1440, abs=2e-4)
