"""Demo chapter "Run on devices": calibrate the cascade, then a simulated fleet runs it.

50 virtual phones on mixed networks (wifi, 4g, 3g, lossy) sync the promoted version,
verify and load their variant, and classify held-out digits photographed in low light.
The same fleet runs three hybrid policies — device only, cloud only, cascade with the
calibrated threshold — and the table compares accuracy, cloud share and fallbacks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from pocketml.data import Dataset, Splits, augment_dataset, parse_augmentations
from pocketml.optimize.calibrate import CalibrationResult, calibrate_threshold, plot_calibration
from pocketml.server.client import AdminClient
from pocketml.sim import make_fleet, run_fleet
from pocketml.train import TrainResult, model_inputs

__all__ = ["calibrate_cascade", "monitoring_reference", "run_devices", "split_holdout"]

NETWORKS = ("wifi", "4g", "3g", "lossy")
MODES = ("local", "cloud", "cascade")


def split_holdout(splits: Splits) -> tuple[Dataset, Dataset]:
    """The test split halved (stratified by position): (calibration, evaluation).

    Calibration must use labelled data that took no part in training or model selection:
    the validation split chose the early-stopping epoch, so it flatters the models.
    """
    test = splits.test
    index = np.arange(len(test))
    return test.subset(index[0::2], name="calibration"), test.subset(index[1::2], name="evaluation")


def monitoring_reference(splits: Splits, low_light: str, *, seed: int = 0) -> Dataset:
    """The rows every demo version's reference profile is built from.

    The validation split, which the model never fitted (early stopping only read its loss):
    on its training rows a model is overconfident, which would read as confidence drift on
    day one and bias the label-free estimate upwards (+1.2 points measured,
    docs/benchmarks.md). In the low light the phones of chapter 6 photograph in: the profile
    describes the conditions the version ships for, so that light is "no drift".
    """
    return augment_dataset(splits.validation, parse_augmentations(low_light), seed=seed + 5)


def calibrate_cascade(
    small: TrainResult, large: TrainResult, holdout: Dataset, low_light: str, *, seed: int = 0
) -> CalibrationResult:
    """Threshold that matches the cloud model's accuracy on low-light held-out data.

    Four augmented copies of the calibration half (different seeds) and a bootstrap (upper
    decile of resampled thresholds) keep the choice from overfitting ~135 images.
    """
    augmentations = parse_augmentations(low_light)
    copies = [augment_dataset(holdout, augmentations, seed=100 + k) for k in range(4)]
    local = np.concatenate(
        [small.model.predict_proba(model_inputs(small.model, c)) for c in copies]
    )
    cloud = np.concatenate(
        [large.model.predict_proba(model_inputs(large.model, c)) for c in copies]
    )
    labels = np.concatenate([c.labels for c in copies])
    return calibrate_threshold(
        local, cloud, labels, relative_to_cloud=1.0, bootstrap=200, seed=seed
    )


def run_devices(
    console: Console,
    *,
    url: str,
    admin: AdminClient,
    device_key: str,
    version: int,
    small: TrainResult,
    large: TrainResult,
    splits: Splits,
    low_light: str,
    devices: int,
    out_dir: Path,
    seed: int = 0,
) -> dict[str, Any]:
    """Calibrate, then run the fleet under each hybrid policy; print and return the results."""
    holdout, evaluation = split_holdout(splits)
    calibration = calibrate_cascade(small, large, holdout, low_light, seed=seed)
    plot_calibration(calibration, out_dir / "calibration.png")
    console.print(
        f"   calibrated on half of the held-out test split in low light: {calibration.summary()}"
    )
    test = augment_dataset(evaluation, parse_augmentations(low_light), seed=seed + 2)
    fleet = make_fleet(devices, NETWORKS, seed=seed)
    rows: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        hybrid: dict[str, Any] = {"mode": mode}
        if mode == "cascade":
            hybrid["threshold"] = round(calibration.threshold, 4)
        admin.set_policy("digits", version, hybrid=hybrid)
        report = run_fleet(
            url,
            device_key,
            fleet,
            test.features,
            out_dir / "fleet" / mode,
            labels=test.labels,
            shard=True,
        )
        rows[mode] = report.totals()
    table = Table(
        title=f"{devices} simulated phones, {len(test)} unseen low-light digits ({low_light}), "
        "mixed networks",
        title_justify="left",
    )
    for column in ("policy", "accuracy", "to cloud", "fallback", "synced", "p50 ms", "p95 ms"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    names = {"local": "device only", "cloud": "cloud only", "cascade": "cascade"}
    for mode, totals in rows.items():
        sources = totals["predictions"]
        answered = sum(n for k, n in sources.items() if k != "unavailable") or 1
        cloud_share = sources.get("cloud", 0) / answered
        table.add_row(
            names[mode]
            + (f" (threshold {calibration.threshold:.2f})" if mode == "cascade" else ""),
            f"{totals['accuracy']:.4f}" if totals["accuracy"] is not None else "-",
            f"{cloud_share:.1%}",
            str(sources.get("fallback", 0)),
            f"{totals['synced']}/{totals['devices']}",
            _ms(totals["latency_p50_ms"]),
            _ms(totals["latency_p95_ms"]),
        )
        totals["cloud_share"] = cloud_share
    console.print(table)
    console.print(
        "   latency is simulated network time plus real inference; fallbacks are cloud calls "
        "that failed on bad networks and were answered by the phone's own model; phones "
        "that could not sync use the cloud model whatever the policy."
    )
    learned = admin.model_metrics("digits")["groups"]
    _print_server_view(console, learned, version)
    return {
        "calibration": calibration.to_dict() | {"curve": None},
        "fleet": rows,
        "server_metrics": learned,
    }


def _print_server_view(console: Console, groups: list[dict[str, Any]], version: int) -> None:
    """What the server aggregated from the fleet's telemetry batches, per device class."""
    table = Table(
        title=f"what the server learned from the phones' telemetry (v{version}, all three runs)",
        title_justify="left",
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column("device class", no_wrap=True, min_width=12)
    for column in ("inferences", "errors", "p50 ms", "p95 ms", "cloud", "fallback", "conf."):
        table.add_column(column, justify="right")
    for group in groups:
        if group["version"] != version:
            continue
        table.add_row(
            group["device_class"] or "-",
            f"{group['count']:,}",
            f"{group['errors']:,}",
            _ms(group["latency_p50_ms"]),
            _ms(group["latency_p95_ms"]),
            _share(group["cloud_share"]),
            _share(group["fallback_share"]),
            "-" if group["mean_confidence"] is None else f"{group['mean_confidence']:.3f}",
        )
    console.print(table)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
