"""MonitorService: drift and accuracy reports from stored sketches, on SQLite and PostgreSQL.

Sketches are built from known distributions with ``profile.sketch(...)`` and stored with
``add_sketches`` (what intake does); feedback goes through ``TelemetryService``. The
clock is fixed, so every window is exact.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pocketml.db import WRITE
from pocketml.errors import InvalidInput, NotFound
from pocketml.monitor import (
    HEALTH_METRICS,
    MetricReading,
    MonitorService,
    ReferenceProfile,
    Sketch,
    SketchAddition,
    SketchKey,
    add_sketches,
    parse_window,
)
from pocketml.protect import MasterKey
from pocketml.registry import LocalArtifactStore, ModelCreate, Registry
from pocketml.telemetry import Feedback, TelemetryBatch, TelemetryService
from pocketml.testing import (
    DIGITS_SCHEMA,
    model_variant,
    monitor_profile,
    monitor_rows,
    push_to_registry,
    store_sketches,
)

HOUR = 3600
T0 = 1_795_240_000 - 1_795_240_000 % HOUR  # an hour boundary
NOW = T0 + 3 * HOUR  # reports end here: the stored hours are T0, T0+1h, T0+2h
ROWS = 600  # per device class per hour


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    return monitor_profile()


@pytest.fixture
def registry(database_url: str, tmp_path: Path) -> Iterator[Registry]:
    master = MasterKey.from_b64(base64.b64encode(bytes(range(32))).decode("ascii"))
    with Registry(database_url, LocalArtifactStore(tmp_path / "artifacts"), master) as opened:
        yield opened


@pytest.fixture
def telemetry(registry: Registry) -> TelemetryService:
    service = TelemetryService(registry, None, clock=lambda: NOW)
    service.open()
    return service


@pytest.fixture
def service(registry: Registry, telemetry: TelemetryService) -> MonitorService:
    return MonitorService(registry, telemetry, clock=lambda: NOW)


@pytest.fixture
def app_id(registry: Registry, profile: ReferenceProfile, tmp_path: Path) -> str:
    """An app whose model 'digits' has version 1 (with the profile) in production."""
    app = registry.create_app("monitor").app.id
    registry.create_model(app, ModelCreate(name="digits", schema=DIGITS_SCHEMA))
    variant = model_variant(tmp_path, "onnx-fp32")
    push_to_registry(registry, app, "digits", [variant], reference_profile=profile.to_dict())
    registry.set_stage(app, "digits", 1, "production")
    return app


def store(
    registry: Registry,
    app_id: str,
    profile: ReferenceProfile,
    device_class: str,
    *,
    start: int = T0,
    rows: int = ROWS,
    **options: Any,
) -> None:
    """Store one sketch per hour (3 hours from ``start`` unless told) for a device class."""
    store_sketches(
        registry.store.engine, app_id, profile, device_class, start=start, rows=rows, **options
    )


# -- drift ---------------------------------------------------------------------------------


def test_a_fleet_that_sees_the_reference_distribution_has_no_drift(
    service: MonitorService, registry: Registry, app_id: str, profile: ReferenceProfile
) -> None:
    store(registry, app_id, profile, "phone", seed=11)
    store(registry, app_id, profile, "tablet", seed=12)

    report = service.drift(app_id, "digits")

    assert report.version == 1 and (report.since, report.until) == (NOW - 86_400, NOW)
    assert report.fleet.state == "no_drift" and report.fleet.drifted_share == 0.0
    assert report.fleet.n == 2 * 3 * ROWS and report.fleet.events == 6
    assert [(g.labels, g.state) for g in report.groups] == [
        ({"device_class": "phone"}, "no_drift"),
        ({"device_class": "tablet"}, "no_drift"),
    ]


def test_a_shift_on_one_device_class_is_drift_there_only(
    service: MonitorService, registry: Registry, app_id: str, profile: ReferenceProfile
) -> None:
    store(registry, app_id, profile, "phone", seed=21)
    store(registry, app_id, profile, "tablet", seed=22, shift=1.0)

    report = service.drift(app_id, "digits")

    states = {g.labels["device_class"]: g.state for g in report.groups}
    assert states == {"phone": "no_drift", "tablet": "drift"}
    tablet = next(g for g in report.groups if g.labels["device_class"] == "tablet")
    assert tablet.features[0].name == "x0" and tablet.features[0].state == "drift"
    assert [f.state for f in tablet.features[1:]] == ["no_drift", "no_drift"]
    assert tablet.drifted_share == pytest.approx(1 / 3)
    assert report.fleet.state == "drift"


def test_histograms_carry_counts_labels_and_edges_a_plot_can_draw(
    service: MonitorService, registry: Registry, app_id: str, profile: ReferenceProfile
) -> None:
    store(registry, app_id, profile, "phone", seed=31)

    report = service.drift(app_id, "digits", group_by=())

    x0 = next(f for f in report.fleet.features if f.name == "x0")
    bins = profile.bins_of("x0")
    assert bins is not None
    assert x0.histogram.edges == bins.edges
    assert len(x0.histogram.labels) == len(x0.histogram.current) == len(bins.edges) + 1
    assert sum(x0.histogram.current) == 3 * ROWS
    assert tuple(x0.histogram.reference) == tuple(profile.reference.block("x0"))
    colour = next(f for f in report.fleet.features if f.name == "colour")
    assert colour.kind == "categorical" and colour.histogram.edges == ()
    assert set(colour.histogram.labels) == {"red", "green", "blue", "other"}
    assert report.fleet.prediction is not None and report.fleet.confidence is not None
    assert report.groups == (report.groups[0],) and report.groups[0].labels == {}


def test_a_group_below_the_detectors_minimum_is_not_enough_data_not_an_alarm(
    service: MonitorService, registry: Registry, app_id: str, profile: ReferenceProfile
) -> None:
    store(registry, app_id, profile, "watch", seed=41, rows=10, shift=3.0)

    report = service.drift(app_id, "digits")

    (watch,) = report.groups
    assert watch.state == "not_enough_data" and watch.drifted_share is None
    assert watch.n == 30
    assert all(f.state == "not_enough_data" for f in watch.features)
    assert "not enough data: 30 rows in the window < 50" in watch.features[0].reason


def test_an_empty_window_is_not_enough_data(service: MonitorService, app_id: str) -> None:
    report = service.drift(app_id, "digits")

    assert report.fleet.state == "not_enough_data" and report.fleet.n == 0
    assert report.groups == ()


def test_the_previous_window_as_baseline_sees_a_change_between_windows(
    service: MonitorService, registry: Registry, app_id: str, profile: ReferenceProfile
) -> None:
    day = 86_400
    # the window before: already shifted; this window: shifted the same way, then further
    store(registry, app_id, profile, "phone", seed=51, shift=1.0, start=T0 - day)
    store(registry, app_id, profile, "phone", seed=52, shift=1.0)
    store(registry, app_id, profile, "tablet", seed=53, shift=1.0, start=T0 - day)
    store(registry, app_id, profile, "tablet", seed=54, shift=2.0)

    report = service.drift(app_id, "digits", baseline="previous")

    states = {g.labels["device_class"]: g.state for g in report.groups}
    assert states == {"phone": "no_drift", "tablet": "drift"}
    assert report.groups[0].baseline_n == 3 * ROWS
    against_reference = service.drift(app_id, "digits")
    assert {g.state for g in against_reference.groups} == {"drift"}


def test_the_series_has_one_point_per_hour_against_the_reference(
    service: MonitorService, registry: Registry, app_id: str, profile: ReferenceProfile
) -> None:
    store(registry, app_id, profile, "phone", seed=61, hours=1)
    store(registry, app_id, profile, "phone", seed=62, hours=1, shift=1.5, start=T0 + HOUR)

    report = service.drift(app_id, "digits", window_s=6 * HOUR)

    assert report.bucket_s == HOUR
    assert [(p.start - T0, p.end - T0) for p in report.series[-3:]] == [
        (0, HOUR),
        (HOUR, 2 * HOUR),
        (2 * HOUR, 3 * HOUR),
    ]
    assert [(p.n, p.state) for p in report.series[-3:]] == [
        (ROWS, "no_drift"),
        (ROWS, "drift"),
        (0, "not_enough_data"),
    ]
    assert report.series[-2].top_feature == "x0"


def test_a_filter_keeps_only_its_device_class_and_app_version(
    service: MonitorService, registry: Registry, app_id: str, profile: ReferenceProfile
) -> None:
    store(registry, app_id, profile, "phone", seed=71, app_version="2.0")
    store(registry, app_id, profile, "phone", seed=72, app_version="2.1", shift=1.0)
    store(registry, app_id, profile, "tablet", seed=73, app_version="2.1")

    report = service.drift(
        app_id, "digits", device_class="phone", group_by=("device_class", "app_version")
    )

    assert report.filters == {"device_class": "phone"}
    assert [(g.labels["app_version"], g.state) for g in report.groups] == [
        ("2.0", "no_drift"),
        ("2.1", "drift"),
    ]


# -- which version -------------------------------------------------------------------------


def test_without_a_production_version_the_newest_version_with_sketches_is_reported(
    service: MonitorService,
    registry: Registry,
    app_id: str,
    profile: ReferenceProfile,
    tmp_path: Path,
) -> None:
    push_to_registry(
        registry,
        app_id,
        "digits",
        [model_variant(tmp_path, "onnx-v2", seed=2)],
        reference_profile=profile.to_dict(),
    )
    registry.set_stage(app_id, "digits", 1, "archived")
    store(registry, app_id, profile, "phone", seed=81, version=2)

    assert service.drift(app_id, "digits").version == 2
    assert service.drift(app_id, "digits", version=1).fleet.n == 0


def test_no_version_to_report_on_is_not_found(
    service: MonitorService, registry: Registry, app_id: str
) -> None:
    registry.set_stage(app_id, "digits", 1, "archived")

    with pytest.raises(NotFound, match="no production version"):
        service.drift(app_id, "digits")
    with pytest.raises(NotFound):
        service.drift(app_id, "faces")
    with pytest.raises(NotFound):
        service.drift(app_id, "digits", version=7)


def test_a_version_without_a_reference_profile_is_not_found(
    service: MonitorService, registry: Registry, app_id: str, tmp_path: Path
) -> None:
    push_to_registry(registry, app_id, "digits", [model_variant(tmp_path, "bare", seed=3)])

    with pytest.raises(NotFound, match="no reference profile"):
        service.accuracy(app_id, "digits", version=2)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"group_by": ("os",)}, "group_by"),
        ({"group_by": ("device_class", "device_class")}, "group_by"),
        ({"window_s": 60}, "window_s"),
        ({"baseline": "yesterday"}, "baseline"),
    ],
)
def test_bad_options_are_refused_naming_the_option(
    service: MonitorService, app_id: str, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput, match=field):
        service.drift(app_id, "digits", **options)


# -- accuracy ------------------------------------------------------------------------------


def send_labelled(
    telemetry: TelemetryService,
    app_id: str,
    device_class: str,
    *,
    seed: int,
    n: int,
    right_when: str = "confident",
) -> None:
    """``n`` inferences of one device with feedback: right with probability = confidence
    (``confident``), or always wrong (``never``)."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.4, 1.0, size=n)
    right = rng.uniform(size=n) < confidence if right_when == "confident" else np.zeros(n, bool)
    device = f"device-{device_class}"
    events = [
        {
            "type": "inference",
            "ts": float(T0 + 60 + i),
            "model": "digits",
            "version": 1,
            "variant": "onnx-fp32",
            "source": "local",
            "confidence": float(confidence[i]),
            "label": "1",
            "prediction_id": f"p-{device_class}-{i}",
        }
        for i in range(n)
    ]
    batch = TelemetryBatch(
        f"batch-{device_class}-{seed}", device, events, device_class=device_class
    )
    telemetry.ingest(app_id, batch)
    for i in range(n):
        label = "1" if right[i] else "2"
        feedback = Feedback(f"p-{device_class}-{i}", device, "digits", float(T0 + 120), label=label)
        telemetry.record_feedback(app_id, feedback)


