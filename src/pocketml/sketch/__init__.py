"""pocketml.sketch: a version's reference profile and the sketches devices build from it.

The part of monitoring that runs on a phone, so it needs numpy only and sits in the core
layer (the device SDK imports it; ``pocketml.monitor`` re-exports it and adds the tests,
the accuracy estimate and the server side):

- ``build_profile(columns, ...)`` fixes a version's bins and reference counts (plus a PCA
  projection for joint drift and the calibration table for label-free accuracy);
  ``ReferenceProfile.from_dict`` reads the ``profile.json`` a package carries.
- ``input_features(x, layout)`` turns images and sensor windows into the monitored features
  (brightness, contrast, blur per channel); ``build_input_profile`` builds a profile from raw
  inputs and the model's probabilities.
- ``profile.sketch(rows, predicted_class, confidence)`` bins what a device scored into a
  ``Sketch`` of integer counts; ``merge_sketches`` adds them; ``parse_sketch`` is the
  server's gate for one a device sends.
- ``privatize(sketch, epsilon, rng)`` adds local differential privacy noise (two-sided
  geometric) to every count; ``parse_noisy_counts`` is the server's gate for those.

See docs/monitoring.md.
"""

from pocketml.sketch._bins import FeatureBins, categorical_bins, numeric_bins
from pocketml.sketch._features import (
    IMAGE_STATS,
    LAYOUT_RANK,
    SENSOR_STATS,
    build_input_profile,
    image_features,
    input_features,
    profile_model,
    sensor_features,
    table_features,
)
from pocketml.sketch._privacy import (
    geometric_variance,
    noise_bound,
    parse_noisy_counts,
    privatize,
    sensitivity_of,
)
from pocketml.sketch._profile import Projection, ReferenceProfile, build_profile
from pocketml.sketch._sketch import (
    CONFIDENCE_BINS,
    CONFIDENCE_BLOCK,
    MAX_SKETCH_ROWS,
    PREDICTION_BLOCK,
    Sketch,
    SketchLayout,
    merge_sketches,
    parse_sketch,
)

__all__ = [
    "CONFIDENCE_BINS",
    "CONFIDENCE_BLOCK",
    "IMAGE_STATS",
    "LAYOUT_RANK",
    "MAX_SKETCH_ROWS",
    "PREDICTION_BLOCK",
    "SENSOR_STATS",
    "FeatureBins",
    "Projection",
    "ReferenceProfile",
    "Sketch",
    "SketchLayout",
    "build_input_profile",
    "build_profile",
    "categorical_bins",
    "geometric_variance",
    "image_features",
    "input_features",
    "merge_sketches",
    "noise_bound",
    "numeric_bins",
    "parse_noisy_counts",
    "parse_sketch",
    "privatize",
    "profile_model",
    "sensitivity_of",
    "sensor_features",
    "table_features",
]
