"""SessionCache: LRU eviction by total model bytes; pick_served_variant."""

from __future__ import annotations

from typing import Any

from pocketml.serving import LoadedModel, SessionCache


def entry(sha: str, size: int) -> LoadedModel:
    return LoadedModel(sha256=sha, size=size, runner=None, schema=None, labels=(), is_logits=False)  # type: ignore[arg-type]


def loader(calls: list[str], sha: str, size: int) -> Any:
    def load() -> LoadedModel:
        calls.append(sha)
        return entry(sha, size)

    return load


def test_the_least_recently_used_model_is_evicted_over_the_byte_budget() -> None:
    cache = SessionCache(capacity_bytes=250)
    calls: list[str] = []
    cache.get_or_load("a", loader(calls, "a", 100))
    cache.get_or_load("b", loader(calls, "b", 100))
    cache.get_or_load("a", loader(calls, "a", 100))  # a is now the most recent
    cache.get_or_load("c", loader(calls, "c", 100))  # 300 > 250: evict b
    assert cache.keys() == ["a", "c"] and cache.total_bytes == 200
    assert calls == ["a", "b", "c"] and cache.evictions == 1


def test_a_model_larger_than_the_budget_is_still_served_alone() -> None:
    cache = SessionCache(capacity_bytes=100)
    calls: list[str] = []
    cache.get_or_load("a", loader(calls, "a", 50))
    huge = cache.get_or_load("big", loader(calls, "big", 500))
    assert huge.sha256 == "big" and cache.keys() == ["big"]