def test_estimated_accuracy_follows_the_confidence_and_labels_confirm_it(
    service: MonitorService,
    registry: Registry,
    telemetry: TelemetryService,
    app_id: str,
    profile: ReferenceProfile,
) -> None:
    # the reference and this window: confidence ~ U(0.4, 1), right with p = confidence,
    # so accuracy ~0.70 (the mean confidence); the labels are drawn the same way
    store(registry, app_id, profile, "phone", seed=91, low=0.4)
    store(registry, app_id, profile, "tablet", seed=92)
    send_labelled(telemetry, app_id, "phone", seed=93, n=300)

    report = service.accuracy(app_id, "digits")

    assert report.reference_accuracy == pytest.approx(0.70, abs=0.02)
    phone = next(g for g in report.groups if g.labels == {"device_class": "phone"})
    assert phone.estimated is not None and phone.realised is not None
    assert phone.estimated.value == pytest.approx(0.70, abs=0.03)
    assert phone.labelled == 300 and phone.realised.n == 300
    assert phone.state == "consistent"
    assert phone.estimated.low < phone.estimated.value < phone.estimated.high
    tablet = next(g for g in report.groups if g.labels == {"device_class": "tablet"})
    assert tablet.realised is None and tablet.realised_reason == "no feedback labels in the window"
    assert report.fleet.labelled == 300 and report.fleet.n == 2 * 3 * ROWS


