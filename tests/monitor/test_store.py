"""The sketch store: merging is addition per key, in the caller's transaction, on both dialects."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from pocketml.db import WRITE
from pocketml.errors import InvalidInput
from pocketml.monitor import (
    SketchAddition,
    SketchKey,
    add_sketches,
    build_profile,
    merge_sketches,
    read_sketches,
    window_of,
)
from pocketml.protect import MasterKey
from pocketml.registry import LocalArtifactStore, Registry
from pocketml.sketch import ReferenceProfile, Sketch

HOUR = 3600
T0 = 1_795_240_000 - 1_795_240_000 % HOUR


@pytest.fixture
def registry(database_url: str, tmp_path: Path) -> Iterator[Registry]:
    master = MasterKey.from_b64(base64.b64encode(bytes(range(32))).decode("ascii"))
    with Registry(database_url, LocalArtifactStore(tmp_path / "artifacts"), master) as opened:
        yield opened


@pytest.fixture
def app_id(registry: Registry) -> str:
    return registry.create_app("monitor").app.id


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    rng = np.random.default_rng(7)
    columns = {"x0": rng.normal(size=2000), "x1": rng.exponential(size=2000)}
    return build_profile(
        columns,
        predicted_class=rng.integers(0, 3, size=2000),
        confidence=rng.uniform(0.3, 1.0, size=2000),
        num_classes=3,
        projections=0,
    )


def _sketch(profile: ReferenceProfile, seed: int, rows: int) -> Sketch:
    rng = np.random.default_rng(seed)
    columns = {"x0": rng.normal(size=rows), "x1": rng.exponential(size=rows)}
    return profile.sketch(columns, rng.integers(0, 3, size=rows), rng.uniform(0, 1, size=rows))


def _add(registry: Registry, app_id: str, additions: list[SketchAddition]) -> None:
    with registry.store.engine.connect().execution_options(**WRITE) as conn, conn.begin():
        add_sketches(conn, app_id, additions)


def _key(window_start: int = T0, device_class: str = "android-mid") -> SketchKey:
    return SketchKey("digits", 1, device_class, "2.1.0", window_start)


def test_window_of_floors_to_the_hour() -> None:
    assert window_of(T0 + 3599.9) == T0
    assert window_of(T0 + 3600) == T0 + HOUR
    assert window_of(T0 + 7, width_s=60) == T0
    with pytest.raises(InvalidInput):
        window_of(T0, width_s=0)


def test_stored_rows_are_the_merge_of_every_addition(
    registry: Registry, app_id: str, profile: ReferenceProfile
) -> None:
    parts = [_sketch(profile, seed, rows) for seed, rows in enumerate((5, 40, 300, 1))]
    # Two transactions, the first with two events for one key: one row, summed.
    _add(registry, app_id, [SketchAddition(_key(), parts[0]), SketchAddition(_key(), parts[1])])
    _add(registry, app_id, [SketchAddition(_key(), parts[2], noise_variance=2.5)])
    _add(registry, app_id, [SketchAddition(_key(T0 + HOUR), parts[3])])

    rows = read_sketches(registry.store.engine, app_id, "digits", since=T0, until=T0 + 2 * HOUR)
    assert [row.key.window_start for row in rows] == [T0, T0 + HOUR]
    first = rows[0]
    expected = merge_sketches(parts[:3])
    assert first.n == expected.n == 345
    np.testing.assert_array_equal(first.counts, expected.counts)
    assert first.events == 3
    assert first.noise_variance == pytest.approx(2.5)
    assert rows[1].n == 1


def test_reads_filter_by_window_version_and_group(
    registry: Registry, app_id: str, profile: ReferenceProfile
) -> None:
    sketch = _sketch(profile, 1, 10)
    _add(
        registry,
        app_id,
        [
            SketchAddition(_key(device_class="android-low"), sketch),
            SketchAddition(_key(device_class="iphone"), sketch),
            SketchAddition(SketchKey("digits", 2, "iphone", "", T0), sketch),
            SketchAddition(SketchKey("other", 1, "iphone", "", T0), sketch),
        ],
    )

    def classes(**filters: object) -> list[tuple[int, str]]:
        rows = read_sketches(
            registry.store.engine, app_id, "digits", since=T0, until=T0 + HOUR, **filters
        )
        return sorted((row.key.version, row.key.device_class) for row in rows)

    assert classes() == [(1, "android-low"), (1, "iphone"), (2, "iphone")]
    assert classes(version=1) == [(1, "android-low"), (1, "iphone")]
    assert classes(device_class="iphone", version=2) == [(2, "iphone")]
    assert classes(app_version="") == [(2, "iphone")]
    assert (
        read_sketches(registry.store.engine, app_id, "digits", since=T0 + HOUR, until=T0 + 9 * HOUR)
        == []
    )


def test_a_failed_transaction_stores_nothing(
    registry: Registry, app_id: str, profile: ReferenceProfile
) -> None:
    sketch = _sketch(profile, 2, 10)

    def failing_intake() -> None:
        with registry.store.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            add_sketches(conn, app_id, [SketchAddition(_key(), sketch)])
            raise RuntimeError("the batch row failed")

    with pytest.raises(RuntimeError):
        failing_intake()
    assert read_sketches(registry.store.engine, app_id, "digits", since=T0, until=T0 + HOUR) == []


def test_a_sketch_of_another_layout_is_refused(
    registry: Registry, app_id: str, profile: ReferenceProfile
) -> None:
    sketch = _sketch(profile, 3, 10)
    _add(registry, app_id, [SketchAddition(_key(), sketch)])
    wrong = Sketch(sketch.layout, sketch.n, sketch.counts[:-1])
    with pytest.raises(InvalidInput, match="profile layout"):
        _add(registry, app_id, [SketchAddition(_key(), wrong)])
    with pytest.raises(InvalidInput, match="profile layout"):
        _add(
            registry,
            app_id,
            [SketchAddition(_key(T0 + HOUR), sketch), SketchAddition(_key(T0 + HOUR), wrong)],
        )


def test_concurrent_intakes_of_one_key_lose_nothing(
    registry: Registry, app_id: str, profile: ReferenceProfile
) -> None:
    sketches = [_sketch(profile, seed, 7) for seed in range(16)]
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker(part: list[Sketch]) -> None:
        try:
            barrier.wait()
            for sketch in part:
                _add(registry, app_id, [SketchAddition(_key(), sketch)])
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(sketches[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    (row,) = read_sketches(registry.store.engine, app_id, "digits", since=T0, until=T0 + HOUR)
    assert row.events == 16
    np.testing.assert_array_equal(row.counts, merge_sketches(sketches).counts)


def test_rows_go_with_their_app(registry: Registry, app_id: str, profile: ReferenceProfile) -> None:
    _add(registry, app_id, [SketchAddition(_key(), _sketch(profile, 4, 3))])
    with registry.store.engine.connect().execution_options(**WRITE) as conn, conn.begin():
        conn.execute(sa.text("DELETE FROM apps WHERE id = :id"), {"id": app_id})
    assert read_sketches(registry.store.engine, app_id, "digits", since=T0, until=T0 + HOUR) == []
