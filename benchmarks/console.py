"""The console's pages under load (issue 15 performance goals), in headless Chromium.

Seeds one SQLite home with what a busy app has, then serves it with ``pocketml server``
(a subprocess, as a user runs it) and measures every console page:

- 1,000 versions of model "bench" (``Registry.push_version``, as registry_list_versions
  does), v999 in production with a reference profile of 100 monitored features, v1000 in
  a staged rollout; model "shop" with an A/B experiment;
- 90 days x 100 series of telemetry (10 versions x 10 device classes; one 240-event batch
  per series and day, 2,160,000 events), written with ``TelemetryStore.insert_batch``, the
  store code intake uses (bulk: no HTTP);
- the telemetry exported to Parquet before the server starts (``export_database``, what
  ``pocketml telemetry export`` runs; the fleet page reads Parquet), so the server's own
  exporter has nothing to catch up on while pages are measured;
- 7 days of hourly monitoring sketches of the 100 features from 4 device classes
  (``pocketml.monitor.add_sketches``, the store code intake uses), one class drifted;
- through the admin API once the server runs: the rollout, the experiment, alert rules,
  a loop job; 200 devices check in (the fleet).

Then each page (the GET routes under /ui without path parameters, and one page of every
parametrised route reached by following links) is loaded ``LOADS`` times in headless
Chromium (Debian's, through Playwright) with PerformanceObservers for 'paint' (first
contentful paint, median of the loads) and 'longtask' (the longest main-thread task, max;
Chromium reports only tasks over 50 ms), and fetched ``RENDERS`` times with httpx and
``Accept-Encoding: gzip`` (bytes on the wire; whether the server compressed; the server
render time measured on loopback, p95). Goals: FCP <= 300 ms, no task > 200 ms,
<= 200 KB transferred, p95 <= 50 ms.

Prints a Rich table (80 columns) and writes ``benchmarks/results/console.json``.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server_process import server_process

from pocketml.config import Settings
from pocketml.db import WRITE
from pocketml.monitor import SketchAddition, SketchKey, add_sketches
from pocketml.protect import MasterKey
from pocketml.registry import (
    ModelCreate,
    Registry,
    VariantUpload,
    VersionCreate,
    open_artifact_store,
)
from pocketml.server.client import AdminClient
from pocketml.sketch import ReferenceProfile, build_profile
from pocketml.telemetry import TelemetryStore, export_database
from pocketml.testing import write_model_file

VERSIONS = 1_000
FEATURES = 100
DAYS = 90
SERIES_VERSIONS = 10
DEVICE_CLASSES = [f"class-{i}" for i in range(10)]
EVENTS_PER_SERIES_DAY = 240
SKETCH_DAYS = 7
SKETCH_CLASSES = 4
SKETCH_ROWS = 200
DEVICES = 200
LOADS = 3
RENDERS = 30
GOALS = {"fcp_ms": 300.0, "longest_task_ms": 200.0, "kb": 200.0, "render_p95_ms": 50.0}
DAY = 86_400
HOUR = 3_600
SCHEMA = {
    "format_version": 1,
    "name": "bench",
    "inputs": [{"name": "x", "dtype": "float32", "shape": [None, FEATURES], "layout": "NC"}],
    "outputs": [{"name": "p", "kind": "probabilities", "labels": ["a", "b", "c"]}],
}
OUT = Path(__file__).resolve().parent / "results" / "console.json"

# -- seeding ---------------------------------------------------------------------------------


def _timed(seconds: dict[str, float], step: str, work: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = work()
    seconds[step] = round(time.perf_counter() - started, 1)
    print(f"seeded {step} in {seconds[step]:.1f} s", flush=True)
    return result


def _profile() -> ReferenceProfile:
    rng = np.random.default_rng(0)
    columns = {f"f{i:03d}": rng.normal(0, 1, 5_000) for i in range(FEATURES)}
    confidence = rng.uniform(0.4, 1.0, 5_000)
    return build_profile(
        columns,
        predicted_class=rng.integers(0, 3, 5_000),
        confidence=confidence,
        correct=rng.uniform(size=5_000) < confidence,
        num_classes=3,
        projections=0,
    )


def _variant(home: Path, number: int, model: str) -> tuple[VariantUpload, Path]:
    path = write_model_file(home / "model.onnx", "onnx", seed=f"{model}-{number}", size=400)
    data = path.read_bytes()
    upload = VariantUpload(
        name="onnx-fp32", format="onnx", precision="fp32", sha256=hashlib.sha256(data).hexdigest()
    )
    return upload, path


def _push(
    registry: Registry, app_id: str, model: str, number: int, home: Path, **meta: Any
) -> None:
    upload, path = _variant(home, number, model)
    create = VersionCreate(metrics={"accuracy": 0.9 + number / 1e5}, variants=[upload], **meta)
    registry.push_version(app_id, model, create, {"onnx-fp32": path})


def seed_versions(registry: Registry, app_id: str, home: Path, profile: ReferenceProfile) -> None:
    """1,000 versions of "bench" (v999 in production, with the profile); 2 of "shop"."""
    registry.create_model(app_id, ModelCreate(name="bench", schema=SCHEMA))
    for number in range(1, VERSIONS + 1):
        meta = {"reference_profile": profile.to_dict()} if number == VERSIONS - 1 else {}
        _push(registry, app_id, "bench", number, home, **meta)
    registry.set_stage(app_id, "bench", VERSIONS - 1, "production")
    registry.create_model(app_id, ModelCreate(name="shop", schema={**SCHEMA, "name": "shop"}))
    for number in (1, 2):
        _push(registry, app_id, "shop", number, home)
    registry.set_stage(app_id, "shop", 1, "production")


def seed_telemetry(registry: Registry, app_id: str) -> int:
    """90 days x 100 series (10 versions x 10 device classes), one batch per series-day."""
    store = TelemetryStore(registry.store.engine)
    rng = np.random.default_rng(1)
    now = int(time.time())
    start = now - DAYS * DAY
    versions = range(VERSIONS - SERIES_VERSIONS + 1, VERSIONS + 1)
    offsets = np.linspace(0, DAY - 1, EVENTS_PER_SERIES_DAY)
    total = 0
    for day in range(DAYS):
        received = datetime.fromtimestamp(start + (day + 1) * DAY, UTC)
        for version in versions:
            for device_class in DEVICE_CLASSES:
                latencies = rng.gamma(4.0, 6.0, EVENTS_PER_SERIES_DAY)
                events = [
                    {"type": "inference", "ts": float(start + day * DAY + offset),
                     "model": "bench", "version": version, "variant": "onnx-fp32",
                     "source": "cloud" if i % 10 == 0 else "local",
                     "latency_ms": float(latency), "confidence": 0.9}
                    for i, (offset, latency) in enumerate(zip(offsets, latencies, strict=True))
                ]  # fmt: skip
                store.insert_batch(
                    app_id,
                    uuid.uuid4().hex,
                    f"dev-{device_class}-{version}",
                    {"platform": "android", "device_class": device_class, "app_version": "2.0"},
                    events,
                    received,
                )
                total += len(events)
    return total


def seed_sketches(registry: Registry, app_id: str, profile: ReferenceProfile) -> int:
    """Hourly sketches of the 100 features for 7 days x 4 device classes (one drifted)."""
    rng = np.random.default_rng(2)
    first = int(time.time()) // HOUR * HOUR - SKETCH_DAYS * DAY
    additions = []
    for hour in range(SKETCH_DAYS * 24):
        for c in range(SKETCH_CLASSES):
            shift = 0.5 if c == SKETCH_CLASSES - 1 else 0.0
            columns = {f"f{i:03d}": rng.normal(shift, 1, SKETCH_ROWS) for i in range(FEATURES)}
            sketch = profile.sketch(
                columns,
                rng.integers(0, 3, SKETCH_ROWS),
                rng.uniform(0.4, 1.0, SKETCH_ROWS),
            )
            key = SketchKey("bench", VERSIONS - 1, DEVICE_CLASSES[c], "2.0", first + hour * HOUR)
            additions.append(SketchAddition(key, sketch))
    with registry.store.engine.connect().execution_options(**WRITE) as conn, conn.begin():
        add_sketches(conn, app_id, additions)
    return len(additions)


def seed_home(home: Path) -> tuple[str, str, dict[str, Any]]:
    """Fill ``home``'s SQLite database; returns the admin token, the device key and what
    was seeded."""
    home.mkdir(parents=True)
    registry = Registry(
        f"sqlite:///{home / 'pocketml.db'}",
        open_artifact_store(str(home / "artifacts")),
        MasterKey.load_or_create(home / "master.key"),
    )
    registry.open()
    seconds: dict[str, float] = {}
    try:
        profile = _profile()
        created = registry.create_app("bench")
        app_id = created.app.id
        _timed(seconds, "versions", lambda: seed_versions(registry, app_id, home, profile))
        events = _timed(seconds, "telemetry", lambda: seed_telemetry(registry, app_id))
        sketches = _timed(seconds, "sketches", lambda: seed_sketches(registry, app_id, profile))
    finally:
        registry.close()
    url = f"sqlite:///{home / 'pocketml.db'}"  # what `pocketml telemetry export` does, so the
    _timed(seconds, "parquet", lambda: export_database(url, home / "telemetry"))  # fleet reads it
    seeded = {
        "versions": VERSIONS,
        "monitored_features": FEATURES,
        "telemetry_days": DAYS,
        "telemetry_series": SERIES_VERSIONS * len(DEVICE_CLASSES),
        "telemetry_events": events,
        "sketches": sketches,
        "seconds": seconds,
        "telemetry_written_with": "TelemetryStore.insert_batch (the intake's store code)",
        "sketches_written_with": "pocketml.monitor.add_sketches (the intake's store code)",
    }
    return created.admin_token, created.device_key, seeded


def seed_through_the_api(url: str, token: str) -> None:
    """What an operator and a fleet add on a running server."""
    with AdminClient(url, token) as client:
        client.create_rollout("bench", VERSIONS, schedule=[5, 25, 100], min_dwell_s=86_400)
        arms = [{"name": "control", "version": 1}, {"name": "treatment", "version": 2}]
        client.start_experiment("shop", arms, metric="latency_ms")
        client.create_default_alert_rules("bench")
        client.run_loop_job("bench", note="console benchmark")


def check_in_fleet(url: str, device_key: str) -> None:
    """DEVICES phones check in (the fleet pages have devices)."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {device_key}"}) as http:
        for i in range(DEVICES):
            body = {
                "device_id": f"bench-device-{i:05d}",
                "platform": "android",
                "os_version": "14",
                "app_version": "2.0",
                "device_class": DEVICE_CLASSES[i % len(DEVICE_CLASSES)],
                "formats": ["onnx"],
            }
            http.post("/v1/checkin", json=body).raise_for_status()