def test_the_estimate_follows_the_confidence_histogram_before_any_label(
    service: MonitorService, registry: Registry, app_id: str, profile: ReferenceProfile
) -> None:
    store(registry, app_id, profile, "phone", seed=101, low=0.4)
    store(registry, app_id, profile, "tablet", seed=102, low=0.95)  # nearly always sure

    report = service.accuracy(app_id, "digits")

    phone, tablet = (
        next(g for g in report.groups if g.labels == {"device_class": name})
        for name in ("phone", "tablet")
    )
    assert phone.estimated is not None and tablet.estimated is not None
    assert tablet.estimated.value > phone.estimated.value + 0.2


def test_labels_that_contradict_the_estimate_are_flagged_as_concept_drift(
    service: MonitorService,
    registry: Registry,
    telemetry: TelemetryService,
    app_id: str,
    profile: ReferenceProfile,
) -> None:
    store(registry, app_id, profile, "phone", seed=111)
    send_labelled(telemetry, app_id, "phone", seed=112, n=200, right_when="never")

    (phone,) = service.accuracy(app_id, "digits").groups

    assert phone.realised is not None and phone.realised.value == 0.0
    assert phone.state == "concept_drift" and phone.gap is not None and phone.gap < -0.5


def test_accuracy_grouped_by_app_version_says_why_it_has_no_labels(
    service: MonitorService,
    registry: Registry,
    telemetry: TelemetryService,
    app_id: str,
    profile: ReferenceProfile,
) -> None:
    store(registry, app_id, profile, "phone", seed=121)
    send_labelled(telemetry, app_id, "phone", seed=122, n=50)

    (group,) = service.accuracy(app_id, "digits", group_by=("app_version",)).groups

    assert group.realised is None and "carry no app version" in group.realised_reason
    assert group.estimated is not None


