"""Quantization-aware training: int8 QDQ ONNX export that ONNX Runtime runs in int8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pocketml.errors import InvalidInput, UnsupportedError
from pocketml.optimize.qat import QATrainer, QATResult, qdq_operators
from pocketml.runtime import open_runner
from pocketml.train import TrainConfig, TrainedModel, model_inputs, train

# The stated bound: QAT int8 loses at most 3 accuracy points against the float model.
MAX_ACCURACY_DROP = 0.03


@pytest.fixture(scope="module")
def cnn(splits) -> TrainedModel:  # type: ignore[no-untyped-def]
    return train(splits, "cnn-small", config=TrainConfig(seed=0, epochs=4)).model


@pytest.fixture(scope="module")
def qat(splits, cnn, tmp_path_factory) -> QATResult:  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("qat")
    return QATrainer(epochs=2, seed=0).apply(cnn, splits, out)


def test_qat_export_holds_quantize_and_dequantize_nodes(qat: QATResult) -> None:
    counts = qdq_operators(qat.path)
    assert counts["QuantizeLinear"] >= 4 and counts["DequantizeLinear"] >= 4
    assert qat.qdq_nodes == counts
    assert qat.size_bytes < 0.6 * qat.float_size_bytes


def test_onnx_runtime_executes_the_qat_model_with_int8_kernels(qat: QATResult) -> None:
    assert "QLinearConv" in qat.int8_operators
    assert "QGemm" in qat.int8_operators


def test_qat_model_stays_within_the_stated_accuracy_bound(qat: QATResult) -> None:
    assert qat.metrics["accuracy"] >= qat.float_metrics["accuracy"] - MAX_ACCURACY_DROP
    assert qat.agreement_with_torch >= 0.97


def test_qat_file_runs_in_the_device_runner_with_a_dynamic_batch(qat: QATResult, splits) -> None:  # type: ignore[no-untyped-def]
    x = model_inputs(qat.model, splits.test)
    runner = open_runner(qat.path, "onnx")
    batch, single = runner.run(x[:7]), runner.run(x[:1])
    assert batch.shape == (7, 10)
    np.testing.assert_allclose(batch.sum(axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(single, batch[:1], atol=1e-5)


def test_post_training_int8_of_the_same_model_is_measured_alongside(qat: QATResult) -> None:
    assert qat.ptq_path is not None and qat.ptq_path.is_file()
    assert qdq_operators(qat.ptq_path)["DequantizeLinear"] > 0
    assert qat.ptq_metrics is not None
    assert qat.ptq_metrics["n"] == qat.metrics["n"]
    summary = qat.to_dict()
    assert summary["ptq_accuracy"] == qat.ptq_metrics["accuracy"]
    assert summary["qat_accuracy"] == qat.metrics["accuracy"]


def test_qat_leaves_the_float_model_untouched(cnn, splits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    before = {k: v.clone() for k, v in cnn.estimator.state_dict().items()}
    QATrainer(epochs=1, compare_ptq=False).apply(cnn, splits, tmp_path)
    after = cnn.estimator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(isinstance(m, torch.nn.Conv2d) for m in cnn.estimator if "Conv" in type(m).__name__)


def test_qat_refuses_a_module_it_cannot_fuse(cnn, splits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10), torch.nn.GELU())
    custom = TrainedModel("pytorch", "custom", module, cnn.schema)
    with pytest.raises(UnsupportedError, match="GELU"):
        QATrainer(epochs=1).apply(custom, splits, tmp_path)


def test_bad_epochs_say_what_was_expected() -> None:
    with pytest.raises(InvalidInput, match=r"epochs must be an int >= 1; got 0"):
        QATrainer(epochs=0)