# -- the pages ---------------------------------------------------------------------------


def console_pages(home: Path) -> list[tuple[str, re.Pattern[str]]]:
    """The GET routes under /ui (not the login form): template and URL pattern."""
    from fastapi.routing import iter_route_contexts

    from pocketml.server.app import create_app

    app = create_app(Settings(home=home))
    pages = []
    for route in iter_route_contexts(app.routes):  # through the included routers
        path = route.path or ""
        if path.startswith("/ui/") and "GET" in (route.methods or ()):
            regex = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path))
            pages.append((path, re.compile(f"^{regex}$")))
    return pages


def discover(http: httpx.Client, pages: list[tuple[str, re.Pattern[str]]]) -> dict[str, str]:
    """Page label -> one URL: each literal route, then the first link to each other route;
    a literal route also linked with a query (compare two versions, one rollout's audit)
    is measured that way too, labelled ``route?``."""
    found = {t: t for t, _ in pages if "{" not in t}
    queue = list(found.values())
    while queue:
        path = queue.pop(0)
        started = time.perf_counter()
        body = http.get(path).text
        print(f"found {path} ({(time.perf_counter() - started) * 1000:.0f} ms)", flush=True)
        for href in re.findall(r'href="(/ui/[^"#]*)"', body):
            link = html.unescape(href)
            bare, _, query = link.partition("?")
            for template, pattern in pages:
                if not pattern.match(bare):
                    continue
                label = f"{template}?" if query and "{" not in template else template
                if label not in found:
                    found[label] = link
                    queue.append(link)
    return found


