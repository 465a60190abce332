"""The ship pages' view builders (``console/_ship_views.py``) on constructed values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pocketml.delivery import Rollout
from pocketml.registry import VariantInfo, VersionInfo
from pocketml.server.console import _ship_views as views
from pocketml.telemetry import MetricsRow

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def variant(name: str, fmt: str, precision: str, size: int, **fields: Any) -> VariantInfo:
    values: dict[str, Any] = {
        "id": name,
        "name": name,
        "format": fmt,
        "precision": precision,
        "role": "device",
        "size": size,
        "sha256": "0" * 64,
        "package_id": "1" * 64,
        "package_size": size + 100,
        "signing_key_id": "k",
        "content_key_id": None,
        "compatibility": {},
        "metrics": {},
        "benchmarks": {},
        "profiles": [],
        "created_at": T0,
    }
    values.update(fields)
    return VariantInfo(**{k: v for k, v in values.items() if k in VariantInfo.__dataclass_fields__})


def version(number: int, variants: tuple[VariantInfo, ...] = (), **fields: Any) -> VersionInfo:
    values: dict[str, Any] = {
        "id": f"v{number}",
        "model": "digits",
        "version": number,
        "stage": "candidate",
        "dataset_fingerprint": None,
        "parent_version": None,
        "source_framework": None,
        "params": {},
        "metrics": {},
        "run_record": {},
        "card": "",
        "created_at": T0,
        "variants": variants,
    }
    values.update(fields)
    return VersionInfo(**{k: v for k, v in values.items() if k in VersionInfo.__dataclass_fields__})


def rollout(candidate: int, control: int | None, percent: float, state: str = "running") -> Rollout:
    return Rollout(
        id=f"r{candidate}",
        app_id="app",
        model_id="m",
        model="digits",
        channel="production",
        candidate_version=candidate,
        control_version=control,
        state=state,
        schedule=(percent, 100.0),
        step=0,
        percent=percent,
        min_dwell_s=60,
        min_samples=5,
        on_breach="rollback",
        guardrails={},
        targeting=[],
        salt="s",
        step_started_at=T0,
        last_evaluation={},
        created_by="admin",
        created_at=T0,
        updated_at=T0,
    )


def metrics_row(version: int, device_class: str, count: int, **fields: Any) -> MetricsRow:
    values: dict[str, Any] = {
        "version": version,
        "device_class": device_class,
        "count": count,
        "errors": 0,
        "latency_p50_ms": None,
        "latency_p95_ms": None,
        "error_rate": None,
        "cloud_share": None,
        "fallback_share": None,
        "mean_confidence": None,
        "feedback_count": 0,
        "accuracy": None,
    }
    values.update(fields)
    return MetricsRow(**values)


def test_flatten_turns_nested_metrics_into_labelled_formatted_rows() -> None:
    rows = views.flatten(
        {
            "accuracy": 0.9612345678,
            "onnx": {"accuracy": 0.97, "macro_f1": None},
            "tags": ["a", "b"],
            "empty": "",
            "ok": True,
            "n": 12345,
        }
    )
    assert rows == [
        ("accuracy", "0.961"),
        ("onnx · accuracy", "0.97"),
        ("onnx · macro_f1", "—"),
        ("tags", "a, b"),
        ("empty", "—"),
        ("ok", "yes"),
        ("n", "12,345"),
    ]


def test_flatten_stops_at_three_levels_and_two_hundred_rows() -> None:
    deep = {"a": {"b": {"c": {"d": {"e": 1}}}}}
    assert views.flatten(deep) == [("a · b · c · d", "1 entry")]
    assert len(views.flatten({str(i): i for i in range(500)})) == 200


def test_traffic_sums_the_api_groups_exactly_and_names_the_worst_p95() -> None:
    rows = [
        metrics_row(
            1,
            "android-mid",
            30,
            errors=10,
            latency_p95_ms=12.0,
            cloud_share=0.5,
            feedback_count=10,
            accuracy=0.9,
        ),
        metrics_row(
            2,
            "android-low",
            10,
            latency_p95_ms=40.0,
            cloud_share=0.0,
            feedback_count=30,
            accuracy=0.5,
        ),
    ]
    total = views.traffic(rows)
    assert total is not None
    assert (total.inferences, total.errors, total.feedback) == (40, 10, 40)
    assert total.error_rate == pytest.approx(10 / 50)
    assert total.cloud_share == pytest.approx(15 / 40)
    assert total.accuracy == pytest.approx((9 + 15) / 40)
    assert (total.p95_worst_ms, total.p95_worst_group) == (40.0, "v2 on android-low")
    assert views.traffic([]) is None


def test_rollout_share_gives_the_candidate_its_percent_and_the_control_the_rest() -> None:
    shares = views.rollout_share(
        [rollout(2, 1, 10.0), rollout(3, None, 50.0, "completed")], "digits"
    )
    assert {v: [s for _, s in items] for v, items in shares.items()} == {2: [10.0], 1: [90.0]}


@pytest.mark.parametrize(
    ("action", "link"),
    [
        ("advance", "/ui/rollouts/abc"),
        ("create", "/ui/rollouts/abc"),
        ("experiment.stop", "/ui/experiments/abc"),
        ("alert.ack", "/ui/alerts"),
        ("keys.rotate", None),
    ],
)
def test_an_audit_entry_links_to_the_page_of_its_subject(action: str, link: str | None) -> None:
    assert views.audit_link(action, "abc") == link


def test_variants_are_laid_out_as_format_by_precision() -> None:
    grid = views.variant_grid(
        [
            variant("tfl-int8", "tflite", "int8", 10),
            variant("onnx-fp32", "onnx", "fp32", 30),
            variant("onnx-int8", "onnx", "int8", 9),
        ]
    )
    assert grid.formats == ("onnx", "tflite")
    assert grid.precisions == ("fp32", "int8")
    assert [v.name for v in grid.cells[("onnx", "int8")].variants] == ["onnx-int8"]
    assert ("tflite", "fp32") not in grid.cells


def test_the_schema_becomes_tables_of_inputs_outputs_and_the_rest() -> None:
    tables = views.schema_tables(
        {
            "name": "digits",
            "inputs": [{"name": "pixels", "dtype": "float32", "shape": [None, 64], "layout": "NC"}],
            "outputs": [
                {"name": "p", "kind": "probabilities", "labels": [str(i) for i in range(150)]}
            ],
        }
    )
    (pixels,) = tables["inputs"]
    assert (pixels["shape"], pixels["other"]) == ("[?, 64]", [("layout", "NC")])
    (out,) = tables["outputs"]
    assert (out["label_count"], len(out["labels"])) == (150, 100)
    assert tables["other"] == [("name", "digits")]


def test_lineage_names_the_builds_and_the_run_records_fingerprints() -> None:
    info = version(
        2,
        dataset_fingerprint="sha256:dataset",
        parent_version=1,
        run_record={
            "run_id": "r1",
            "dataset": {
                "name": "digits",
                "fingerprint": "splits:a,b,c",
                "fingerprints": {"dataset": "sha256:dataset", "extra": None, "training": "t"},
            },
            "git": {"commit": "abc123"},
        },
    )
    lineage = views.lineage(info)
    assert lineage.dataset_fingerprint == "sha256:dataset"
    assert lineage.training_fingerprint == "splits:a,b,c"
    assert lineage.fingerprints_differ
    assert lineage.split_fingerprints == (("dataset", "sha256:dataset"), ("training", "t"))
    assert (lineage.run_id, lineage.git_commit, lineage.dataset_name) == ("r1", "abc123", "digits")
    assert not views.lineage(version(1)).fingerprints_differ


def test_two_versions_compare_on_the_union_of_their_numbers() -> None:
    a = version(1, (variant("onnx", "onnx", "fp32", 100),), metrics={"accuracy": 0.9, "f1": 0.8})
    b = version(
        2,
        (variant("onnx", "onnx", "fp32", 80), variant("tfl", "tflite", "int8", 20)),
        metrics={"accuracy": 0.95, "note": "x", "onnx": {"accuracy": 0.94}},
    )
    metrics = {row.label: (row.a, row.b, row.difference) for row in views.compare_metrics(a, b)}
    assert metrics["accuracy"] == (0.9, 0.95, pytest.approx(0.05))
    assert metrics["f1"] == (0.8, None, None)
    assert metrics["onnx · accuracy"] == (None, 0.94, None)
    assert "note" not in metrics
    sizes = {row.label: row.difference for row in views.compare_sizes(a, b)}
    assert sizes == {"onnx": -20.0, "tfl": None}


def test_each_step_is_reached_at_creation_or_at_its_advance() -> None:
    from datetime import timedelta

    from pocketml.delivery import AuditEntry

    def entry(action: str, minutes: int) -> AuditEntry:
        return AuditEntry(
            1, "r", action, "running", "running", "admin", "", {}, T0 + timedelta(minutes=minutes)
        )

    moving = rollout(2, 1, 10.0)
    moving = type(moving)(**{**moving.__dict__, "schedule": (10.0, 50.0, 100.0)})
    trail = [entry("pause", 5), entry("advance", 30), entry("create", 0)]
    assert views.step_times(moving, trail) == [T0, T0 + timedelta(minutes=30), None]
