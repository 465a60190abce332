"""pocketml.db's Lease and run_periodically: the two pieces every background job shares.

The lease runs on SQLite and PostgreSQL on a table of its own with an extra column (as the
exporter's lease row carries its watermark); the loop runs real passes in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from pocketml.db import Lease, LeaseHolder, create_engine, run_periodically
from pocketml.errors import Unavailable

_METADATA = sa.MetaData()
_JOBS = sa.Table(
    "jobs",
    _METADATA,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
    sa.Column("watermark", sa.BigInteger, nullable=False),
)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(database_url)
    _METADATA.create_all(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def lease(engine: sa.Engine) -> Lease:
    return Lease(engine, _JOBS, "export", what="the job lease", new_row={"watermark": 7})


def test_one_owner_at_a_time_until_expiry_or_release(engine: sa.Engine) -> None:
    job = lease(engine)
    assert job.holder() is None

    assert job.acquire("a", 1000.0, 30)
    assert not job.acquire("b", 1010.0, 30)  # a holds it until 1030
    assert job.acquire("a", 1020.0, 30)  # renewal by the holder: now until 1050
    assert not job.acquire("b", 1040.0, 30)
    assert job.holder() == LeaseHolder("a", 1050.0)

    job.release("b")  # not the holder: nothing changes
    assert job.holder() == LeaseHolder("a", 1050.0)
    job.release("a")
    assert job.acquire("b", 1041.0, 30)  # released: taken at once, before 1050
    assert job.acquire("a", 1072.0, 30)  # b's lease expired at 1071
    with engine.connect() as conn:
        rows = conn.execute(sa.select(_JOBS)).all()
    assert [tuple(r) for r in rows] == [("export", "a", 1102.0, 7)]  # new_row on insert only


def test_two_first_takers_racing_get_exactly_one_lease(engine: sa.Engine) -> None:
    job = lease(engine)
    start = threading.Barrier(2)
    won: dict[str, bool] = {}

    def take(owner: str) -> None:
        start.wait()
        won[owner] = job.acquire(owner, 1000.0, 30)

    threads = [threading.Thread(target=take, args=(o,)) for o in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(won.values()) == [False, True]
    holder = job.holder()
    assert holder is not None and won[holder.owner]


def test_an_unreachable_database_is_unavailable() -> None:
    engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    try:
        with pytest.raises(Unavailable, match="take the job lease"):
            lease(engine).acquire("a", 1000.0, 30)
    finally:
        engine.dispose()


def test_a_failing_pass_never_ends_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    failures = iter([Unavailable("database blip"), OSError("disk full"), RuntimeError("bug")])
    calls: list[str] = []

    def one_pass() -> None:
        calls.append("pass")
        raise next(failures)

    with caplog.at_level(logging.WARNING, logger="pocketml.db"):
        asyncio.run(
            run_periodically(
                one_pass,
                asyncio.Event(),
                interval_s=0,
                name="test job",
                on_stop=lambda: calls.append("stop"),
                max_passes=3,
            )
        )

    assert calls == ["pass", "pass", "pass", "stop"]
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "test job pass failed: database blip",
        "test job pass failed: disk full",
        "test job pass failed",
    ]
    assert caplog.records[2].exc_info is not None  # an unexpected error keeps its traceback


def test_wake_starts_the_next_pass_before_the_interval() -> None:
    calls: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop, wake = asyncio.Event(), asyncio.Event()

        def one_pass() -> None:
            calls.append(len(calls))
            # An hour between passes: only wake (then stop) can end this test in time.
            loop.call_soon_threadsafe((wake if len(calls) < 3 else stop).set)

        await asyncio.wait_for(
            run_periodically(one_pass, stop, interval_s=3600, name="test job", wake=wake),
            timeout=60,
        )

    asyncio.run(main())
    assert calls == [0, 1, 2]


def test_a_stop_runs_the_final_pass_then_on_stop_whose_failure_is_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []
    stop = asyncio.Event()
    stop.set()  # stopped before the first pass: only the final pass runs

    def release() -> None:
        calls.append("release")
        raise Unavailable("database gone")

    with caplog.at_level(logging.WARNING, logger="pocketml.db"):
        asyncio.run(
            run_periodically(
                lambda: calls.append("pass"),
                stop,
                interval_s=3600,
                name="test job",
                final_fn=lambda: calls.append("final"),
                on_stop=release,
            )
        )

    assert calls == ["final", "release"]
    assert [r.getMessage() for r in caplog.records] == [
        "test job: could not give its lease up: database gone"
    ]