OBSERVE = """
window.__pml = {fcp: null, longest: 0};
new PerformanceObserver(list => { for (const e of list.getEntries())
  if (e.name === 'first-contentful-paint') window.__pml.fcp = e.startTime;
}).observe({type: 'paint', buffered: true});
new PerformanceObserver(list => { for (const e of list.getEntries())
  window.__pml.longest = Math.max(window.__pml.longest, e.duration);
}).observe({type: 'longtask', buffered: true});
"""

TRANSFERRED = """() => performance.getEntriesByType('navigation').concat(
  performance.getEntriesByType('resource')).reduce((sum, e) => sum + e.transferSize, 0)"""


def in_chromium(url: str, token: str, paths: dict[str, str]) -> dict[str, dict[str, float]]:
    """FCP (median of LOADS), longest task (max) and bytes per page in headless Chromium."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        raise SystemExit("console benchmark needs Chromium: apt-get install -y chromium")
    measured: dict[str, dict[str, float]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 800})
        context.add_init_script(OBSERVE)
        login = context.new_page()
        login.goto("/ui")
        login.get_by_label("Admin token").fill(token)
        with login.expect_navigation():
            login.get_by_role("button", name="Log in").click()
        login.close()
        for template, path in paths.items():
            fcps, longest, transferred = [], 0.0, 0.0
            for _ in range(LOADS):
                page = context.new_page()
                page.goto(path, wait_until="load")
                page.wait_for_function("window.__pml.fcp !== null", timeout=10_000)
                seen = page.evaluate("window.__pml")
                fcps.append(seen["fcp"])
                longest = max(longest, seen["longest"])
                transferred = page.evaluate(TRANSFERRED)
                page.close()
            print(f"measured {path} in Chromium (FCP {statistics.median(fcps):.0f} ms)", flush=True)
            measured[template] = {
                "fcp_ms": statistics.median(fcps),
                "longest_task_ms": longest,
                "browser_transferred_bytes": transferred,
            }
        browser.close()
    return measured


def over_http(http: httpx.Client, path: str) -> dict[str, Any]:
    """Bytes on the wire with Accept-Encoding: gzip, and the render time, over RENDERS."""
    timings = []
    response = None
    for _ in range(RENDERS):
        started = time.perf_counter()
        response = http.get(path, headers={"Accept-Encoding": "gzip"})
        timings.append((time.perf_counter() - started) * 1000)
    assert response is not None
    encoding = response.headers.get("content-encoding", "identity")
    return {
        "status": response.status_code,
        "content_encoding": encoding,
        "wire_bytes": response.num_bytes_downloaded,
        "html_bytes": len(response.content),
        "gzip_bytes": len(gzip.compress(response.content)),
        "render_p50_ms": statistics.median(timings),
        "render_p95_ms": statistics.quantiles(timings, n=20)[18],
    }


def met(row: dict[str, Any]) -> dict[str, bool]:
    """Which goals a page meets (bytes: what was transferred)."""
    return {
        "fcp": row["fcp_ms"] <= GOALS["fcp_ms"],
        "task": row["longest_task_ms"] <= GOALS["longest_task_ms"],
        "bytes": row["wire_bytes"] / 1000 <= GOALS["kb"],
        "render": row["render_p95_ms"] <= GOALS["render_p95_ms"],
    }


def print_table(rows: list[dict[str, Any]], seeded: dict[str, Any]) -> None:
    """The Rich table, 80 columns: one row per page, goals in the headers."""
    console = Console(width=80)
    table = Table(
        title=f"Console pages: {VERSIONS:,} versions, {FEATURES} features, "
        f"{DAYS} d x {seeded['telemetry_series']} series",
        caption="✗ misses the goal; task '<50': no task long enough to be reported",
    )
    table.add_column("page", overflow="fold", max_width=30)
    for header in ("FCP ms\n≤ 300", "task ms\n≤ 200", "KB\n≤ 200", "p95 ms\n≤ 50"):
        table.add_column(header, justify="right")
    for row in rows:
        ok = row["met"]
        mark = {k: "" if v else " ✗" for k, v in ok.items()}
        task = "<50" if row["longest_task_ms"] == 0 else f"{row['longest_task_ms']:.0f}"
        table.add_row(
            row["page"].removeprefix("/ui"),
            f"{row['fcp_ms']:.0f}{mark['fcp']}",
            f"{task}{mark['task']}",
            f"{row['wire_bytes'] / 1000:.1f}{mark['bytes']}",
            f"{row['render_p95_ms']:.1f}{mark['render']}",
        )
    console.print(table)
    encodings = {row["content_encoding"] for row in rows}
    console.print(
        f"Content-Encoding of the pages: {', '.join(sorted(encodings))}; largest page "
        f"gzipped: {max(r['gzip_bytes'] for r in rows) / 1000:.1f} KB. Seeding: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in seeded["seconds"].items())
    )


def main() -> None:
    """Seed, serve, measure every page, print the table, write the JSON."""
    with tempfile.TemporaryDirectory(prefix="pocketml-bench-console-") as tmp:
        home = Path(tmp) / "home"
        token, device_key, seeded = seed_home(home)
        pages = console_pages(home)
        # The queued loop job stays queued (a running job would train during the measurement).
        with server_process(home, POCKETML_SERVER__LOOP__INTERVAL_S="0") as (_, url):
            seed_through_the_api(url, token)
            check_in_fleet(url, device_key)
            with httpx.Client(base_url=url, timeout=60) as http:
                http.post("/ui/login", data={"token": token})
                paths = discover(http, pages)
                browser = in_chromium(url, token, paths)
                rows: list[dict[str, Any]] = []
                for template, path in paths.items():
                    row = {"page": template, "url": path, **browser[template]}
                    row.update(over_http(http, path))
                    row["met"] = met(row)
                    rows.append(row)
    unreached = sorted({t for t, _ in pages} - {label.rstrip("?") for label in paths})
    result: dict[str, Any] = {
        "seeded": seeded,
        "goals": GOALS,
        "loads_per_page": LOADS,
        "renders_per_page": RENDERS,
        "pages": rows,
        "unreached_routes": unreached,
        "all_goals_met": all(all(r["met"].values()) for r in rows),
    }
    print_table(rows, seeded)
    if unreached:
        print(f"no link reaches: {', '.join(unreached)}")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
