"""Benchmark one model file in a fresh process: ``python -m pocketml.bench._worker JOB``.

The parent (:mod:`pocketml.bench.benchmark`) writes a JSON job file and reads the JSON
result this process writes to the job's ``output_path`` (not stdout: runtimes print
there). Running each variant in its own process keeps peak
memory honest. Peak RSS is a high-water mark of the whole process, so the baseline is
taken after the runtime and the evaluation data are loaded, and the reported peak is the
growth above it while the model loads and runs. Where Linux allows it, the high-water mark
is first reset to the current RSS (``/proc/self/clear_refs``), so a transient peak during
imports cannot hide the model's memory; see ``_peak_rss_mb`` for why ``VmHWM`` is read
before ``ru_maxrss``.

Job fields: ``path``, ``model_format``, ``threads``, ``warmup``, ``iterations``,
``throughput_batch``, ``throughput_iterations``, ``data_path`` (an .npy of inputs),
``output_path``.
Output: ``{"ok": true, "load_ms", "latencies_ms", "throughput_per_s", "peak_memory_mb",
"predictions"}`` or ``{"ok": false, "code", "message"}``.
"""

from __future__ import annotations

import contextlib
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from pocketml.convert.runtime import open_runner
from pocketml.errors import PocketMLError


def _peak_rss_mb() -> float:
    """Peak resident memory of this process image, in MB.

    ``VmHWM`` from /proc is preferred: ``ru_maxrss`` also carries the peak of the parent
    image this process was forked from (Linux keeps it across exec), so under a large
    parent (pytest with torch loaded) it never moves. Elsewhere ``ru_maxrss`` is used.
    """
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_peak() -> None:
    """Reset the high-water mark to the current RSS (Linux >= 4.0), so the import-time
    peak does not hide the model's growth; without it the baseline is the earlier peak."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")


def _import_runtime(model_format: str) -> None:
    """Import the runtime before the memory baseline so its code is not counted."""
    if model_format == "tflite":
        import ai_edge_litert.interpreter  # noqa: F401
    else:
        import onnxruntime  # noqa: F401


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """Run one benchmark job (see the module docstring) and return its measurements.

    Args:
        job: the decoded job document.

    Returns:
        The measurements, JSON-ready.

    Raises:
        PocketMLError: the model cannot be loaded or run.
    """
    model_format = str(job["model_format"])
    _import_runtime(model_format)
    data = np.load(job["data_path"]).astype(np.float32, copy=False)
    _reset_peak()
    baseline = _peak_rss_mb()

    start = time.perf_counter()
    runner = open_runner(Path(job["path"]), model_format, threads=int(job["threads"]))
    runner.run(data[:1])  # first inference finishes lazy initialisation; part of loading
    load_ms = (time.perf_counter() - start) * 1000.0

    for i in range(int(job["warmup"])):
        runner.run(data[i % len(data) : i % len(data) + 1])
    latencies = []
    for i in range(int(job["iterations"])):
        sample = data[i % len(data) : i % len(data) + 1]
        t0 = time.perf_counter()
        runner.run(sample)
        latencies.append((time.perf_counter() - t0) * 1000.0)

    batch_size = int(job["throughput_batch"])
    batch = np.resize(data, (batch_size, *data.shape[1:]))
    runner.run(batch)  # warm-up at this batch size (TFLite resizes its tensors once)
    rounds = int(job["throughput_iterations"])
    t0 = time.perf_counter()
    for _ in range(rounds):
        runner.run(batch)
    throughput = batch_size * rounds / (time.perf_counter() - t0)

    predictions: list[int] = []
    for start_row in range(0, len(data), batch_size):
        chunk = data[start_row : start_row + batch_size]
        predictions.extend(int(p) for p in np.argmax(runner.run(chunk), axis=1))
    return {
        "ok": True,
        "load_ms": load_ms,
        "latencies_ms": latencies,
        "throughput_per_s": throughput,
        "peak_memory_mb": max(0.0, _peak_rss_mb() - baseline),
        "predictions": predictions,
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the job file named by the first argument, write its result.

    Returns:
        0 when the result (or a reported error) was written; 2 on a bad invocation.
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m pocketml.bench._worker JOB.json\n")
        return 2
    job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    try:
        result = measure(job)
    except PocketMLError as exc:
        result = {"ok": False, "code": exc.code, "message": str(exc)}
    except Exception as exc:  # report anything else as data; the parent raises it
        result = {
            "ok": False,
            "code": "benchmark_failed",
            "message": f"{type(exc).__name__}: {exc}",
        }
    Path(job["output_path"]).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