def test_accuracy_of_too_few_rows_is_not_enough_data(
    service: MonitorService, registry: Registry, app_id: str, profile: ReferenceProfile
) -> None:
    store(registry, app_id, profile, "watch", seed=131, rows=5)

    (watch,) = service.accuracy(app_id, "digits").groups

    assert watch.estimated is None and watch.state == "not_enough_data"
    assert watch.estimated_reason.startswith("not enough data: 15 scored rows")


# -- health readings for alert rules --------------------------------------------------------


def test_model_health_reads_every_metric_for_the_fleet_and_each_device_class(
    service: MonitorService,
    registry: Registry,
    telemetry: TelemetryService,
    app_id: str,
    profile: ReferenceProfile,
) -> None:
    store(registry, app_id, profile, "phone", seed=141, hours=1, start=T0 + 2 * HOUR, shift=1.0)
    store(registry, app_id, profile, "watch", seed=142, hours=1, start=T0 + 2 * HOUR, rows=10)

    readings = service.model_health(app_id, "digits", now=NOW)

    fleet = {r.metric: r for r in readings if "device_class" not in r.labels}
    assert tuple(fleet) == HEALTH_METRICS
    assert fleet["drift_share"].value == pytest.approx(1 / 3) and fleet["drift_share"].n == 610
    psi = fleet["psi_max"].value
    assert psi is not None and psi > 0.2
    assert fleet["accuracy_estimated_drop"].value == pytest.approx(
        0.0, abs=0.05
    )  # the confidence did not move
    assert fleet["accuracy_realised"].value is None and fleet["accuracy_realised"].n == 0
    watch = {r.metric: r for r in readings if r.labels.get("device_class") == "watch"}
    assert watch["drift_share"].value is None and watch["drift_share"].n == 10
    assert watch["accuracy_estimated"].value is None
    assert fleet["drift_share"].labels == {"model": "digits", "version": "1"}


