"""The one loop every background job of the server runs in.

A job is a synchronous pass (it talks to the database, so it runs in a worker thread and
never blocks the event loop) repeated every ``interval_s`` until a stop event is set. The
loop never dies of one bad pass: a database blip (``PocketMLError``) or a full disk
(``OSError``) is logged and retried next pass, and so is any other exception, with its
traceback. On the way out it runs an optional final pass (the exporter's last flush) and
then ``on_stop`` (giving the job's lease up, so another replica need not wait for it to
expire). A ``wake`` event lets the job ask for its next pass before the interval is up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from pocketml.errors import PocketMLError

__all__ = ["run_periodically"]

_logger = logging.getLogger(__name__)


async def run_periodically(
    pass_fn: Callable[[], object],
    stop: asyncio.Event,
    *,
    interval_s: float,
    name: str,
    wake: asyncio.Event | None = None,
    final_fn: Callable[[], object] | None = None,
    on_stop: Callable[[], object] | None = None,
    max_passes: int | None = None,
    logger: logging.Logger | None = None,
) -> None:
    """Run ``pass_fn`` every ``interval_s`` seconds (or when woken) until ``stop`` is set.

    Args:
        pass_fn: one pass of the job (synchronous; runs in a worker thread).
        stop: set it to end the loop.
        interval_s: seconds between the end of one pass and the start of the next.
        name: the job's name in log messages ("rollout evaluator").
        wake: set it (from the loop's thread) to start the next pass at once.
        final_fn: a last pass after ``stop``, e.g. a final flush (worker thread).
        on_stop: runs last, however the loop ends, e.g. releasing the job's lease
            (worker thread; a ``PocketMLError`` is logged, the lease then expires).
        max_passes: end after this many passes (tests); None = until ``stop``.
        logger: where messages go (the job's own logger; this module's by default).
    """
    log = logger or _logger
    waiter = asyncio.ensure_future(stop.wait())
    try:
        passes = 0
        while not stop.is_set() and (max_passes is None or passes < max_passes):
            passes += 1
            if wake is not None:
                wake.clear()
            await _one_pass(pass_fn, name, log)
            if max_passes is not None and passes >= max_passes:
                break
            await _sleep(waiter, wake, interval_s)
        if final_fn is not None:
            await _one_pass(final_fn, name, log)
    finally:
        waiter.cancel()
        if on_stop is not None:
            try:
                await asyncio.to_thread(on_stop)
            except PocketMLError as error:  # the lease then simply expires
                log.warning("%s: could not give its lease up: %s", name, error)


async def _sleep(waiter: asyncio.Future[Any], wake: asyncio.Event | None, timeout: float) -> None:
    """Wait ``timeout`` seconds, or less when ``stop`` (``waiter``) or ``wake`` is set."""
    woken = asyncio.ensure_future(wake.wait()) if wake is not None else None
    waits: set[asyncio.Future[Any]] = {waiter} if woken is None else {waiter, woken}
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if woken is not None:
            woken.cancel()


async def _one_pass(pass_fn: Callable[[], object], name: str, log: logging.Logger) -> None:
    try:
        await asyncio.to_thread(pass_fn)
    except PocketMLError as error:  # a database blip must not kill the loop
        log.warning("%s pass failed: %s", name, error)
    except OSError as error:  # e.g. a full disk: retried next pass
        log.error("%s pass failed: %s", name, error)
    except Exception:  # never kill the loop; the next pass retries
        log.exception("%s pass failed", name)
