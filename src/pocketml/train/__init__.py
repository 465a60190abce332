"""Training: reference models (scikit-learn and PyTorch) or your own, with run records.

>>> from pocketml.data import load_digits
>>> from pocketml.train import TrainConfig, train
>>> result = train(load_digits(), "cnn-small", config=TrainConfig(seed=0))  # doctest: +SKIP
>>> result.metrics["accuracy"]  # doctest: +SKIP
"""

from pocketml.train.architectures import SKLEARN_ARCHITECTURES, TORCH_ARCHITECTURES
from pocketml.train.metrics import classification_metrics
from pocketml.train.model import TrainedModel, make_schema
from pocketml.train.record import RunRecord
from pocketml.train.trainer import (
    LossFn,
    TrainConfig,
    TrainResult,
    evaluate,
    fine_tune,
    fit_normalization,
    model_inputs,
    train,
)

__all__ = [
    "SKLEARN_ARCHITECTURES",
    "TORCH_ARCHITECTURES",
    "LossFn",
    "RunRecord",
    "TrainConfig",
    "TrainResult",
    "TrainedModel",
    "classification_metrics",
    "evaluate",
    "fine_tune",
    "fit_normalization",
    "make_schema",
    "model_inputs",
    "train",
]
