"""In-process CPU cost of the device fast path: a 304 check-in and a small predict.

    PYTHONPATH=src python benchmarks/frontdoor_overhead.py [--runs 7] [--calls 2000]

The ASGI app is driven directly with fake ``receive``/``send`` (no socket, no uvicorn),
so the number is what the app itself spends per request: the guard, authentication
(cached), body reading, the handler and the answer. A live server on a temporary home
creates the app and pushes a 64-feature model first; then a fresh app over the same home
runs its lifespan in this process. Reports the median of ``--runs`` runs of
``--calls`` requests each, in microseconds of process CPU time per request.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from pocketml.server.app import create_app
from pocketml.testing import live_server, model_variant, server_settings

ROW = [0.0] * 64


def _setup(home: Path) -> str:
    """Create an app with a production model ``digits``; return its device key."""
    settings = server_settings(home)
    with live_server(settings) as live:
        app = live.create_app("bench")
        live.push(app, "digits", [model_variant(home / "work", "onnx-fp32", size=4000)])
    return app.device_key


async def _call(app: Any, method: str, path: str, headers: list[Any], body: bytes) -> int:
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return status


async def _measure(home: Path, device_key: str, runs: int, calls: int) -> dict[str, float]:
    app = create_app(server_settings(home))
    auth = (b"authorization", f"Bearer {device_key}".encode())
    checkin = orjson.dumps(
        {
            "device_id": "bench-device-0001",
            "platform": "android",
            "os_version": "14",
            "app_version": "1.0",
            "formats": ["onnx"],
        }
    )
    predict = orjson.dumps({"inputs": [ROW]})

    def headers(body: bytes, extra: list[Any] = []) -> list[Any]:  # noqa: B006
        return [
            auth,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *extra,
        ]

    results: dict[str, float] = {}
    async with app.router.lifespan_context(app):
        first = await _first_etag(app, headers(checkin), checkin)
        cases = {
            "checkin_304": (
                "/v1/checkin",
                headers(checkin, [(b"if-none-match", first)]),
                checkin,
                304,
            ),
            "predict_1x64": ("/v1/models/digits/predict", headers(predict), predict, 200),
        }
        for name, (path, head, body, expected) in cases.items():
            for _ in range(200):  # warm caches (principal, manifest memo, session)
                assert await _call(app, "POST", path, head, body) == expected, name
            samples = []
            for _ in range(runs):
                start = time.process_time()
                for _ in range(calls):
                    await _call(app, "POST", path, head, body)
                samples.append((time.process_time() - start) / calls * 1e6)
            results[name] = statistics.median(samples)
    return results


async def _first_etag(app: Any, head: list[Any], body: bytes) -> bytes:
    etag = b""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal etag
        if message["type"] == "http.response.start":
            found = dict(message["headers"]).get(b"etag")
            if found is None:
                raise RuntimeError(f"check-in answered {message['status']}, no ETag")
            etag = found

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/checkin",
        "headers": head,
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
    }
    await app(scope, receive, send)
    return etag


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        key = _setup(home)
        results = asyncio.run(_measure(home, key, args.runs, args.calls))
    for name, micros in results.items():
        print(f"{name}: {micros:.1f} us CPU per request (median of {args.runs} x {args.calls})")


if __name__ == "__main__":
    main()
