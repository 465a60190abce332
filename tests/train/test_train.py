"""Training: reproducibility, early stopping, run records, persistence, bring-your-own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pocketml.data import load_digits
from pocketml.errors import InvalidInput
from pocketml.train import TrainConfig, TrainedModel, evaluate, model_inputs, train


@pytest.fixture(scope="module")
def digits_splits():  # type: ignore[no-untyped-def]
    return load_digits().split(seed=0)


def test_same_seed_gives_the_same_metrics(digits_splits) -> None:  # type: ignore[no-untyped-def]
    config = TrainConfig(seed=1, epochs=3)
    first = train(digits_splits, "cnn-small", config=config)
    second = train(digits_splits, "cnn-small", config=config)
    assert first.metrics == second.metrics
    other = train(digits_splits, "cnn-small", config=TrainConfig(seed=2, epochs=3))
    assert not np.array_equal(
        first.model.predict_proba(model_inputs(first.model, digits_splits.test)),
        other.model.predict_proba(model_inputs(other.model, digits_splits.test)),
    )


def test_early_stopping_ends_before_the_epoch_limit(digits_splits) -> None:  # type: ignore[no-untyped-def]
    # a learning rate this high stops improving the validation loss almost at once
    config = TrainConfig(seed=0, epochs=40, patience=1, learning_rate=0.5)
    result = train(digits_splits, "mlp", config=config)
    assert result.model.params["epochs_run"] < 40
    assert result.model.params["best_epoch"] <= result.model.params["epochs_run"]


@pytest.mark.parametrize("architecture", ["logistic-regression", "random-forest", "sklearn-mlp"])
def test_sklearn_references_learn_digits(digits_splits, architecture: str) -> None:  # type: ignore[no-untyped-def]
    result = train(digits_splits, architecture, config=TrainConfig(seed=0))
    assert result.metrics["accuracy"] > 0.85
    assert result.model.schema.input.layout == "NC"  # images are fed flattened


def test_cnn_small_learns_digits_and_reports_every_metric(digits_splits) -> None:  # type: ignore[no-untyped-def]
    result = train(digits_splits, "cnn-small", config=TrainConfig(seed=0, epochs=12))
    metrics = result.metrics
    assert metrics["accuracy"] > 0.9
    assert set(metrics) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix", "n"}
    assert len(metrics["confusion_matrix"]) == 10
    assert sum(map(sum, metrics["confusion_matrix"])) == len(digits_splits.test)
    assert set(metrics["per_class"]["3"]) == {"precision", "recall", "support"}


def test_run_record_is_written_with_lineage(tmp_path: Path, digits_splits) -> None:  # type: ignore[no-untyped-def]
    train(digits_splits, "mlp", config=TrainConfig(seed=0, epochs=2), out_dir=tmp_path / "m")
    record = json.loads((tmp_path / "m" / "run.json").read_text())
    assert record["dataset"]["fingerprint"].startswith("splits:sha256:")
    assert record["params"]["seed"] == 0 and record["params"]["epochs"] == 2
    assert {"python", "numpy", "torch"} <= set(record["libraries"])
    assert record["duration_s"] > 0
    assert "accuracy" in record["metrics"]
    assert record["git"] is None or len(record["git"]["commit"]) == 40


def test_saved_model_loads_and_predicts_the_same(tmp_path: Path, digits_splits) -> None:  # type: ignore[no-untyped-def]
    for architecture in ("cnn-small", "random-forest"):
        result = train(digits_splits, architecture, config=TrainConfig(seed=0, epochs=2))
        result.model.save(tmp_path / architecture)
        loaded = TrainedModel.load(tmp_path / architecture)
        x = model_inputs(loaded, digits_splits.test)
        assert np.allclose(loaded.predict_proba(x), result.model.predict_proba(x), atol=1e-6)
        assert loaded.schema == result.model.schema


def test_a_users_own_torch_module_and_sklearn_pipeline_train(digits_splits) -> None:  # type: ignore[no-untyped-def]
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    own_torch = train(digits_splits, model=module, config=TrainConfig(seed=0, epochs=5))
    assert own_torch.model.architecture == "custom"
    assert own_torch.metrics["accuracy"] > 0.8
    pipeline = make_pipeline(StandardScaler(), SVC(probability=True, random_state=0))
    own_sklearn = train(digits_splits, model=pipeline, config=TrainConfig(seed=0))
    assert own_sklearn.model.framework == "sklearn"
    assert evaluate(own_sklearn.model, digits_splits.test)["accuracy"] > 0.9


def test_unknown_architecture_names_the_choices(digits_splits) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match=r"unknown architecture 'resnet'.*cnn-small"):
        train(digits_splits, "resnet")


def test_training_with_augmentation_is_reproducible(digits_splits) -> None:  # type: ignore[no-untyped-def]
    from pocketml.data import parse_augmentations

    config = TrainConfig(
        seed=0, epochs=2, augmentations=tuple(parse_augmentations("dim=0.5,noise=0.2"))
    )
    assert (
        train(digits_splits, "mlp", config=config).metrics
        == train(digits_splits, "mlp", config=config).metrics
    )
