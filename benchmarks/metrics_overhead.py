"""In-process CPU cost of the Prometheus request metrics on the fast path: a 304 check-in
with metrics off and on.

    PYTHONPATH=src python benchmarks/metrics_overhead.py [--runs 9] [--calls 2000]

Drives the ASGI app directly like ``frontdoor_overhead.py`` (whose helpers it uses): no
socket, no uvicorn, so the number is what the app spends per request. Two apps over the
same home, one with ``server.metrics.enabled``, run their lifespans in this process; runs
alternate between them so drift of the machine hits both alike. Reports the median of
``--runs`` runs of ``--calls`` check-ins each, in microseconds of process CPU time per
request, and the difference (what ``ServerMetrics.observe`` and the two clock reads cost).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import orjson
from frontdoor_overhead import _call, _first_etag, _setup

from pocketml.server.app import create_app
from pocketml.testing import server_settings

CHECKIN = orjson.dumps(
    {
        "device_id": "bench-device-0001",
        "platform": "android",
        "os_version": "14",
        "app_version": "1.0",
        "formats": ["onnx"],
    }
)


async def _measure(home: Path, device_key: str, runs: int, calls: int) -> dict[str, float]:
    apps = {
        "metrics_off": create_app(server_settings(home)),
        "metrics_on": create_app(
            server_settings(home, metrics={"enabled": True, "token": "pml_metrics_bench"})
        ),
    }
    head = [
        (b"authorization", f"Bearer {device_key}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(CHECKIN)).encode()),
    ]
    samples: dict[str, list[float]] = {name: [] for name in apps}
    async with AsyncExitStack() as stack:
        heads: dict[str, list[Any]] = {}
        for name, app in apps.items():
            await stack.enter_async_context(app.router.lifespan_context(app))
            etag = await _first_etag(app, head, CHECKIN)
            heads[name] = [*head, (b"if-none-match", etag)]
            for _ in range(200):  # warm caches (principal, manifest memo, metric children)
                assert await _call(app, "POST", "/v1/checkin", heads[name], CHECKIN) == 304
        for _ in range(runs):
            for name, app in apps.items():
                start = time.process_time()
                for _ in range(calls):
                    await _call(app, "POST", "/v1/checkin", heads[name], CHECKIN)
                samples[name].append((time.process_time() - start) / calls * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        key = _setup(home)
        results = asyncio.run(_measure(home, key, args.runs, args.calls))
    for name, micros in results.items():
        runs = f"median of {args.runs} x {args.calls}"
        print(f"checkin_304 {name}: {micros:.1f} us CPU per request ({runs})")
    extra = results["metrics_on"] - results["metrics_off"]
    print(
        f"metrics overhead: {extra:+.1f} us CPU per request ({extra / results['metrics_off']:+.1%})"
    )


if __name__ == "__main__":
    main()
