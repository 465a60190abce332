"""Bring your own model: import routes convert without retraining and pass parity."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pocketml.convert import check_parity, convert_model, from_trained, load_trained_file
from pocketml.errors import InvalidInput, ParityError
from pocketml.train import TrainedModel

RNG = np.random.default_rng(0)
SENSOR = RNG.normal(size=(64, 3, 32)).astype(np.float32)
TABLE = RNG.normal(size=(80, 5)).astype(np.float32)
TABLE_Y = (TABLE[:, 0] + TABLE[:, 1] > 0).astype(int)


def _conv1d() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv1d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool1d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    ).eval()


def _pipeline() -> object:
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(TABLE, TABLE_Y)


def test_a_torch_conv1d_imports_with_an_ncl_schema_and_converts_with_parity(
    tmp_path: Path,
) -> None:
    net = _conv1d()
    before = [p.detach().clone() for p in net.parameters()]
    model = from_trained(net, example=SENSOR[:4], labels=["a", "b", "c"], name="sensor")
    assert model.schema.input.layout == "NCL" and model.sample_shape == (3, 32)
    results = convert_model(model, ["onnx", "ort"], tmp_path, samples=SENSOR)
    assert [r.check.passed for r in results] == [True, True]
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_a_sklearn_pipeline_imports_raw_inputs_and_converts_with_parity(tmp_path: Path) -> None:
    model = from_trained(_pipeline(), example=TABLE, labels=["no", "yes"])
    assert model.schema.input.normalization is None  # the pipeline scales its own inputs
    results = convert_model(model, ["onnx", "ort"], tmp_path, samples=TABLE, labels=TABLE_Y)
    assert all(r.check.passed for r in results)
    assert results[0].accuracy is not None and results[0].accuracy > 0.9


def test_an_onnx_file_of_logits_gets_a_softmax_and_the_pocketml_names(tmp_path: Path) -> None:
    net = _conv1d()
    source = tmp_path / "theirs.onnx"
    torch.onnx.export(
        net,
        (torch.zeros(1, 3, 32),),
        str(source),
        input_names=["x"],
        output_names=["scores"],
        dynamo=False,
    )  # a fixed batch of 1 and foreign names, as files from elsewhere often are
    model = from_trained(load_trained_file(source), example=SENSOR, labels=["a", "b", "c"])
    expected = torch.softmax(net(torch.from_numpy(SENSOR)), -1).detach().numpy()
    np.testing.assert_allclose(model.predict_proba(SENSOR), expected, atol=1e-5)
    results = convert_model(model, ["ort"], tmp_path / "out", samples=SENSOR)
    assert results[0].check.passed
    model.save(tmp_path / "saved")
    again = TrainedModel.load(tmp_path / "saved")
    np.testing.assert_allclose(again.predict_proba(SENSOR), expected, atol=1e-5)


def test_a_torchscript_file_round_trips_through_save_and_load(tmp_path: Path) -> None:
    torch.jit.save(torch.jit.script(_conv1d()), str(tmp_path / "net.pt"))
    model = from_trained(
        load_trained_file(tmp_path / "net.pt"), example=SENSOR, labels=["a", "b", "c"]
    )
    model.save(tmp_path / "saved")
    loaded = TrainedModel.load(tmp_path / "saved")
    results = convert_model(loaded, ["onnx"], tmp_path / "out", samples=SENSOR)
    assert results[0].check.passed


def test_a_pickle_is_refused_unless_trusted(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(_pipeline()))
    with pytest.raises(InvalidInput, match="trust-pickle"):
        load_trained_file(path)
    assert hasattr(load_trained_file(path, trust_pickle=True), "predict_proba")


def test_labels_that_do_not_match_the_outputs_are_refused() -> None:
    with pytest.raises(InvalidInput, match=r"one label per output class"):
        from_trained(_conv1d(), example=SENSOR[:2], labels=["a", "b"])


def test_convert_to_ort_never_reads_or_deletes_a_foreign_model_onnx(tmp_path: Path) -> None:
    foreign = tmp_path / "model.onnx"
    foreign.write_bytes(b"someone else's model")
    model = from_trained(_pipeline(), example=TABLE, labels=["no", "yes"])
    results = convert_model(model, ["ort"], tmp_path, samples=TABLE)
    assert results[0].check.passed  # converted from this model, not from the foreign file
    assert foreign.read_bytes() == b"someone else's model"


def test_parity_advice_names_the_cause_not_a_looser_tolerance() -> None:
    reference = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    other_model = np.eye(3, dtype=np.float32)[[1, 2, 0, 1]]
    with pytest.raises(ParityError) as info:
        check_parity("ort", reference, other_model)
    assert "computes something else" in str(info.value)
    assert "would hide the error" in str(info.value)
    with pytest.raises(ParityError, match=r"pass --atol"):
        check_parity("ort", reference, reference + 3e-4)
