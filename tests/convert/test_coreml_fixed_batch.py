"""Core ML: a Conv1d net that cannot take a flexible batch converts with a fixed batch of 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pocketml.convert import check_coreml_spec, from_trained, to_coreml
from pocketml.convert.coreml import FIXED_BATCH, coreml_compatibility

pytest.importorskip("coremltools")


def test_a_conv1d_net_falls_back_to_a_fixed_batch_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv1d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool1d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    )
    example = np.zeros((2, 3, 16), dtype=np.float32)
    model = from_trained(net, example=example, labels=["a", "b"])
    path = to_coreml(model, tmp_path / "model.mlpackage")
    check = check_coreml_spec(model, path)
    assert check.passed and check.batch == FIXED_BATCH
    assert "batch fixed to 1" in check.summary()
    assert coreml_compatibility(path)["batch"] == FIXED_BATCH
    assert "fixed batch of 1" in caplog.text