def test_psi_max_counts_only_features_whose_test_found_drift(
    service: MonitorService, registry: Registry, app_id: str, profile: ReferenceProfile
) -> None:
    # A small window of the reference's own distribution: PSI's sample-size bias alone
    # would exceed a fixed threshold here, the tests do not reject, so the reading is 0.
    store(registry, app_id, profile, "phone", seed=143, hours=1, start=T0 + 2 * HOUR, rows=60)
    store(registry, app_id, profile, "tablet", seed=144, hours=1, start=T0 + 2 * HOUR, shift=1.0)

    readings = service.model_health(app_id, "digits", now=NOW)

    psi = {r.labels.get("device_class"): r.value for r in readings if r.metric == "psi_max"}
    assert psi["phone"] == 0.0
    assert psi["tablet"] is not None and psi["tablet"] > 0.25


def test_model_health_of_a_model_without_a_reported_version_is_empty(
    service: MonitorService, registry: Registry, app_id: str
) -> None:
    registry.set_stage(app_id, "digits", 1, "archived")

    assert service.model_health(app_id, "digits") == []
    with pytest.raises(NotFound):
        service.model_health(app_id, "faces")


# -- pure parts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("86400", 86_400), ("24h", 86_400), ("90m", 5_400), ("7d", 604_800), (" 2H ", 7_200)],
)
def test_a_window_is_seconds_or_a_number_with_a_unit(text: str, seconds: int) -> None:
    assert parse_window(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "h", "24x", "nan", "inf", "1e400", "1e308h", "10m", "91d", "-1h"]
)
def test_a_bad_window_is_refused_with_an_example(text: str) -> None:
    with pytest.raises(InvalidInput, match="window"):
        parse_window(text)


def test_noisy_sketches_with_negative_counts_are_tested_and_their_noise_reported(
    service: MonitorService, registry: Registry, app_id: str, profile: ReferenceProfile
) -> None:
    rng = np.random.default_rng(151)
    additions = []
    for hour in range(3):
        data = monitor_rows(rng, ROWS)
        exact = profile.sketch(data["columns"], data["predicted"], data["confidence"])
        noise = rng.normal(0.0, 2.0, size=exact.counts.size).round().astype(np.int64)
        noisy = Sketch(exact.layout, exact.n, exact.counts + noise)
        key = SketchKey("digits", 1, "phone", "2.0", T0 + hour * HOUR)
        additions.append(SketchAddition(key, noisy, noise_variance=4.0))
    additions[0].sketch.counts[0] = -5  # an empty bin pushed below zero by its noise
    with registry.store.engine.connect().execution_options(**WRITE) as conn, conn.begin():
        add_sketches(conn, app_id, additions)

    (phone,) = service.drift(app_id, "digits").groups

    assert phone.noise_variance == pytest.approx(12.0) and phone.events == 3
    assert phone.state == "no_drift"
    assert min(min(f.histogram.current) for f in phone.features) >= 0


def test_a_report_without_its_series_costs_no_bucket_tests(
    service: MonitorService, registry: Registry, app_id: str, profile: ReferenceProfile
) -> None:
    store(registry, app_id, profile, "phone", seed=161)

    drift = service.drift(app_id, "digits", series=False)
    accuracy = service.accuracy(app_id, "digits", series=False)

    assert drift.series == () and accuracy.series == ()
    assert drift.groups[0].state == "no_drift" and accuracy.groups[0].estimated is not None


