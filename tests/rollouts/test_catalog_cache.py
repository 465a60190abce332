"""The delivery catalog cache: stale-while-revalidate, one load per miss, invalidation wins."""

from __future__ import annotations

import threading

import pytest
from rollout_kit import World

from pocketml.delivery import CheckinFacts, DeliveryService

PHONE = CheckinFacts(device_id="device-0001", platform="linux", formats=("onnx",))


class Clock:
    """A hand-moved clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Counting(DeliveryService):
    """Counts catalog loads; ``gate`` (when set) holds every load until it is opened."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.loads = 0
        self.gate: threading.Event | None = None

    def _load_catalog(self, app_id: str, now: float):  # type: ignore[no-untyped-def]
        self.loads += 1
        if self.gate is not None:
            self.gate.wait(timeout=30)
        return super()._load_catalog(app_id, now)


@pytest.fixture
def cached(world: World) -> tuple[Counting, Clock]:
    clock = Clock()
    service = Counting(world.registry, cache_ttl_s=1.0, clock=clock)
    service.open()
    return service, clock


def _join_reloads() -> None:
    for thread in threading.enumerate():
        if thread.name == "pocketml-catalog":
            thread.join(timeout=30)


def test_an_expired_catalog_answers_while_one_background_reload_runs(
    world: World, cached: tuple[Counting, Clock]
) -> None:
    service, clock = cached
    first = service.checkin(world.app_id, PHONE)
    assert service.cached_manifest(world.app_id, PHONE) is first and service.loads == 1

    clock.now += 1.5  # past the TTL, inside the grace
    service.gate = threading.Event()
    stale = [service.cached_manifest(world.app_id, PHONE) for _ in range(20)]
    service.gate.set()
    _join_reloads()

    assert all(m is first for m in stale)  # answered at once, from memory
    assert service.loads == 2  # twenty expired look-ups, one reload
    clock.now += 10.0  # far past the grace: the caller must go to the database
    assert service.cached_manifest(world.app_id, PHONE) is None


def test_concurrent_misses_load_the_catalog_once(
    world: World, cached: tuple[Counting, Clock]
) -> None:
    service, _ = cached
    service.gate = threading.Event()
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(service.checkin(world.app_id, PHONE)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    service.gate.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 8 and service.loads == 1


def test_an_invalidation_during_a_reload_drops_the_reloaded_catalog(
    world: World, cached: tuple[Counting, Clock]
) -> None:
    service, clock = cached
    service.checkin(world.app_id, PHONE)
    clock.now += 1.5
    service.gate = threading.Event()
    service.cached_manifest(world.app_id, PHONE)  # starts the reload, which waits at the gate
    service.invalidate(world.app_id)  # e.g. a promotion on this replica
    service.gate.set()
    _join_reloads()
    assert service.cached_manifest(world.app_id, PHONE) is None  # not the pre-promotion load
