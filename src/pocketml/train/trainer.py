"""Training of reference models (and of a user's own) on a Dataset, with a run record.

``train`` splits the data (stratified, seeded), fits the normalization on the training
part (it becomes the schema's exported preprocessing), trains with early stopping on the
validation part, evaluates on the held-out test part, and returns a ``TrainResult``.
Same seed, same data, same machine -> same metrics.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pocketml.data import Augmentation, Dataset, Splits
from pocketml.data.augment import augment_dataset
from pocketml.errors import InvalidInput, MissingDependencyError
from pocketml.schema import Normalization
from pocketml.train.architectures import (
    SKLEARN_ARCHITECTURES,
    TORCH_ARCHITECTURES,
    build_torch_model,
)
from pocketml.train.metrics import classification_metrics
from pocketml.train.model import TrainedModel, make_schema
from pocketml.train.record import RunRecord, git_state

__all__ = [
    "LossFn",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "fine_tune",
    "fit_normalization",
    "model_inputs",
    "train",
]

ProgressFn = Callable[[int, int, dict[str, float]], None]
# (logits, targets, x_batch) -> scalar loss tensor; x_batch is the (augmented, normalized)
# input the logits came from, so a loss can ask another model (a teacher) about it.
LossFn = Callable[[Any, Any, Any], Any]


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (PyTorch models; scikit-learn uses ``seed`` only)."""

    seed: int = 0
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 5
    validation: float = 0.15
    test: float = 0.15
    augmentations: tuple[Augmentation, ...] = ()

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "learning_rate": self.learning_rate > 0,
            "patience": self.patience >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise InvalidInput(f"{name} must be positive; got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = self.__dict__.copy()
        data["augmentations"] = [f"{a.name}={a.strength:g}" for a in self.augmentations]
        return data


@dataclass(frozen=True)
class TrainResult:
    """A trained model, its test and validation metrics, the splits and the run record."""

    model: TrainedModel
    metrics: dict[str, Any]
    validation_metrics: dict[str, Any]
    splits: Splits
    record: RunRecord


def fit_normalization(dataset: Dataset) -> Normalization:
    """Fit the input normalization on training data.

    Images: scale to [0, 1] by the known value range (per-channel mean/std stay 0/1 so the
    device step is one multiply). Sequences (NCL): one mean and std over every value (a
    device broadcasts one pair to any shape; per-channel statistics would need the layout).
    Tables: per-feature standardization.
    """
    if dataset.layout == "NCL":
        spread = float(dataset.features.std())
        return Normalization(
            scale=1.0,
            mean=[float(dataset.features.mean())],
            std=[spread if spread > 1e-6 else 1.0],
        )
    if dataset.layout == "NCHW":
        high = dataset.value_range[1] if dataset.value_range else float(dataset.features.max())
        return Normalization(scale=1.0 / high if high > 0 else 1.0, mean=[0.0], std=[1.0])
    mean = dataset.features.mean(axis=0)
    std = dataset.features.std(axis=0)
    std = np.where(std < 1e-6, 1.0, std)
    return Normalization(scale=1.0, mean=mean.tolist(), std=std.tolist())


def _sklearn_estimator(architecture: str, seed: int) -> Any:
    try:
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.neural_network import MLPClassifier
    except ImportError as exc:
        raise MissingDependencyError("scikit-learn", "build") from exc
    if architecture == "logistic-regression":
        return LogisticRegression(max_iter=2000, random_state=seed)
    if architecture == "random-forest":
        return RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1)
    return MLPClassifier(
        hidden_layer_sizes=(128, 64), early_stopping=True, random_state=seed, max_iter=300
    )