def test_model_health_reads_accuracy_of_a_device_class_that_sent_only_feedback(
    service: MonitorService,
    registry: Registry,
    telemetry: TelemetryService,
    app_id: str,
    profile: ReferenceProfile,
) -> None:
    send_labelled(telemetry, app_id, "watch", seed=171, n=60)

    readings = service.model_health(app_id, "digits", now=NOW, window_s=3 * HOUR)

    watch = {r.metric: r for r in readings if r.labels.get("device_class") == "watch"}
    assert set(watch) == {
        "accuracy_estimated",
        "accuracy_estimated_drop",
        "accuracy_realised",
        "accuracy_realised_drop",
    }
    assert watch["accuracy_realised"].n == 60 and watch["accuracy_realised"].value is not None
    realised, drop = watch["accuracy_realised"].value, watch["accuracy_realised_drop"].value
    assert drop is not None and drop == pytest.approx(0.70 - realised, abs=0.02)


def test_health_readers_answer_metric_by_metric_from_one_report(
    service: MonitorService, registry: Registry, app_id: str, profile: ReferenceProfile
) -> None:
    store(registry, app_id, profile, "phone", seed=181, hours=1, start=T0 + 2 * HOUR)
    calls: list[float] = []
    original = service.model_health

    def counted(*args: Any, **kwargs: Any) -> list[MetricReading]:
        calls.append(kwargs["window_s"])
        return original(*args, **kwargs)

    service.model_health = counted  # type: ignore[method-assign]
    readers = service.health_readers()

    by_metric = {metric: readers[metric](app_id, "digits", 300.0, NOW) for metric in readers}

    assert tuple(by_metric) == HEALTH_METRICS
    assert all({r.metric for r in rows} == {metric} for metric, rows in by_metric.items())
    assert by_metric["drift_share"][0].value == 0.0 and by_metric["drift_share"][0].n == ROWS
    assert calls == [300.0]  # six metrics, one report; a 5-minute window reads the last hour


# -- remembered tests and the fleet series (issue 15: console pages within budget) ---------


def test_a_remembered_test_equals_a_fresh_one_and_new_sketches_are_tested_again(
    service: MonitorService,
    registry: Registry,
    telemetry: TelemetryService,
    app_id: str,
    profile: ReferenceProfile,
) -> None:
    store(registry, app_id, profile, "phone", seed=171)
    store(registry, app_id, profile, "tablet", seed=172, shift=1.0)
    first = service.drift(app_id, "digits", baseline="previous")
    again = service.drift(app_id, "digits", baseline="previous")

    def fresh() -> Any:
        return MonitorService(registry, telemetry, clock=lambda: NOW).drift(
            app_id, "digits", baseline="previous"
        )

    assert again == first == fresh()
    assert again.fleet is first.fleet  # remembered, not tested again
    store(registry, app_id, profile, "phone", seed=173, start=T0 + 2 * HOUR, hours=1)
    changed = service.drift(app_id, "digits", baseline="previous")
    assert changed.fleet.n == first.fleet.n + ROWS
    assert changed == fresh()


def test_the_fleet_series_equals_a_fleet_report_per_sub_window(
    service: MonitorService, registry: Registry, app_id: str, profile: ReferenceProfile
) -> None:
    store(registry, app_id, profile, "phone", seed=181)
    store(registry, app_id, profile, "tablet", seed=182, shift=1.0, start=T0 + HOUR, hours=2)

    series = service.fleet_series(
        app_id, "digits", version=1, window_s=3 * HOUR, until=NOW, step_s=HOUR
    )

    assert [(start, end) for start, end, _ in series] == [
        (T0, T0 + HOUR),
        (T0 + HOUR, T0 + 2 * HOUR),
        (T0 + 2 * HOUR, NOW),
    ]
    for _, end, fleet in series:
        report = service.drift(app_id, "digits", version=1, window_s=HOUR, until=end, group_by=())
        assert fleet == report.fleet
    assert [fleet.state for _, _, fleet in series] == ["no_drift", "drift", "drift"]
    with pytest.raises(InvalidInput):
        service.fleet_series(app_id, "digits", version=1, window_s=HOUR, until=NOW, step_s=60)
