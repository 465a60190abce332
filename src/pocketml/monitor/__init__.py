"""pocketml.monitor: drift and accuracy from mergeable sketches, never from raw rows.

``build_profile(columns, ...)`` fixes a version's bins and reference counts (plus a PCA
projection for joint drift and the calibration table for label-free accuracy).
Devices bin what they score into a ``Sketch`` (``profile.sketch(rows)``); the server
validates it (``parse_sketch``), merges (``merge_sketches``) and tests
(``detect_drift``: one detector per block, Benjamini-Hochberg over the family).
The server keeps the fleet's sketches merged per version x device group x hour
(``add_sketches`` inside the telemetry batch's transaction, ``read_sketches`` for reports);
``MonitorService`` answers drift and accuracy reports per version x device group over a
window from those rows, and ``model_health`` flattens them into ``MetricReading``s for alerts.
``ProfileIntake`` checks the ``profile`` events devices send and merges them there, and
``charge_privacy`` keeps the per-device-day ledger of local differential privacy.
``estimate_accuracy`` / ``realised_accuracy`` / ``compare_accuracy`` turn confidence
histograms and feedback labels into accuracy with intervals and a concept-drift flag.
``input_features`` turns image and sensor inputs into the monitored features
(brightness, contrast, blur per channel); ``build_input_profile`` builds a version's profile
from raw inputs and the model's probabilities.
See docs/monitoring.md for the statistics and the benchmark against Evidently.
"""

from pocketml.monitor._accuracy import (
    AccuracyComparison,
    AccuracyInterval,
    compare_accuracy,
    estimate_accuracy,
    realised_accuracy,
)
from pocketml.monitor._accuracy_report import AccuracyPoint, AccuracyReport, GroupAccuracy
from pocketml.monitor._chi_squared import ChiSquaredDetector
from pocketml.monitor._dataset import (
    DatasetDrift,
    benjamini_hochberg,
    detect_drift,
    detector_for,
)
from pocketml.monitor._detector import DEFAULT_ALPHA, DriftDetector, FeatureDrift
from pocketml.monitor._health import (
    HEALTH_METRICS,
    HealthReader,
    MetricReading,
    health_readers,
)
from pocketml.monitor._jensen_shannon import JensenShannonDetector
from pocketml.monitor._privacy_ledger import (
    DELTA,
    Charge,
    LedgerDay,
    charge_privacy,
    compose_epsilon,
    read_ledger,
)
from pocketml.monitor._profile_intake import ProfileIntake, has_profile_events
from pocketml.monitor._psi import PSIDetector
from pocketml.monitor._report import (
    DriftReport,
    FeatureReport,
    GroupDrift,
    Histogram,
    SeriesPoint,
)
from pocketml.monitor._service import MonitorService
from pocketml.monitor._store import (
    WINDOW_S,
    SketchAddition,
    SketchKey,
    StoredSketch,
    add_sketches,
    read_sketches,
    window_of,
)
from pocketml.monitor._wasserstein import WassersteinDetector
from pocketml.monitor._windows import (
    DEFAULT_WINDOW_S,
    GROUP_DIMENSIONS,
    check_group_by,
    parse_window,
)
from pocketml.sketch import (
    CONFIDENCE_BLOCK,
    IMAGE_STATS,
    MAX_SKETCH_ROWS,
    PREDICTION_BLOCK,
    SENSOR_STATS,
    FeatureBins,
    Projection,
    ReferenceProfile,
    Sketch,
    SketchLayout,
    build_input_profile,
    build_profile,
    categorical_bins,
    image_features,
    input_features,
    merge_sketches,
    numeric_bins,
    parse_sketch,
    profile_model,
    sensor_features,
    table_features,
)

__all__ = [
    "CONFIDENCE_BLOCK",
    "DEFAULT_ALPHA",
    "DEFAULT_WINDOW_S",
    "DELTA",
    "GROUP_DIMENSIONS",
    "HEALTH_METRICS",
    "IMAGE_STATS",
    "MAX_SKETCH_ROWS",
    "PREDICTION_BLOCK",
    "SENSOR_STATS",
    "WINDOW_S",
    "AccuracyComparison",
    "AccuracyInterval",
    "AccuracyPoint",
    "AccuracyReport",
    "Charge",
    "ChiSquaredDetector",
    "DatasetDrift",
    "DriftDetector",
    "DriftReport",
    "FeatureBins",
    "FeatureDrift",
    "FeatureReport",
    "GroupAccuracy",
    "GroupDrift",
    "HealthReader",
    "Histogram",
    "JensenShannonDetector",
    "LedgerDay",
    "MetricReading",
    "MonitorService",
    "PSIDetector",
    "ProfileIntake",
    "Projection",
    "ReferenceProfile",
    "SeriesPoint",
    "Sketch",
    "SketchAddition",
    "SketchKey",
    "SketchLayout",
    "StoredSketch",
    "WassersteinDetector",
    "add_sketches",
    "benjamini_hochberg",
    "build_input_profile",
    "build_profile",
    "categorical_bins",
    "charge_privacy",
    "check_group_by",
    "compare_accuracy",
    "compose_epsilon",
    "detect_drift",
    "detector_for",
    "estimate_accuracy",
    "has_profile_events",
    "health_readers",
    "image_features",
    "input_features",
    "merge_sketches",
    "numeric_bins",
    "parse_sketch",
    "parse_window",
    "profile_model",
    "read_ledger",
    "read_sketches",
    "realised_accuracy",
    "sensor_features",
    "table_features",
    "window_of",
]
