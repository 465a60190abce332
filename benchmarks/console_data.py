"""Console learn pages with issue 15's data: request times per page, cold and warm.

Seeds one SQLite home through the server's own stores: 90 days x 100 telemetry series
(10 versions x 10 device classes, 50 inferences per series and day: 450,000 events, one
batch per series and day) and a production version with a 100-feature reference
profile plus 24 h of device sketches (2 device classes, 600 rows an hour each). Then
logs in to the console and requests each page ``REPEATS`` times: the first request
(cold: rollups and remembered drift tests are built by it) is printed apart, then the
p50/p95 of the rest (warm), with the page size raw and gzipped.

Run it once per code version to compare (same machine, one after the other):

    PYTHONPATH=<checkout>/src python benchmarks/console_data.py /tmp/home-x

Prints one line per page; writes nothing else. The home must not exist yet.
"""

from __future__ import annotations

import gzip
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from pocketml.db import WRITE, create_engine
from pocketml.monitor import SketchAddition, SketchKey, add_sketches
from pocketml.sketch import build_profile
from pocketml.telemetry import TelemetryStore, export_database
from pocketml.testing import (
    DIGITS_SCHEMA,
    live_server,
    model_variant,
    push_version,
    server_settings,
)

DAYS = 90
SERIES = 100
PER_DAY = 50
FEATURES = 100
REPEATS = 15
PAGES = (
    ("ui", "/ui/telemetry?model=digits&days=90"),
    ("ui", "/ui/telemetry?model=digits&days=7"),
    ("api", "/v1/admin/models/digits/metrics"),
    ("ui", "/ui/fleet?days=90"),
    ("ui", "/ui/fleet?days=7"),
    ("ui", "/ui/models/digits/drift"),
    ("ui", "/ui/models/digits/drift?over_time=1"),
    ("ui", "/ui/models/digits/drift/f000"),
    ("ui", "/ui/models/digits/drift/f000?over_time=1"),
    ("api", "/v1/admin/models/digits/drift"),
    ("ui", "/ui/models/digits/accuracy"),
)


def _columns(rng: np.random.Generator, n: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    return {f"f{i:03d}": rng.normal(shift if i < 10 else 0.0, 1.0, n) for i in range(FEATURES)}


def main(home: Path) -> None:
    """Seed ``home`` and print the pages' times."""
    settings = server_settings(
        home,
        None,
        telemetry_export={"interval_s": 0},
        alerts={"eval_interval_s": 0, "delivery_interval_s": 0},
    )
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.4, 1, 20_000)
    profile = build_profile(
        _columns(rng, 20_000),
        categorical=[],
        predicted_class=rng.integers(0, 3, 20_000),
        confidence=confidence,
        correct=rng.uniform(size=20_000) < confidence,
        num_classes=3,
        projections=0,
    )
    with live_server(settings) as live:
        app = live.create_app("bench")
        with live.admin(app.admin_token) as client:
            push_version(
                client,
                "digits",
                [model_variant(home / "v", "onnx-fp32")],
                schema=DIGITS_SCHEMA,
                stage="production",
                reference_profile=profile.to_dict(),
            )
        engine = create_engine(settings.resolved_database_url)
        store = TelemetryStore(engine)
        now = time.time()
        draw = random.Random(0)
        started = time.perf_counter()
        for day in range(DAYS):
            for s in range(SERIES):
                version, device_class = s // 10 + 1, f"class-{s % 10}"
                ts = now - (DAYS - 1 - day) * 86_400 - draw.random() * 80_000
                events = [
                    {
                        "type": "inference",
                        "ts": ts + i,
                        "model": "digits",
                        "version": version,
                        "variant": "onnx-fp32",
                        "source": ("local", "local", "cloud", "fallback")[i % 4],
                        "latency_ms": 20 + draw.random() * 50,
                        "confidence": 0.9,
                        "label": "3",
                        "prediction_id": uuid.uuid4().hex,
                    }
                    for i in range(PER_DAY)
                ]
                context: dict[str, str | None] = {
                    "device_class": device_class,
                    "app_version": "2.0",
                    "platform": "android",
                }
                store.insert_batch(
                    app.app_id,
                    uuid.uuid4().hex,
                    f"dev-{s}-{day % 7}",
                    context,
                    events,
                    datetime.fromtimestamp(ts, UTC),
                )
        print(f"seeded {DAYS * SERIES * PER_DAY} events in {time.perf_counter() - started:.1f} s")
        hour = int(now) // 3600 * 3600
        additions = []
        for device_class, shift in (("phone", 0.0), ("tablet", 1.0)):
            for h in range(24):
                conf = rng.uniform(0.4, 1, 600)
                sketch = profile.sketch(_columns(rng, 600, shift), rng.integers(0, 3, 600), conf)
                key = SketchKey("digits", 1, device_class, "2.0", hour - 24 * 3600 + h * 3600)
                additions.append(SketchAddition(key, sketch))
        with engine.connect().execution_options(**WRITE) as conn, conn.begin():
            add_sketches(conn, app.app_id, additions)
        # the base's fleet page reads the Parquet export (the branch's reads the database)
        export_database(settings.resolved_database_url, home / "telemetry")
        with live.http(app.admin_token) as api, live.http() as ui:
            ui.post("/ui/login", data={"token": app.admin_token})
            for kind, path in PAGES:
                http = ui if kind == "ui" else api
                times = []
                for _ in range(REPEATS):
                    t = time.perf_counter()
                    response = http.get(path)
                    times.append((time.perf_counter() - t) * 1000)
                cold, warm = times[0], sorted(times[1:])
                p95 = warm[min(len(warm) - 1, round(0.95 * (len(warm) - 1)))]
                body = response.content
                print(
                    f"{path}: {response.status_code} cold {cold:.0f} ms, warm p50 "
                    f"{statistics.median(warm):.1f} ms p95 {p95:.1f} ms, "
                    f"{len(body) / 1000:.1f} KB, gzip {len(gzip.compress(body)) / 1000:.1f} KB",
                    flush=True,
                )


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:  # `make bench` runs every script without arguments: a throwaway home
        import tempfile

        with tempfile.TemporaryDirectory(prefix="pocketml-console-data-") as tmp:
            main(Path(tmp))
