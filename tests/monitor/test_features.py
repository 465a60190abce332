"""The monitored features of image, sensor and table inputs, and the profile built from them."""

from __future__ import annotations

import numpy as np
import pytest

from pocketml.data import load_digits
from pocketml.errors import InvalidInput
from pocketml.monitor import (
    CONFIDENCE_BLOCK,
    PREDICTION_BLOCK,
    ReferenceProfile,
    build_input_profile,
    input_features,
    profile_model,
)
from pocketml.train import train


def test_a_flat_image_has_its_value_as_brightness_and_no_contrast_or_blur() -> None:
    x = np.full((2, 1, 5, 5), 7.0)

    features = input_features(x, "NCHW")

    assert list(features) == ["brightness_0", "contrast_0", "blur_0"]
    assert features["brightness_0"].tolist() == [7.0, 7.0]
    assert features["contrast_0"].tolist() == [0.0, 0.0]
    assert features["blur_0"].tolist() == [0.0, 0.0]


def test_blur_is_the_variance_of_the_laplacian_so_a_checkerboard_is_sharp() -> None:
    board = (np.indices((6, 6)).sum(axis=0) % 2).astype(float)  # 0/1 checkerboard
    x = np.stack([board, np.full((6, 6), 0.5)])[:, None]  # a sharp and a flat image

    blur = input_features(x, "NCHW")["blur_0"]

    # interior Laplacian of a checkerboard is +-4: 4 neighbours of the other colour
    assert blur.tolist() == pytest.approx([16.0, 0.0])


def test_nhwc_images_give_the_same_features_as_nchw_per_channel() -> None:
    x = np.random.default_rng(0).uniform(0, 255, size=(4, 3, 6, 5))

    nchw = input_features(x, "NCHW")
    nhwc = input_features(np.moveaxis(x, 1, 3), "NHWC")

    assert list(nchw) == [f"{s}_{c}" for c in range(3) for s in ("brightness", "contrast", "blur")]
    assert all(np.allclose(nchw[name], nhwc[name]) for name in nchw)
    assert np.allclose(nchw["brightness_2"], x[:, 2].mean(axis=(1, 2)))


def test_sensor_roughness_is_the_variance_of_first_differences() -> None:
    ramp = np.arange(9.0)
    zigzag = np.array([0.0, 2.0] * 4 + [0.0])  # differences +2, -2, ... (mean 0)
    x = np.stack([ramp, zigzag])[:, None, :]  # (N=2, C=1, L=9)

    features = input_features(x, "NCL")

    assert list(features) == ["mean_0", "std_0", "roughness_0"]
    assert features["roughness_0"].tolist() == pytest.approx([0.0, 4.0])
    assert features["mean_0"].tolist() == pytest.approx([4.0, 8 / 9])


def test_table_columns_are_the_features_named_by_position_or_by_name() -> None:
    x = np.arange(6.0).reshape(3, 2)

    assert list(input_features(x, "NC")) == ["x0", "x1"]
    assert input_features(x, "NC", names=["age", "income"])["income"].tolist() == [1, 3, 5]
    with pytest.raises(InvalidInput, match="2 column names; got 1"):
        input_features(x, "NC", names=["age"])


def test_inputs_of_the_wrong_rank_or_layout_are_refused() -> None:
    with pytest.raises(InvalidInput, match="rank 4"):
        input_features(np.zeros((2, 8, 8)), "NCHW")
    with pytest.raises(InvalidInput, match="layout must be one of"):
        input_features(np.zeros((2, 3)), "NLC")


def test_the_input_profile_monitors_features_predictions_and_confidence() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 16, size=(400, 1, 8, 8))
    probabilities = rng.dirichlet(np.ones(3), size=400)
    labels = probabilities.argmax(axis=1)

    profile = build_input_profile(x, "NCHW", probabilities, labels)

    assert profile.feature_names == ("brightness_0", "contrast_0", "blur_0")
    assert {PREDICTION_BLOCK, CONFIDENCE_BLOCK} <= set(profile.layout.names)
    assert profile.num_classes == 3
    assert profile.calibration_correct is not None
    assert ReferenceProfile.from_dict(profile.to_dict()).to_dict() == profile.to_dict()


def test_probabilities_that_do_not_match_the_inputs_are_refused() -> None:
    x = np.zeros((10, 2))
    with pytest.raises(InvalidInput, match=r"probabilities must have shape \(10, classes"):
        build_input_profile(x, "NC", np.full((9, 2), 0.5))
    with pytest.raises(InvalidInput, match="labels must hold one class per input"):
        build_input_profile(x, "NC", np.full((10, 2), 0.5), labels=np.zeros(3))


def test_a_trained_model_is_profiled_on_its_training_split_with_its_own_predictions() -> None:
    splits = load_digits().split(seed=0)
    model = train(splits, "logistic-regression").model

    profile = profile_model(model, splits.train, max_rows=500)

    # the projection halves the rows: PCA on the even ones, counts from the odd ones
    assert profile.reference.n == 250
    predicted = profile.reference.block(PREDICTION_BLOCK)
    assert predicted.sum() == 250 and (predicted > 0).sum() == 10
    # a scikit-learn model takes the 64 pixels as a table (NC): its columns are monitored
    assert model.schema.input.layout == "NC"
    assert profile.feature_names == tuple(f"x{i}" for i in range(64))
