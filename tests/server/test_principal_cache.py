"""The device-key cache: concurrent misses share one verification."""

from __future__ import annotations

import asyncio

import pytest

from pocketml.errors import Unauthorized
from pocketml.registry import Principal
from pocketml.server._state import PrincipalCache

PRINCIPAL = Principal(app_id="app-1", role="device")


def test_concurrent_misses_for_one_token_run_one_verification() -> None:
    calls = 0

    async def scenario() -> list[Principal]:
        cache = PrincipalCache(ttl_s=5)
        release = asyncio.Event()

        async def verify() -> Principal:
            nonlocal calls
            calls += 1
            await release.wait()  # every caller is waiting before the lookup answers
            return PRINCIPAL

        waiters = [asyncio.ensure_future(cache.verify_once("tok", verify)) for _ in range(20)]
        await asyncio.sleep(0)
        release.set()
        results = await asyncio.gather(*waiters)
        again = await cache.verify_once("tok", verify)  # nothing in flight: verifies anew
        return [*results, again]

    results = asyncio.run(scenario())
    assert calls == 2
    assert all(r == PRINCIPAL for r in results)


def test_a_failed_verification_fails_every_waiter_and_is_not_remembered() -> None:
    calls = 0

    async def scenario() -> tuple[list[object], Principal]:
        cache = PrincipalCache(ttl_s=5)

        async def refuse() -> Principal:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0)
            raise Unauthorized("unknown key")

        async def accept() -> Principal:
            return PRINCIPAL

        failed = await asyncio.gather(
            *[cache.verify_once("tok", refuse) for _ in range(5)], return_exceptions=True
        )
        return list(failed), await cache.verify_once("tok", accept)

    failed, later = asyncio.run(scenario())
    assert calls == 1
    assert all(isinstance(f, Unauthorized) for f in failed)
    assert later == PRINCIPAL


def test_a_cancelled_waiter_does_not_cancel_the_shared_verification() -> None:
    async def scenario() -> Principal:
        cache = PrincipalCache(ttl_s=5)
        release = asyncio.Event()

        async def verify() -> Principal:
            await release.wait()
            return PRINCIPAL

        first = asyncio.ensure_future(cache.verify_once("tok", verify))
        second = asyncio.ensure_future(cache.verify_once("tok", verify))
        await asyncio.sleep(0)
        first.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await second

    assert asyncio.run(scenario()) == PRINCIPAL
