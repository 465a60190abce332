"""Benchmarks of model variants and the device profiles they are judged against.

- :class:`Benchmark` measures size, zip size, load time, latency p50/p95/p99 (batch 1),
  throughput (batch 32), peak memory and accuracy / macro-F1 / top-1 agreement, each
  variant in its own subprocess with the real runtime of its format.
- :class:`DeviceProfile`, ``BUILTIN_PROFILES`` and :func:`load_profiles` describe device
  classes; latency on a profile is an estimate from the host (see profiles.py).
"""

from pocketml.bench.benchmark import (
    Benchmark,
    BenchmarkError,
    BenchmarkResult,
    Variant,
    VariantLike,
    macro_f1,
    zip_size,
)
from pocketml.bench.profiles import BUILTIN_PROFILES, KNOWN_FORMATS, DeviceProfile, load_profiles
from pocketml.bench.report import print_results, results_table

__all__ = [
    "BUILTIN_PROFILES",
    "KNOWN_FORMATS",
    "Benchmark",
    "BenchmarkError",
    "BenchmarkResult",
    "DeviceProfile",
    "Variant",
    "VariantLike",
    "load_profiles",
    "macro_f1",
    "print_results",
    "results_table",
    "zip_size",
]
