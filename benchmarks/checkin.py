"""Check-in with 10,000 distinct devices, against a bare FastAPI constant-manifest endpoint.

A pocketml server (one uvicorn worker, subprocess, SQLite) holds a digits version with
tflite/onnx/ort variants for several device classes. 10,000 check-in bodies (distinct
device ids, four device profiles) are sent from a separate process at concurrency 64;
then the same with ``If-None-Match`` (304s). The baseline is a bare FastAPI endpoint that
reads the body and returns a constant manifest. Goal: >= 0.5x the baseline; 304s cheaper
still. Prints a Rich table; writes ``benchmarks/results/checkin.json``.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
from pathlib import Path

import httpx
import orjson
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _device_load import load_table, provision, run_load, server, variant_entry, write_result

DEVICES = 10_000
CONCURRENCY = 64
DURATION_S = 8
SCHEMA = {
    "format_version": 1,
    "name": "digits",
    "inputs": [{"name": "x", "dtype": "float32", "shape": [None, 64], "layout": "NC"}],
    "outputs": [{"name": "p", "kind": "probabilities", "labels": [str(i) for i in range(10)]}],
}
PROFILES = [
    {"platform": "android", "device_class": "android-low", "formats": ["tflite", "ort"]},
    {"platform": "android", "device_class": "android-high", "formats": ["ort", "tflite"]},
    {"platform": "ios", "device_class": "iphone", "formats": ["coreml", "ort"]},
    {"platform": "linux", "device_class": "edge-linux", "formats": ["onnx"]},
]


def variants(work: Path) -> list[tuple[dict[str, object], Path]]:
    """Seven small variants (random bytes; check-in never opens them)."""
    out = []
    for name, fmt, extra in [
        ("tflite-fp32", "tflite", {}),
        ("tflite-int8", "tflite", {"profiles": ["android-low"]}),
        ("ort-arm", "ort", {"compatibility": {"platform": "arm"}}),
        ("ort-amd64", "ort", {"compatibility": {"platform": "amd64"}}),
        ("coreml-fp16", "coreml", {"profiles": ["iphone"]}),
        ("onnx-fp32", "onnx", {}),
    ]:
        path = work / f"{name}.bin"
        path.write_bytes(random.Random(name).randbytes(4096))
        meta, _ = variant_entry(path, name, fmt, role="device")
        out.append(({**meta, **extra}, path))
    return out


def bodies(profile_filter: int | None = None) -> list[bytes]:
    """One check-in body per device (distinct ids), cycling through the profiles."""
    result = []
    for i in range(DEVICES):
        profile = PROFILES[profile_filter if profile_filter is not None else i % len(PROFILES)]
        result.append(
            orjson.dumps(
                {
                    "device_id": f"device-{i:08d}",
                    "os_version": "14",
                    "app_version": "2.3.1",
                    "runtimes": {"onnxruntime": "1.20.0"},
                    **profile,
                }
            )
        )
    return result


def main() -> None:
    """Baseline, pocketml 200s and pocketml 304s under the same load."""
    console = Console()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with server(
            "pocketml", str(work / "home"), json.dumps({"devices": {"catalog_ttl_s": 5.0}})
        ) as (_, url):
            _, key = provision(url, "digits", SCHEMA, variants(work))
            headers = {"Authorization": f"Bearer {key}"}
            all_bodies = bodies()
            manifest = httpx.post(
                f"{url}/v1/checkin",
                content=all_bodies[0],
                headers={**headers, "Content-Type": "application/json"},
            )
            (work / "manifest.json").write_bytes(manifest.content)
            run_load(url, "/v1/checkin", headers, all_bodies, duration_s=2)
            results["pocketml, 200 (full manifest)"] = run_load(
                url,
                "/v1/checkin",
                headers,
                all_bodies,
                concurrency=CONCURRENCY,
                duration_s=DURATION_S,
            )
            same = bodies(profile_filter=0)
            etag = manifest.headers["etag"].replace('"', '\\"')
            results["pocketml, 304 (If-None-Match)"] = run_load(
                url,
                "/v1/checkin",
                {**headers, "If-None-Match": etag},
                same,
                concurrency=CONCURRENCY,
                duration_s=DURATION_S,
            )
        with server("baseline-checkin", str(work / "manifest.json")) as (_, url):
            run_load(url, "/v1/checkin", {}, all_bodies, duration_s=2)
            results["baseline (bare FastAPI, constant)"] = run_load(
                url, "/v1/checkin", {}, all_bodies, concurrency=CONCURRENCY, duration_s=DURATION_S
            )
    base = results["baseline (bare FastAPI, constant)"].rps
    table = load_table(
        f"check-in, {DEVICES:,} distinct devices, concurrency {CONCURRENCY}",
        "server",
        results,
        base,
        "x baseline",
    )
    console.print(table)
    path = write_result(
        "checkin",
        {
            "devices": DEVICES,
            "concurrency": CONCURRENCY,
            "duration_s": DURATION_S,
            "goal": {"x_baseline": 0.5, "304": "cheaper than 200"},
            "results": {k: {**v.to_dict(), "x_baseline": v.rps / base} for k, v in results.items()},
        },
    )
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
