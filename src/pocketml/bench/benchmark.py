"""Benchmark model variants: size, load time, latency, throughput, memory and accuracy.

Each runnable variant (onnx, ort, tflite) is measured in its own subprocess
(``python -m pocketml.bench._worker``) with the real runtime of its format, so one
variant's memory never inflates another's. Core ML variants cannot run on Linux: they get
file and zip sizes only, and their result says so. Accuracy, macro-F1 and top-1 agreement
with the reference (fp32) variant are computed here from the predictions the workers
return on the held-out inputs.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pocketml.errors import InvalidInput, PocketMLError

__all__ = [
    "Benchmark",
    "BenchmarkError",
    "BenchmarkResult",
    "Variant",
    "VariantLike",
    "macro_f1",
    "zip_size",
]

RUNNABLE = ("onnx", "ort", "tflite")
SIZE_ONLY_NOTE = "size only: Core ML cannot execute on this host"


class BenchmarkError(PocketMLError):
    """A variant could not be benchmarked (its worker failed or timed out)."""

    code = "benchmark_failed"


class VariantLike(Protocol):
    """Anything describing a model file: a :class:`Variant` or a ``QuantizedModel``."""

    @property
    def name(self) -> str: ...
    @property
    def path(self) -> Path: ...
    @property
    def model_format(self) -> str: ...
    @property
    def precision(self) -> str: ...
    @property
    def method(self) -> str: ...


@dataclass(frozen=True)
class Variant:
    """A model file to benchmark, e.g. the fp32 model straight from ``pocketml.convert``.

    Attributes:
        name: label in tables and selections; unique within one run.
        path: the model file (a directory for ``.mlpackage``).
        model_format: "onnx", "ort", "tflite" or "coreml".
        precision: "fp32", "fp16" or "int8".
        method: how it was made: "none" (plain conversion), "dynamic", "static", "fp16"...
    """

    name: str
    path: Path
    model_format: str
    precision: str = "fp32"
    method: str = "none"


@dataclass(frozen=True)
class BenchmarkResult:
    """Measurements of one variant on this host. Timing fields are None when size-only."""

    name: str
    path: str
    model_format: str
    precision: str
    method: str
    size_bytes: int
    zip_size_bytes: int
    is_executed: bool
    threads: int
    load_ms: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    throughput_per_s: float | None = None
    peak_memory_mb: float | None = None
    accuracy: float | None = None
    macro_f1: float | None = None
    agreement: float | None = None
    reference: str | None = None
    note: str = ""

    @property
    def size_mb(self) -> float:
        """File size in MB (10**6 bytes)."""
        return self.size_bytes / 1e6

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)


def zip_size(path: Path) -> int:
    """Bytes of ``path`` (a file or a directory) compressed into a deflate zip.

    Args:
        path: a model file or an ``.mlpackage`` directory.

    Returns:
        The size of the zip archive in bytes: what a download would cost.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            archive.write(file, arcname=str(file.relative_to(path.parent)))
    return len(buffer.getvalue())


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def macro_f1(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes present in labels or predictions.

    Args:
        labels: true class ids, shape (N,).
        predictions: predicted class ids, shape (N,).

    Returns:
        Macro-F1 in [0, 1].
    """
    classes = np.union1d(labels, predictions)
    scores = []
    for c in classes:
        tp = float(np.sum((predictions == c) & (labels == c)))
        fp = float(np.sum((predictions == c) & (labels != c)))
        fn = float(np.sum((predictions != c) & (labels == c)))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(scores))


@dataclass(frozen=True)
class Benchmark:
    """Measures variants, each in its own subprocess.

    Args:
        warmup: batch-1 runs before timing.
        iterations: timed batch-1 runs (latency percentiles).
        throughput_batch: batch size of the throughput measurement.
        throughput_iterations: timed runs at that batch size.
        threads: intra-op threads (1 mirrors a phone's single inference thread).
        timeout_s: longest a worker may take before it is stopped.
    """

    warmup: int = 20
    iterations: int = 200
    throughput_batch: int = 32
    throughput_iterations: int = 20
    threads: int = 1
    timeout_s: float = 600.0

    def run(
        self,
        variants: Sequence[VariantLike],
        inputs: np.ndarray,
        labels: np.ndarray,
        *,
        reference: str | None = None,
        show_progress: bool = True,
    ) -> list[BenchmarkResult]:
        """Benchmark every variant on the held-out ``inputs``/``labels``.

        Args:
            variants: the files to measure; names must be unique.
            inputs: held-out inputs, float32, shape (N, ...).
            labels: their class ids, shape (N,).
            reference: name of the variant predictions are compared with (top-1
                agreement); default: the first fp32 variant that can run.
            show_progress: draw a Rich progress bar over the variants.

        Returns:
            One result per variant, in the given order.

        Raises:
            InvalidInput: bad parameters, data, or variant names.
            BenchmarkError: a worker failed or timed out; the message names the variant.
        """
        inputs, labels = self._check(variants, inputs, labels)
        with tempfile.TemporaryDirectory(prefix="pocketml-bench-") as work:
            data_path = Path(work) / "inputs.npy"
            np.save(data_path, inputs)
            raw = self._measure_all(variants, data_path, Path(work), show_progress)
        executed = [v.name for v, r in zip(variants, raw, strict=True) if r is not None]
        ref = reference or next(
            (v.name for v in variants if v.precision == "fp32" and v.name in executed), None
        )
        if ref is not None and ref not in executed:
            raise InvalidInput(
                f"reference must name a runnable variant ({', '.join(executed)}); got {ref!r}."
            )
        ref_predictions = None
        if ref is not None:
            ref_raw = raw[[v.name for v in variants].index(ref)]
            ref_predictions = np.asarray(ref_raw["predictions"]) if ref_raw else None
        return [
            self._result(v, r, labels, ref, ref_predictions)
            for v, r in zip(variants, raw, strict=True)
        ]

    def _check(
        self, variants: Sequence[VariantLike], inputs: np.ndarray, labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        names = [v.name for v in variants]
        if not variants or len(set(names)) != len(names):
            raise InvalidInput(
                f"expected at least one variant, with unique names; got {names}. "
                "Rename the duplicate files or pass Variant(name=...)."
            )
        inputs = np.asarray(inputs, dtype=np.float32)
        labels = np.asarray(labels).astype(np.int64)
        if inputs.ndim < 2 or len(inputs) == 0 or labels.shape != (len(inputs),):
            raise InvalidInput(
                f"expected inputs (N, ...) with N >= 1 and labels (N,); got inputs "
                f"{inputs.shape} and labels {labels.shape}. Pass the held-out split."
            )
        if min(self.warmup, self.iterations - 1, self.throughput_batch - 1) < 0 or (
            self.throughput_iterations < 1 or self.threads < 1
        ):
            raise InvalidInput(
                "iterations, throughput_batch, throughput_iterations and threads must be "
                f">= 1 and warmup >= 0; got {self}."
            )
        return inputs, labels

    def _measure_all(
        self, variants: Sequence[VariantLike], data: Path, work: Path, show_progress: bool
    ) -> list[dict[str, Any] | None]:
        from rich.progress import Progress

        raw: list[dict[str, Any] | None] = []
        with Progress(disable=not show_progress, transient=True) as progress:
            task = progress.add_task("benchmarking", total=len(variants))
            for index, variant in enumerate(variants):
                progress.update(task, description=f"benchmarking {variant.name}")
                if not Path(variant.path).exists():
                    raise InvalidInput(
                        f"variant {variant.name!r}: file {str(variant.path)!r} does not exist."
                    )
                is_runnable = variant.model_format in RUNNABLE
                raw.append(self._run_worker(variant, data, work, index) if is_runnable else None)
                progress.advance(task)
        return raw

    def _run_worker(
        self, variant: VariantLike, data: Path, work: Path, index: int
    ) -> dict[str, Any]:
        job_path, out_path = work / f"job{index}.json", work / f"out{index}.json"
        job = {
            "path": str(variant.path),
            "model_format": variant.model_format,
            "threads": self.threads,
            "warmup": self.warmup,
            "iterations": self.iterations,
            "throughput_batch": self.throughput_batch,
            "throughput_iterations": self.throughput_iterations,
            "data_path": str(data),
            "output_path": str(out_path),
        }
        job_path.write_text(json.dumps(job), encoding="utf-8")
        command = [sys.executable, "-m", "pocketml.bench._worker", str(job_path)]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=self.timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchmarkError(
                f"benchmark of {variant.name} did not finish within {self.timeout_s:.0f} s; "
                "lower iterations or raise timeout_s."
            ) from exc
        if not out_path.is_file():
            raise BenchmarkError(
                f"benchmark worker for {variant.name} exited with code {done.returncode} "
                f"without a result: {done.stderr.strip()[-500:]}"
            )
        result: dict[str, Any] = json.loads(out_path.read_text(encoding="utf-8"))
        if not result.get("ok"):
            raise BenchmarkError(
                f"benchmark of {variant.name} ({variant.model_format}) failed: "
                f"{result.get('message')}"
            )
        return result

    def _result(
        self,
        variant: VariantLike,
        raw: dict[str, Any] | None,
        labels: np.ndarray,
        reference: str | None,
        ref_predictions: np.ndarray | None,
    ) -> BenchmarkResult:
        path = Path(variant.path)
        common: dict[str, Any] = {
            "name": variant.name,
            "path": str(path),
            "model_format": variant.model_format,
            "precision": variant.precision,
            "method": variant.method,
            "size_bytes": _size(path),
            "zip_size_bytes": zip_size(path),
            "threads": self.threads,
        }
        if raw is None:
            return BenchmarkResult(**common, is_executed=False, note=SIZE_ONLY_NOTE)
        predictions = np.asarray(raw["predictions"])
        latencies = np.asarray(raw["latencies_ms"])
        agreement = None
        if ref_predictions is not None:
            agreement = float(np.mean(predictions == ref_predictions))
        p50, p95, p99 = (float(np.percentile(latencies, q)) for q in (50, 95, 99))
        return BenchmarkResult(
            **common,
            is_executed=True,
            load_ms=float(raw["load_ms"]),
            latency_p50_ms=p50,
            latency_p95_ms=p95,
            latency_p99_ms=p99,
            throughput_per_s=float(raw["throughput_per_s"]),
            peak_memory_mb=float(raw["peak_memory_mb"]),
            accuracy=float(np.mean(predictions == labels)),
            macro_f1=macro_f1(labels, predictions),
            agreement=agreement,
            reference=reference,
        )
