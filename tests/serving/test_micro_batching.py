"""Dynamic micro-batching: merged calls, each caller gets its own rows, errors, off switch."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from serving_kit import DigitsBuild, batching_settings, onnx_variant
from test_predict_route import direct_probabilities

from pocketml.serving import MicroBatcher
from pocketml.testing import live_server


async def _post_all(url: str, key: str, inputs: np.ndarray) -> list[dict]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        base_url=url, limits=limits, timeout=60, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        responses = await asyncio.gather(
            *[
                client.post(
                    "/v1/models/digits/predict",
                    json={"inputs": [row.tolist()], "prediction_id": f"p-{i}"},
                )
                for i, row in enumerate(inputs)
            ]
        )
    assert all(r.status_code == 200 for r in responses)
    return [r.json() for r in responses]


def test_64_concurrent_requests_are_merged_and_each_gets_its_own_answer(
    tmp_path: Path, database_url: str, digits: DigitsBuild
) -> None:
    # One consumer that waits up to 0.5 s to fill a batch of 64: the batch closes as soon as
    # the 64th request arrives, so merging is certain, not a matter of timing.
    settings = batching_settings(
        tmp_path / "home", database_url, workers=1, max_batch_size=64, max_wait_ms=500
    )
    with live_server(settings) as server:
        app = server.create_app("batching")
        server.push(app, "digits", [onnx_variant(digits, "lr")], schema=digits.schema)
        inputs = digits.inputs[:64]
        answers = asyncio.run(_post_all(server.url, app.device_key, inputs))
        with server.http(app.admin_token) as http:
            stats = http.get("/v1/admin/serving/stats").json()["digits"]
    expected = direct_probabilities(digits, inputs)
    for i, answer in enumerate(answers):
        assert answer["prediction_id"] == f"p-{i}"
        np.testing.assert_allclose(
            answer["predictions"][0]["probabilities"], expected[i], atol=1e-5
        )
    assert stats["requests"] == 64
    assert stats["merged_batches"] >= 1 and stats["batches"] < 64
    assert stats["max_batch_requests"] > 1


def test_with_batching_off_every_request_runs_alone_and_is_still_right(
    tmp_path: Path, database_url: str, digits: DigitsBuild
) -> None:
    settings = batching_settings(tmp_path / "h", database_url, batching=False)
    with live_server(settings) as server:
        app = server.create_app("unbatched")
        server.push(app, "digits", [onnx_variant(digits, "lr")], schema=digits.schema)
        answers = asyncio.run(_post_all(server.url, app.device_key, digits.inputs[:16]))
        with server.http(app.admin_token) as http:
            stats = http.get("/v1/admin/serving/stats").json()
    expected = direct_probabilities(digits, digits.inputs[:16]).argmax(axis=1)
    assert [a["predictions"][0]["index"] for a in answers] == expected.tolist()
    assert stats == {}


def _doubled(x: np.ndarray) -> np.ndarray:
    return x * 2


async def _submit_concurrently(batcher: MicroBatcher, arrays: list[np.ndarray]) -> list[np.ndarray]:
    return list(await asyncio.gather(*[batcher.submit(a) for a in arrays]))


# Both modes: the executor (consumer tasks) and inline (flush scheduled on the event loop).
MODES = pytest.mark.parametrize("inline", [False, True], ids=["executor", "inline"])


@MODES
def test_the_batcher_splits_results_back_by_caller_and_caps_the_batch_size(inline: bool) -> None:
    async def scenario() -> tuple[list[np.ndarray], object]:
        with ThreadPoolExecutor(1) as pool:
            executor = None if inline else pool
            batcher = MicroBatcher(_doubled, executor, max_batch_size=8, max_wait_ms=2000)
            arrays = [np.full((n, 2), i, dtype=np.float32) for i, n in enumerate([3, 5, 2, 6])]
            outputs = await _submit_concurrently(batcher, arrays)
            await batcher.close()
            return outputs, batcher.stats()

    outputs, stats = asyncio.run(scenario())
    for i, (n, out) in enumerate(zip([3, 5, 2, 6], outputs, strict=True)):
        assert out.shape == (n, 2) and np.all(out == 2 * i)
    assert stats.requests == 4 and stats.batches == 2  # 3+5 | 2+6: never more than 8 rows
    assert stats.max_batch_rows == 8


@MODES
def test_a_failing_batch_fails_every_caller_in_it(inline: bool) -> None:
    def broken(x: np.ndarray) -> np.ndarray:
        raise RuntimeError("runtime exploded")

    async def scenario() -> list[object]:
        with ThreadPoolExecutor(1) as pool:
            executor = None if inline else pool
            batcher = MicroBatcher(broken, executor, max_batch_size=4, max_wait_ms=2000)
            arrays = [np.zeros((1, 2), np.float32)] * 4
            results = await asyncio.gather(
                *[batcher.submit(a) for a in arrays], return_exceptions=True
            )
            await batcher.close()
            return list(results)

    results = asyncio.run(scenario())
    assert all(isinstance(r, RuntimeError) for r in results)


@MODES
@pytest.mark.parametrize("max_wait_ms", [0.0, 1.0])
def test_a_lone_request_is_answered_without_waiting_for_company(
    max_wait_ms: float, inline: bool
) -> None:
    async def scenario() -> np.ndarray:
        with ThreadPoolExecutor(1) as pool:
            executor = None if inline else pool
            batcher = MicroBatcher(_doubled, executor, max_batch_size=64, max_wait_ms=max_wait_ms)
            out = await asyncio.wait_for(batcher.submit(np.ones((1, 2), np.float32)), 5)
            await batcher.close()
            return out

    assert np.all(asyncio.run(scenario()) == 2)


def test_inline_batching_merges_what_arrives_in_one_event_loop_turn() -> None:
    """With max_wait 0, requests submitted in the same turn share one call; later ones don't."""
    calls: list[int] = []

    def counted(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return x + 1

    async def scenario() -> list[np.ndarray]:
        batcher = MicroBatcher(counted, None, max_batch_size=64, max_wait_ms=0)
        together = [np.full((1, 3), i, np.float32) for i in range(5)]
        first = await asyncio.gather(*[batcher.submit(a) for a in together])
        alone = await batcher.submit(np.zeros((2, 3), np.float32))
        await batcher.close()
        return [*first, alone]

    outputs = asyncio.run(scenario())
    assert calls == [5, 2]
    for i, out in enumerate(outputs[:5]):
        assert out.shape == (1, 3) and np.all(out == i + 1)
    assert outputs[5].shape == (2, 3) and np.all(outputs[5] == 1)


def test_inline_batching_flushes_a_full_batch_without_waiting_and_skips_cancelled_callers() -> None:
    calls: list[int] = []

    def counted(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return x

    async def scenario() -> list[object]:
        # A 10 s wait would time the test out: only the size cap can close these batches.
        batcher = MicroBatcher(counted, None, max_batch_size=4, max_wait_ms=10_000)
        tasks = [
            asyncio.ensure_future(batcher.submit(np.zeros((1, 1), np.float32))) for _ in range(9)
        ]
        await asyncio.sleep(0)  # every task submits; the 4th and 8th fill a batch
        tasks[8].cancel()  # the 9th is pending alone; cancelling it must not run it
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await batcher.close()
        return list(results)

    results = asyncio.run(scenario())
    assert calls == [4, 4]
    assert all(isinstance(r, np.ndarray) for r in results[:8])
    assert isinstance(results[8], asyncio.CancelledError)


@pytest.mark.parametrize("inline_max_ms", [0.0, 100.0])
def test_the_server_runs_a_tiny_model_inline_only_when_its_probe_is_under_the_limit(
    tmp_path: Path, database_url: str, digits: DigitsBuild, inline_max_ms: float
) -> None:
    # The logistic regression's 64-row batch takes well under a millisecond: 100 ms (the
    # most POCKETML_SERVER__PREDICT__INLINE_MAX_MS allows) inlines it, 0 turns inlining
    # off. Both must give the same answers.
    settings = batching_settings(tmp_path / "home", database_url, inline_max_ms=inline_max_ms)
    with live_server(settings) as server:
        app = server.create_app("inline")
        server.push(app, "digits", [onnx_variant(digits, "lr")], schema=digits.schema)
        answers = asyncio.run(_post_all(server.url, app.device_key, digits.inputs[:8]))
        with server.http(app.admin_token) as http:
            stats = http.get("/v1/admin/serving/stats").json()["digits"]
    expected = direct_probabilities(digits, digits.inputs[:8]).argmax(axis=1)
    assert [a["predictions"][0]["index"] for a in answers] == expected.tolist()
    assert stats["inline"] is (inline_max_ms > 0)
    assert stats["requests"] == 8
