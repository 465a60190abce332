"""Tables at 80 columns show every variant, model and metric name whole (never "…")."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from rich.console import Console

from pocketml.bench import BUILTIN_PROFILES, BenchmarkResult, results_table
from pocketml.cli import _common
from pocketml.cli._rollout import _show
from pocketml.optimize import Selection, selections_table

NAMES = (
    "mobilenet-style-residual-onnx-static-int8",
    "sensor-cnn1d-tflite-full-int8",
    "logistic-regression-ort-dynamic-int8",
)


def _result(name: str) -> BenchmarkResult:
    return BenchmarkResult(
        name=name,
        path=f"{name}.onnx",
        model_format="onnx",
        precision="int8",
        method="static",
        size_bytes=123_456,
        zip_size_bytes=100_000,
        is_executed=True,
        threads=1,
        load_ms=12.3,
        latency_p50_ms=0.123,
        latency_p95_ms=0.456,
        latency_p99_ms=0.789,
        throughput_per_s=12_345.0,
        peak_memory_mb=56.7,
        accuracy=0.9812,
        macro_f1=0.97,
        agreement=0.99,
        note="a quantized file that is not smaller than fp32 is flagged here",
    )


def _render(renderable: object, width: int = 80) -> str:
    console = Console(width=width, record=True)
    console.print(renderable)
    return console.export_text()


def test_the_results_table_shows_every_variant_name_whole_at_80_columns() -> None:
    text = _render(results_table([_result(n) for n in NAMES], width=80))

    assert all(name in text for name in NAMES), text
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_the_results_table_names_the_columns_it_drops() -> None:
    text = _render(results_table([_result(n) for n in NAMES], width=80))

    assert "not shown at 80 columns: " in text
    assert "batch-32/s" in text  # named in the caption instead


def test_a_wide_terminal_shows_every_results_column() -> None:
    table = results_table([_result(n) for n in NAMES], width=200)

    assert len(table.columns) == 15
    assert table.caption is None


def test_the_selections_table_shows_profile_and_variant_names_whole() -> None:
    profiles = [BUILTIN_PROFILES[p] for p in ("android-low", "edge-linux", "android-high")]
    selections = [
        Selection(p, _result(n), 1.23, (), f"{n}: best accuracy among 3 fitting variant(s)")
        for p, n in zip(profiles, NAMES, strict=True)
    ]

    text = _render(selections_table(selections, width=80))

    assert all(name in text for name in (*NAMES, "android-low", "edge-linux", "android-high"))
    assert "…" not in text


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Console:
    console = Console(width=80, record=True)
    monkeypatch.setattr(_common, "console", console)
    return console


def test_cli_tables_keep_names_whole_at_80_columns(recorded: Console) -> None:
    _common.print_table(
        "digits v3 (candidate)",
        ["variant", "format", "precision", "size", "package", "encrypted"],
        [(n, "onnx", "int8", "123456", "a" * 16, "no") for n in NAMES],
    )

    text = recorded.export_text()
    assert all(name in text for name in NAMES), text
    assert "…" not in text


def test_a_rollout_shows_its_metric_names_whole(recorded: Console) -> None:
    metrics = ["accuracy", "latency_p95_ms", "error_rate", "cloud_fallback_share"]
    # _show reads attributes only: a namespace stands in for the API's RolloutPublic
    rollout = SimpleNamespace(
        **{
            "id": "a" * 32,
            "model": "a-model-with-a-rather-long-name",
            "channel": "production",
            "candidate_version": 2,
            "control_version": 1,
            "state": "running",
            "step": 0,
            "schedule": [1, 5, 25, 100],
            "percent": 1,
            "min_dwell_s": 3600,
            "min_samples": 200,
            "on_breach": "rollback",
            "evaluated_at": None,
            "metrics": [
                SimpleNamespace(
                    metric=m,
                    candidate=0.9,
                    control=0.91,
                    n_candidate=1234,
                    n_control=5678,
                    threshold=0.01,
                    test="two-proportion z-test",
                    p_value=0.0123,
                    status="ok",
                )
                for m in metrics
            ],
        }
    )

    _show(rollout)  # type: ignore[arg-type]

    text = recorded.export_text()
    assert all(m in text for m in metrics), text
    assert "a-model-with-a-rather-long-name" in text
    assert "…" not in text
