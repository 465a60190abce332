"""Push and download packages through a real server: throughput and peak server memory.

For a 20 MB and a 200 MB model file, a fresh ``pocketml server`` subprocess (SQLite, local
artifacts) receives a streamed multipart push (the server hashes, signs and stores the
package) and then streams the package back. Reported: MB/s each way and the server's peak
RSS, which should not grow with the package size (uploads are spooled to disk in chunks
and downloads streamed 1 MiB at a time). Prints a Rich table and writes
``benchmarks/results/registry_push_download.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server_process import OPERATOR_TOKEN, peak_rss_mb, server_process

from pocketml.server.client import AdminClient

SIZES_MB = (20, 200)
SCHEMA = {
    "format_version": 1,
    "name": "bench",
    "inputs": [{"name": "x", "dtype": "float32", "shape": [None, 4], "layout": "NC"}],
    "outputs": [{"name": "p", "kind": "probabilities", "labels": ["a", "b"]}],
}


def _model_file(path: Path, size_mb: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        for _ in range(size_mb):
            chunk = os.urandom(1 << 20)
            digest.update(chunk)
            handle.write(chunk)
    return digest.hexdigest()


def run_one(workdir: Path, size_mb: int) -> dict[str, float]:
    """Push and download one package of ``size_mb`` through a fresh server."""
    model = workdir / f"model-{size_mb}.onnx"
    sha = _model_file(model, size_mb)
    home = workdir / f"home-{size_mb}"
    with server_process(home, POCKETML_SERVER__LIMITS__MAX_UPLOAD_MB="1024") as (process, url):
        baseline = peak_rss_mb(process.pid)
        with AdminClient(url, OPERATOR_TOKEN, timeout=300) as operator:
            created = operator.create_app("bench")
        with AdminClient(url, created.admin_token, timeout=300) as client:
            client.create_model("bench", SCHEMA)
            meta = {
                "variants": [{"name": "v", "format": "onnx", "precision": "fp32", "sha256": sha}]
            }
            started = time.perf_counter()
            version = client.push_files("bench", meta, {"v": model})
            push_s = time.perf_counter() - started
            package_id = version.variants[0].package_id
            started = time.perf_counter()
            out = client.download_package(package_id, workdir / f"download-{size_mb}.zip")
            download_s = time.perf_counter() - started
        peak = peak_rss_mb(process.pid)
    size = out.stat().st_size / 1e6
    model_mb = model.stat().st_size / 1e6
    out.unlink()
    model.unlink()
    return {
        "model_mb": model_mb,
        "package_mb": size,
        "push_mb_s": model_mb / push_s,
        "download_mb_s": size / download_s,
        "push_s": push_s,
        "download_s": download_s,
        "server_rss_idle_mb": baseline,
        "server_peak_rss_mb": peak,
    }


def main() -> None:
    """Run the benchmark, print the table, write the JSON."""
    with tempfile.TemporaryDirectory(prefix="pocketml-bench-") as tmp:
        rows = [run_one(Path(tmp), size) for size in SIZES_MB]
    table = Table(title="registry push/download through a real server (SQLite, local disk)")
    for column in (
        "package MB",
        "push MB/s",
        "download MB/s",
        "push s",
        "download s",
        "server RSS idle MB",
        "server peak RSS MB",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            f"{row['package_mb']:.1f}",
            f"{row['push_mb_s']:.1f}",
            f"{row['download_mb_s']:.1f}",
            f"{row['push_s']:.2f}",
            f"{row['download_s']:.2f}",
            f"{row['server_rss_idle_mb']:.0f}",
            f"{row['server_peak_rss_mb']:.0f}",
        )
    Console().print(table)
    out = Path(__file__).resolve().parent / "results" / "registry_push_download.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"runs": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
