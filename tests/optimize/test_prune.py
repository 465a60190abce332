"""Pruning: asked sparsity reached and permanent, structured pruning shrinks and keeps parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pocketml.errors import InvalidInput, UnsupportedError
from pocketml.optimize.prune import ChannelPruner, MagnitudePruner, export_size, weight_sparsity
from pocketml.runtime import open_runner
from pocketml.train import TrainConfig, TrainedModel, model_inputs, train


@pytest.fixture(scope="module")
def cnn(splits) -> TrainedModel:  # type: ignore[no-untyped-def]
    return train(splits, "cnn-small", config=TrainConfig(seed=0, epochs=4)).model


def _conv_and_linear_weights(module: torch.nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in module.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]


def test_magnitude_pruning_zeroes_the_asked_share_of_weights(splits, cnn) -> None:  # type: ignore[no-untyped-def]
    result = MagnitudePruner(sparsity=0.6, fine_tune_epochs=1).apply(cnn, splits)
    weights = _conv_and_linear_weights(result.model.estimator)
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert abs(zeros - round(0.6 * total)) <= 1
    assert result.sparsity == pytest.approx(0.6, abs=1e-3)
    assert result.nonzero_parameters < 0.5 * result.parameters_after


def test_magnitude_pruning_is_permanent_and_leaves_the_input_model_alone(splits, cnn) -> None:  # type: ignore[no-untyped-def]
    result = MagnitudePruner(sparsity=0.5, fine_tune_epochs=1).apply(cnn, splits)
    module = result.model.estimator
    assert not any(name.endswith("_orig") for name, _ in module.named_parameters())
    assert not any(name.endswith("_mask") for name, _ in module.named_buffers())
    assert all(not m._forward_pre_hooks for m in module.modules())
    assert weight_sparsity(cnn.estimator) < 0.01
    # the saved model holds the zeros (no masks needed to reload it)
    state = module.state_dict()
    assert set(state) == set(cnn.estimator.state_dict())


def test_fine_tuning_recovers_accuracy_lost_to_heavy_pruning(splits, cnn) -> None:  # type: ignore[no-untyped-def]
    result = MagnitudePruner(sparsity=0.85, fine_tune_epochs=2, learning_rate=1e-3).apply(
        cnn, splits
    )
    assert result.metrics_pruned["accuracy"] < result.metrics_before["accuracy"]
    assert result.metrics["accuracy"] > result.metrics_pruned["accuracy"]
    assert result.to_dict()["accuracy"] == result.metrics["accuracy"]


def test_unstructured_sparsity_shrinks_the_zip_but_not_the_file(splits, cnn) -> None:  # type: ignore[no-untyped-def]
    result = MagnitudePruner(sparsity=0.8, fine_tune_epochs=0).apply(cnn, splits)
    dense, sparse = export_size(cnn), export_size(result.model)
    assert sparse["size_bytes"] == pytest.approx(dense["size_bytes"], rel=0.02)
    assert sparse["zip_size_bytes"] < 0.7 * dense["zip_size_bytes"]


def test_channel_pruning_removes_filters_and_parameters(splits, cnn) -> None:  # type: ignore[no-untyped-def]
    result = ChannelPruner(ratio=0.5, fine_tune_epochs=1).apply(cnn, splits)
    convs = [m for m in result.model.estimator if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 16]
    assert result.parameters_after < 0.4 * result.parameters_before
    assert result.model.num_parameters() == result.parameters_after
    assert result.model.params["pruned_from"] == "cnn-small"
    assert result.metrics["accuracy"] > result.metrics_pruned["accuracy"]


def test_channel_pruning_keeps_the_filters_with_the_largest_l1_norm(splits, cnn) -> None:  # type: ignore[no-untyped-def]
    result = ChannelPruner(ratio=0.25, fine_tune_epochs=0).apply(cnn, splits)
    original = cnn.estimator[0].weight.detach()
    norms = original.abs().sum(dim=(1, 2, 3))
    expected = torch.sort(torch.topk(norms, 12).indices).values
    assert torch.equal(result.model.estimator[0].weight, original[expected])
    bn_before, bn_after = cnn.estimator[1], result.model.estimator[1]
    assert torch.equal(bn_after.running_mean, bn_before.running_mean[expected])


def test_channel_pruned_model_is_smaller_on_disk_and_its_onnx_matches_torch(
    tmp_path: Path,
    splits,  # type: ignore[no-untyped-def]
    cnn,  # type: ignore[no-untyped-def]
) -> None:
    result = ChannelPruner(ratio=0.5, fine_tune_epochs=1).apply(cnn, splits)
    sizes = export_size(result.model, tmp_path / "pruned.onnx")
    assert sizes["size_bytes"] < 0.5 * export_size(cnn)["size_bytes"]
    x = model_inputs(result.model, splits.test)
    onnx_out = open_runner(tmp_path / "pruned.onnx", "onnx").run(x)
    np.testing.assert_allclose(onnx_out, result.model.predict_proba(x), atol=1e-5)


def test_channel_pruned_model_saves_and_loads(tmp_path: Path, splits, cnn) -> None:  # type: ignore[no-untyped-def]
    result = ChannelPruner(ratio=0.5, fine_tune_epochs=0).apply(cnn, splits)
    result.model.save(tmp_path / "m")
    loaded = TrainedModel.load(tmp_path / "m")
    x = model_inputs(loaded, splits.test)
    np.testing.assert_allclose(loaded.predict_proba(x), result.model.predict_proba(x), atol=1e-6)


def test_channel_pruning_refuses_a_module_it_cannot_rewire(splits, cnn) -> None:  # type: ignore[no-untyped-def]
    class Residual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.head = torch.nn.Linear(4 * 64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head((x + self.conv(x)).flatten(1))

    custom = TrainedModel("pytorch", "custom", Residual(), cnn.schema)
    with pytest.raises(UnsupportedError, match=r"nn\.Sequential"):
        ChannelPruner(ratio=0.5).apply(custom, splits)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: MagnitudePruner(sparsity=1.0), r"sparsity must be in \[0, 1\); got 1.0"),
        (lambda: ChannelPruner(ratio=-0.1), r"ratio must be in \[0, 1\); got -0.1"),
        (lambda: MagnitudePruner(fine_tune_epochs=-1), "fine_tune_epochs must be an int >= 0"),
    ],
)
def test_bad_parameters_say_what_was_expected(factory, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match=message):
        factory()
