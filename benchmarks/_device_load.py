"""Shared by the device benchmarks: server subprocesses and a loopback load generator.

The load comes from a separate process: ``wrk`` (with a Lua script that rotates through
the request bodies) when it is installed, else asyncio + httpx with keep-alive in a
child Python process. Request counts are bounded (``--duration`` for wrk, ``requests``
for the Python generator).

As in the issue's reference setup, the server runs on one core and the load generator on
another (``taskset``, when the machine has it and at least two cores): otherwise the two
compete for the same core and the scheduler, not the server, sets the tail latency.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.table import Table

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SERVER_CPU = "0"
LOAD_CPU = "1"


def pinned(command: list[str], cpu: str) -> list[str]:
    """``command`` run on ``cpu`` only (unchanged without taskset or with one core)."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", cpu, *command]
    return command


@dataclass(frozen=True)
class LoadResult:
    """Throughput and latency of one load run."""

    tool: str
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float

    def to_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return asdict(self)


@contextmanager
def server(kind: str, *args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``_device_server.py kind args``; yield the process and its URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POCKETML_")}
    command = pinned([sys.executable, str(HERE / "_device_server.py"), kind, *args], SERVER_CPU)
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = None
        for line in process.stdout:
            if line.startswith("READY "):
                url = line.split()[1]
                break
        if url is None:
            raise RuntimeError(f"{kind} server exited before serving")
        threading.Thread(target=process.stdout.read, daemon=True).start()
        yield process, url
    finally:
        process.terminate()
        process.wait(timeout=30)


_LUA = """
local bodies = {}
local f = io.open("%(bodies)s", "r")
for line in f:lines() do bodies[#bodies + 1] = line end
f:close()
local i = 0
wrk.method = "%(method)s"
wrk.headers["Content-Type"] = "application/json"
%(headers)s
request = function()
  i = i + 1
  return wrk.format(nil, "%(path)s", nil, bodies[(i %% #bodies) + 1])
end
done = function(summary, latency, requests)
%(summary)s
end
"""

# The lines of a wrk done() that print what ``wrk_result`` reads (any script can add more).
WRK_SUMMARY_LUA = """  io.write("P50 " .. latency:percentile(50) .. "\\n")
  io.write("P99 " .. latency:percentile(99) .. "\\n")
  io.write("REQ " .. summary.requests .. "\\n")
  io.write("ERR " .. (summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout) .. "\\n")
  io.write("SEC " .. (summary.duration / 1e6) .. "\\n")"""


def wrk_result(out: str, extra: tuple[str, ...] = ()) -> tuple[LoadResult, dict[str, str]]:
    """The ``LoadResult`` in wrk's output (``WRK_SUMMARY_LUA``) and the ``extra`` keys."""
    keys = "|".join(("P50", "P99", "REQ", "ERR", "SEC", *extra))
    values = dict(re.findall(rf"^({keys}) (\S+)$", out, flags=re.M))
    requests = int(values["REQ"])
    result = LoadResult(
        "wrk",
        requests,
        int(values["ERR"]),  # socket errors + HTTP statuses > 399
        requests / float(values["SEC"]),
        float(values["P50"]) / 1000,
        float(values["P99"]) / 1000,
    )
    return result, {k: values[k] for k in extra}


def _run_wrk(
    url: str,
    path: str,
    headers: dict[str, str],
    bodies: list[bytes],
    concurrency: int,
    duration_s: int,
    threads: int,
) -> LoadResult:
    with tempfile.TemporaryDirectory() as tmp:
        body_file = Path(tmp) / "bodies.txt"
        body_file.write_bytes(b"\n".join(bodies) + b"\n")
        header_lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
        script = Path(tmp) / "load.lua"
        script.write_text(
            _LUA
            % {
                "bodies": body_file,
                "method": "POST",
                "headers": header_lines,
                "path": path,
                "summary": WRK_SUMMARY_LUA,
            }
        )
        out = subprocess.run(
            pinned(
                [
                    "wrk",
                    "-t",
                    str(threads),
                    "-c",
                    str(concurrency),
                    "-d",
                    f"{duration_s}s",
                    "--timeout",
                    "10s",
                    "-s",
                    str(script),
                    url,
                ],
                LOAD_CPU,
            ),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    return wrk_result(out)[0]


_PY_LOAD = r"""
import asyncio, json, sys, time
import httpx
cfg = json.loads(sys.stdin.read())
bodies = [b.encode() for b in cfg["bodies"]]
n = cfg["concurrency"]
headers = {**cfg["headers"], "Content-Type": "application/json"}


async def main():
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    lat, errors, counter = [], 0, iter(range(cfg["requests"]))
    async with httpx.AsyncClient(
        base_url=cfg["url"], headers=headers, limits=limits, timeout=60
    ) as client:
        async def worker():
            nonlocal errors
            for i in counter:
                t = time.perf_counter()
                r = await client.post(cfg["path"], content=bodies[i % len(bodies)])
                lat.append(time.perf_counter() - t)
                errors += r.status_code >= 400
        t0 = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(n)])
        wall = time.perf_counter() - t0
    lat.sort()
    print(json.dumps({
        "requests": len(lat), "errors": errors, "rps": len(lat) / wall,
        "p50_ms": lat[len(lat) // 2] * 1000, "p99_ms": lat[int(len(lat) * 0.99)] * 1000,
    }))


asyncio.run(main())
"""


def _run_python(
    url: str,
    path: str,
    headers: dict[str, str],
    bodies: list[bytes],
    concurrency: int,
    requests: int,
) -> LoadResult:
    config = {
        "url": url,
        "path": path,
        "headers": headers,
        "concurrency": concurrency,
        "requests": requests,
        "bodies": [b.decode() for b in bodies],
    }
    out = subprocess.run(
        pinned([sys.executable, "-c", _PY_LOAD], LOAD_CPU),
        input=json.dumps(config),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = json.loads(out.strip().splitlines()[-1])
    return LoadResult("python-httpx", **data)


def run_load(
    url: str,
    path: str,
    headers: dict[str, str],
    bodies: list[bytes],
    *,
    concurrency: int = 64,
    duration_s: int = 5,
    requests: int = 5000,
    threads: int = 1,
) -> LoadResult:
    """POST ``bodies`` (rotating) to ``url + path`` from a separate process.

    Uses wrk for ``duration_s`` seconds when installed, else the Python generator for
    ``requests`` requests.
    """
    if shutil.which("wrk"):
        return _run_wrk(url, path, headers, bodies, concurrency, duration_s, threads)
    return _run_python(url, path, headers, bodies, concurrency, requests)


def load_table(
    title: str,
    first_column: str,
    results: Mapping[str, LoadResult],
    base_rps: float,
    ratio_column: str,
    *,
    decimals: int = 2,
) -> Table:
    """A Rich table of load results, one row per label, throughput relative to ``base_rps``."""
    table = Table(title=title)
    columns = (first_column, "tool", "requests", "errors", "req/s", "p50 ms", "p99 ms")
    for column in (*columns, ratio_column):
        table.add_column(column, justify="left" if column in (first_column, "tool") else "right")
    for label, r in results.items():
        table.add_row(
            label,
            r.tool,
            f"{r.requests:,}",
            str(r.errors),
            f"{r.rps:,.0f}",
            f"{r.p50_ms:.{decimals}f}",
            f"{r.p99_ms:.{decimals}f}",
            f"{r.rps / base_rps:.2f}",
        )
    return table


def write_result(name: str, data: dict[str, object]) -> Path:
    """Write ``benchmarks/results/<name>.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


OPERATOR_TOKEN = "pml_op_benchmark-operator-token"


def provision(
    url: str, model: str, schema: dict[str, object], variants: list[tuple[dict[str, object], Path]]
) -> tuple[str, str]:
    """Create an app, a model and a production version; return (admin token, device key)."""
    from pocketml.server.client import AdminClient

    with AdminClient(url, OPERATOR_TOKEN) as operator:
        created = operator.create_app(f"bench-{model}-{os.getpid()}")
    with AdminClient(url, created.admin_token) as admin:
        admin.create_model(model, schema=schema)
        version = admin.push_files(
            model, {"variants": [m for m, _ in variants]}, {m["name"]: p for m, p in variants}
        )  # type: ignore[misc]
        admin.set_stage(model, version.version, "production")
    return created.admin_token, created.device_key


def variant_entry(
    path: Path, name: str, fmt: str = "onnx", role: str = "cloud"
) -> tuple[dict[str, object], Path]:
    """A VersionCreate variant entry for a model file."""
    import hashlib

    return (
        {
            "name": name,
            "format": fmt,
            "precision": "fp32",
            "role": role,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        },
        path,
    )