def _fit_torch(
    module: Any,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    config: TrainConfig,
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None,
    progress: ProgressFn | None,
    train_loss: LossFn | None = None,
) -> dict[str, Any]:
    import torch

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    optimizer = torch.optim.AdamW(
        module.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    xv, yv = torch.from_numpy(x_val), torch.from_numpy(y_val)
    best_loss, best_state, best_epoch, stale = float("inf"), None, 0, 0
    epoch = 0
    for epoch in range(1, config.epochs + 1):
        module.train()
        x_epoch = augment(x_train, rng) if augment else x_train
        order = rng.permutation(len(x_epoch))
        for start in range(0, len(order), config.batch_size):
            idx = order[start : start + config.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            optimizer.zero_grad()
            x_batch, y_batch = torch.from_numpy(x_epoch[idx]), torch.from_numpy(y_train[idx])
            logits = module(x_batch)
            loss = train_loss(logits, y_batch, x_batch) if train_loss else loss_fn(logits, y_batch)
            loss.backward()
            optimizer.step()
        module.eval()
        with torch.no_grad():
            logits = module(xv)
            val_loss = float(loss_fn(logits, yv))
            val_acc = float((logits.argmax(-1) == yv).float().mean())
        if progress:
            progress(epoch, config.epochs, {"val_loss": val_loss, "val_accuracy": val_acc})
        if val_loss < best_loss - 1e-4:
            best_loss, best_state, best_epoch, stale = (
                val_loss,
                copy.deepcopy(module.state_dict()),
                epoch,
                0,
            )
        else:
            stale += 1
            if stale >= config.patience:
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return {"epochs_run": epoch, "best_epoch": best_epoch, "best_val_loss": best_loss}


def _augmenter(
    splits: Splits, schema: Any, config: TrainConfig
) -> Callable[[np.ndarray, np.random.Generator], np.ndarray] | None:
    """The per-epoch augmentation of the training inputs, or None without augmentations."""
    if not config.augmentations:
        return None

    def augment_fn(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        chosen = rng.random(len(x)) < 0.5  # augment half of each epoch's samples
        raw = splits.train.features[chosen]
        seed = int(rng.integers(2**31))
        aug = augment_dataset(
            splits.train.subset(np.flatnonzero(chosen)), config.augmentations, seed=seed
        )
        out = x.copy()
        out[chosen] = schema.normalize(aug.features) if raw.size else out[chosen]
        return out

    return augment_fn


def train(
    data: Dataset | Splits,
    architecture: str | None = None,
    *,
    model: Any = None,
    config: TrainConfig | None = None,
    model_name: str | None = None,
    out_dir: Path | str | None = None,
    progress: ProgressFn | None = None,
    loss_fn: LossFn | None = None,
) -> TrainResult:
    """Train ``architecture`` (or the user's own ``model``) on ``data``.

    Args:
        data: a Dataset (split here with ``config.seed``) or ready-made Splits.
        architecture: one of ``TORCH_ARCHITECTURES`` or ``SKLEARN_ARCHITECTURES``.
        model: instead of an architecture, your own ``torch.nn.Module`` (returning logits)
            or unfitted scikit-learn classifier/pipeline (fed flattened features).
        config: hyper-parameters and seed.
        model_name: the name in the schema (default: the dataset's name).
        out_dir: when given, the model and ``run.json`` are saved there.
        progress: called after each epoch with (epoch, max_epochs, validation stats).
        loss_fn: PyTorch models only: the training loss ``loss_fn(logits, targets, x_batch)``
            instead of cross-entropy (e.g. distillation). Early stopping still watches the
            validation cross-entropy.

    Raises:
        InvalidInput: unknown architecture, both or neither of architecture/model, or a
            ``loss_fn`` for a scikit-learn model.
    """
    config = config or TrainConfig()
    if (architecture is None) == (model is None):
        raise InvalidInput("pass exactly one of architecture= or model=")
    known = (*TORCH_ARCHITECTURES, *SKLEARN_ARCHITECTURES)
    if architecture is not None and architecture not in known:
        raise InvalidInput(f"unknown architecture {architecture!r}; choose from {', '.join(known)}")
    splits = (
        data
        if isinstance(data, Splits)
        else data.split(validation=config.validation, test=config.test, seed=config.seed)
    )
    started, t0 = RunRecord.now(), time.perf_counter()
    full = splits.train
    framework = _framework_of(architecture, model)
    if loss_fn is not None and framework != "pytorch":
        raise InvalidInput(
            f"loss_fn applies to PyTorch models only; {architecture or 'the model'} is "
            f"{framework}. Drop loss_fn or train a PyTorch architecture."
        )
    normalization = fit_normalization(full)
    flatten = framework == "sklearn" and full.layout != "NC"
    sample_shape = (int(np.prod(full.sample_shape)),) if flatten else full.sample_shape
    schema = make_schema(
        model_name or full.name.split(":")[0],
        sample_shape,
        full.class_names,
        layout="NC" if flatten else full.layout,
        normalization=normalization,
        value_range=full.value_range,
    )

    def prepare(ds: Dataset) -> np.ndarray:
        x = schema.normalize(ds.features.reshape(len(ds), *sample_shape))
        return np.ascontiguousarray(x, dtype=np.float32)

    x_train, x_val = prepare(splits.train), prepare(splits.validation)
    fit_info: dict[str, Any] = {}
    if framework == "sklearn":
        estimator = (
            model if model is not None else _sklearn_estimator(str(architecture), config.seed)
        )
        estimator.fit(x_train, splits.train.labels)
    else:
        estimator = model
        if estimator is None:
            import torch

            torch.manual_seed(config.seed)
            estimator = build_torch_model(str(architecture), sample_shape, full.num_classes)

        fit_info = _fit_torch(
            estimator,
            x_train,
            splits.train.labels,
            x_val,
            splits.validation.labels,
            config,
            _augmenter(splits, schema, config),
            progress,
            loss_fn,
        )
    trained = TrainedModel(
        framework=framework,
        architecture=architecture or "custom",
        estimator=estimator,
        schema=schema,
        params={**config.to_dict(), **fit_info},
    )
    test_metrics = evaluate(trained, splits.test)
    val_metrics = evaluate(trained, splits.validation)
    record = RunRecord(
        run_id=uuid.uuid4().hex[:12],
        model=schema.name,
        architecture=trained.architecture,
        framework=framework,
        params=trained.params | {"num_parameters": trained.num_parameters()},
        metrics=test_metrics,
        validation_metrics=val_metrics,
        dataset={
            "name": full.name.split(":")[0],
            "fingerprint": _source_fingerprint(data),
            "split_seed": splits.seed,
            "sizes": splits.sizes(),
        },
        started_at=started,
        duration_s=round(time.perf_counter() - t0, 3),
        git=git_state(),
    )
    if out_dir is not None:
        trained.save(out_dir)
        record.save(Path(out_dir) / "run.json")
    return TrainResult(trained, test_metrics, val_metrics, splits, record)


def fine_tune(
    model: TrainedModel,
    splits: Splits,
    config: TrainConfig | None = None,
    *,
    loss_fn: LossFn | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Continue training a PyTorch ``model`` in place with the loop ``train`` uses.

    The model keeps its schema (the normalization is not refitted), so a pruned or
    fake-quantized module goes on seeing exactly the inputs it was trained on. Early
    stopping on the validation loss restores the best epoch's weights.

    Args:
        model: a PyTorch TrainedModel; its ``estimator`` is updated in place.
        splits: the data; the same splits the model was trained on keeps the test honest.
        config: hyper-parameters (epochs, learning rate, augmentations, seed).
        loss_fn: the training loss ``loss_fn(logits, targets, x_batch)``; default
            cross-entropy.
        progress: called after each epoch with (epoch, max_epochs, validation stats).

    Returns:
        A TrainResult for ``model`` with test and validation metrics after fine-tuning.

    Raises:
        InvalidInput: ``model`` is not a PyTorch model, or the splits do not fit it.
    """
    config = config or TrainConfig()
    if model.framework != "pytorch":
        raise InvalidInput(
            f"fine_tune needs a PyTorch model; got a {model.framework} {model.architecture}. "
            "Retrain scikit-learn models with train()."
        )
    started, t0 = RunRecord.now(), time.perf_counter()
    x_train = model_inputs(model, splits.train)
    x_val = model_inputs(model, splits.validation)
    fit_info = _fit_torch(
        model.estimator,
        x_train,
        splits.train.labels,
        x_val,
        splits.validation.labels,
        config,
        _augmenter(splits, model.schema, config),
        progress,
        loss_fn,
    )
    test_metrics = evaluate(model, splits.test)
    val_metrics = evaluate(model, splits.validation)
    params = {**model.params, "fine_tune": {**config.to_dict(), **fit_info}}
    record = RunRecord(
        run_id=uuid.uuid4().hex[:12],
        model=model.schema.name,
        architecture=model.architecture,
        framework=model.framework,
        params=params | {"num_parameters": model.num_parameters()},
        metrics=test_metrics,
        validation_metrics=val_metrics,
        dataset={
            "name": splits.train.name.split(":")[0],
            "fingerprint": _source_fingerprint(splits),
            "split_seed": splits.seed,
            "sizes": splits.sizes(),
        },
        started_at=started,
        duration_s=round(time.perf_counter() - t0, 3),
        git=git_state(),
    )
    return TrainResult(model, test_metrics, val_metrics, splits, record)


def model_inputs(model: TrainedModel, dataset: Dataset) -> np.ndarray:
    """``dataset``'s features as ``model`` takes them: reshaped and normalized (float32).

    Raises:
        InvalidInput: the samples do not fit the model's input shape.
    """
    if int(np.prod(dataset.sample_shape)) != int(np.prod(model.sample_shape)):
        raise InvalidInput(
            f"{dataset.name} has samples of shape {dataset.sample_shape}; the model takes "
            f"{model.sample_shape}. Use the dataset the model was trained on."
        )
    x = dataset.features.reshape(len(dataset), *model.sample_shape)
    return np.ascontiguousarray(model.schema.normalize(x), dtype=np.float32)


def evaluate(model: TrainedModel, dataset: Dataset) -> dict[str, Any]:
    """Metrics of ``model`` on raw ``dataset`` (normalized as the schema says)."""
    predictions = model.predict_proba(model_inputs(model, dataset)).argmax(axis=1)
    return classification_metrics(dataset.labels, predictions, dataset.class_names)


def _framework_of(architecture: str | None, model: Any) -> str:
    if architecture in SKLEARN_ARCHITECTURES:
        return "sklearn"
    if architecture in TORCH_ARCHITECTURES:
        return "pytorch"
    if hasattr(model, "predict_proba") and hasattr(model, "fit"):
        return "sklearn"
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("torch", "build") from exc
    if isinstance(model, torch.nn.Module):
        return "pytorch"
    raise InvalidInput(
        f"model must be a torch.nn.Module or a scikit-learn classifier; got {type(model).__name__}"
    )


def _source_fingerprint(data: Dataset | Splits) -> str:
    if isinstance(data, Dataset):
        return data.fingerprint
    parts: Sequence[Dataset] = (data.train, data.validation, data.test)
    return "splits:" + ",".join(part.fingerprint for part in parts)
