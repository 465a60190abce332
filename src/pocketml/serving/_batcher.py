"""Dynamic micro-batching: concurrent requests for one model share one runtime call.

A ``MicroBatcher`` owns an asyncio queue and ``concurrency`` consumer tasks. A consumer
takes the first waiting request, then everything else already queued (after one yield to
the event loop, so handlers that are about to submit get in), and waits up to
``max_wait_ms`` for more while the batch has fewer than ``max_batch_size`` rows. Each
caller gets exactly its own rows back. While a batch runs, new requests queue up: under
load batches form by themselves, at low load a request waits at most ``max_wait_ms``.

A batch runs either in a thread executor (the event loop stays free while a heavy model
computes) or inline on the event loop when no executor is given: for a model whose
whole batch takes well under a millisecond, the hop to a thread and back (a GIL
hand-over each way, up to the interpreter's switch interval when threads contend) costs
more than the model, and shows up as tail latency. Inline batching needs no consumer
task either: the first ``submit`` of an event-loop turn schedules one flush with
``call_soon`` (``call_later(max_wait_ms)`` when waiting is allowed), so every request
whose handler runs in the same turn, i.e. everything that arrived together, joins it;
a batch that reaches ``max_batch_size`` rows flushes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

__all__ = ["BatcherStats", "MicroBatcher"]

logger = logging.getLogger(__name__)

_Item = tuple[np.ndarray, "asyncio.Future[np.ndarray]"]


@dataclass(frozen=True)
class BatcherStats:
    """Counters of one batcher: how many runtime calls served how many requests, and
    whether its model runs inline on the event loop (else in the executor)."""

    requests: int
    batches: int
    merged_batches: int
    max_batch_requests: int
    max_batch_rows: int
    inline: bool = False

    @property
    def mean_requests_per_batch(self) -> float:
        """Requests per runtime call (1.0 means nothing was merged)."""
        return self.requests / self.batches if self.batches else 0.0


class MicroBatcher:
    """Merge concurrent ``submit`` calls into batches for ``run``.

    Create it inside the running event loop; ``close()`` stops its consumers.

    Args:
        run: the blocking model call, (N, ...) float32 -> (N, ...) array.
        executor: where ``run`` executes; None runs it inline on the event loop (only for
            models that take a fraction of a millisecond).
        max_batch_size: most rows in one call (a larger single request runs alone).
        max_wait_ms: how long a consumer waits to fill a batch (0: only what is queued).
        concurrency: consumer tasks, i.e. batches that may run at the same time.
    """

    def __init__(
        self,
        run: Callable[[np.ndarray], np.ndarray],
        executor: Executor | None,
        *,
        max_batch_size: int = 64,
        max_wait_ms: float = 1.0,
        concurrency: int = 1,
    ) -> None:
        self.run = run
        self.executor = executor
        self.max_batch_size = max(1, max_batch_size)
        self.max_wait_s = max(0.0, max_wait_ms) / 1000.0
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._carry: list[_Item] = []
        self._pending: list[_Item] = []  # inline mode: this turn's requests
        self._pending_rows = 0
        self._flush_handle: asyncio.Handle | None = None
        self._requests = 0
        self._batches = 0
        self._merged = 0
        self._max_requests = 0
        self._max_rows = 0
        consumers = max(1, concurrency) if executor is not None else 0  # inline: no tasks
        self._tasks = [asyncio.create_task(self._consume()) for _ in range(consumers)]

    def stats(self) -> BatcherStats:
        """The counters so far."""
        return BatcherStats(
            requests=self._requests,
            batches=self._batches,
            merged_batches=self._merged,
            max_batch_requests=self._max_requests,
            max_batch_rows=self._max_rows,
            inline=self.executor is None,
        )

    @property
    def queued(self) -> int:
        """Requests waiting for a batch (the queue depth ``GET /metrics`` reports)."""
        return self._queue.qsize() + len(self._pending)

    async def submit(self, batch: np.ndarray) -> np.ndarray:
        """Run ``batch`` (N, ...) as part of a merged call; return its own N output rows.

        Raises:
            Whatever ``run`` raised for the merged batch.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        if self.executor is not None:
            self._queue.put_nowait((batch, future))
            return await future
        self._pending.append((batch, future))
        self._pending_rows += len(batch)
        if self._pending_rows >= self.max_batch_size:
            self._flush()
        elif self._flush_handle is None:
            self._flush_handle = (
                loop.call_later(self.max_wait_s, self._flush)
                if self.max_wait_s > 0
                else loop.call_soon(self._flush)
            )
        return await future

    def _flush(self) -> None:
        """Inline mode: run everything pending, in batches of at most ``max_batch_size``."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        pending, self._pending, self._pending_rows = self._pending, [], 0
        group: list[_Item] = []
        rows = 0
        for item in pending:
            if group and rows + len(item[0]) > self.max_batch_size:
                self._run_inline(group)
                group, rows = [], 0
            group.append(item)
            rows += len(item[0])
        if group:
            self._run_inline(group)

    def _run_inline(self, items: list[_Item]) -> None:
        live, merged = self._merge(items)
        if not live:
            return
        try:
            outputs = self.run(merged)
        except Exception as exc:
            self._fail(live, exc)
            return
        self._deliver(live, outputs)

    def _merge(self, items: list[_Item]) -> tuple[list[_Item], np.ndarray]:
        """The callers still waiting (cancelled ones dropped), their rows as one batch."""
        live = [(x, f) for x, f in items if not f.done()]
        if not live:
            return live, np.empty(0)
        merged = live[0][0] if len(live) == 1 else np.concatenate([x for x, _ in live])
        self._count(len(live), len(merged))
        return live, merged

    @staticmethod
    def _fail(live: list[_Item], exc: Exception) -> None:
        """Every caller of a failed batch gets its error."""
        for _, future in live:
            if not future.done():
                future.set_exception(exc)

    async def close(self) -> None:
        """Stop the consumers; waiting callers get ``CancelledError``."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while not self._queue.empty():
            self._queue.get_nowait()[1].cancel()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for _, future in self._pending:
            future.cancel()
        self._pending, self._pending_rows = [], 0

    async def _next(self, timeout: float | None) -> _Item | None:
        if self._carry:
            return self._carry.pop()
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            pass
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            return None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def _gather(self) -> list[_Item]:
        first = await self._next(None)
        assert first is not None
        items, rows = [first], len(first[0])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        yielded = False
        while rows < self.max_batch_size:
            item = await self._next(deadline - loop.time())
            if item is None:
                if yielded:
                    break
                await asyncio.sleep(0)  # let handlers that are about to submit get in
                yielded = True
                continue
            if rows + len(item[0]) > self.max_batch_size:
                self._carry.append(item)
                break
            items.append(item)
            rows += len(item[0])
        return items

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            live, merged = self._merge(await self._gather())
            if not live:
                continue
            try:
                outputs = await loop.run_in_executor(self.executor, self.run, merged)
            except Exception as exc:
                self._fail(live, exc)
                continue
            self._deliver(live, outputs)

    @staticmethod
    def _deliver(live: list[_Item], outputs: np.ndarray) -> None:
        start = 0
        for x, future in live:
            end = start + len(x)
            if not future.done():
                future.set_result(outputs[start:end])
            start = end

    def _count(self, requests: int, rows: int) -> None:
        self._requests += requests
        self._batches += 1
        if requests > 1:
            self._merged += 1
        self._max_requests = max(self._max_requests, requests)
        self._max_rows = max(self._max_rows, rows)
