"""``pocketml build`` on models pocketml never trained: it degrades gracefully and honestly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pocketml.convert import from_trained, to_onnx
from pocketml.errors import UnsupportedError
from pocketml.optimize.audit import is_quantized, size_flag
from pocketml.optimize.config import load_build_config
from pocketml.optimize.pipeline import run_build
from pocketml.optimize.quantize import OnnxDynamicQuantizer, OnnxStaticQuantizer

RNG = np.random.default_rng(0)
TABLE = RNG.normal(size=(200, 5)).astype(np.float32)
TABLE_Y = (TABLE[:, 0] + TABLE[:, 1] > 0).astype(int)
BENCH = "[bench]\nwarmup = 1\niterations = 5\n"


def _sklearn_onnx(tmp_path: Path, estimator: object) -> Path:
    model = from_trained(estimator, example=TABLE, labels=["no", "yes"])
    return to_onnx(model, tmp_path / "model.onnx")


def test_int8_on_a_logistic_regression_says_there_is_nothing_to_quantize(tmp_path: Path) -> None:
    src = _sklearn_onnx(tmp_path, LogisticRegression().fit(TABLE, TABLE_Y))
    for quantizer in (OnnxDynamicQuantizer(), OnnxStaticQuantizer(TABLE[:32])):
        with pytest.raises(UnsupportedError, match=r"LinearClassifier.*Ship the fp32 file"):
            quantizer.apply(src, tmp_path / "int8.onnx")
    assert not (tmp_path / "int8.onnx").exists()


def test_dynamic_int8_quantizes_a_scikit_learn_mlp_pipeline(tmp_path: Path) -> None:
    mlp = make_pipeline(StandardScaler(), MLPClassifier((16,), max_iter=30, random_state=0))
    src = _sklearn_onnx(tmp_path, mlp.fit(TABLE, TABLE_Y))
    done = OnnxDynamicQuantizer().apply(src, tmp_path / "int8.onnx")
    assert is_quantized(done.path, "onnx") and not is_quantized(src, "onnx")


def test_a_file_not_smaller_than_fp32_is_flagged() -> None:
    assert size_flag(1_000, 2_000) is None
    assert size_flag(3_000, 2_000) == "not smaller than fp32 (3,000 B vs 2,000 B)"


def test_defaults_follow_the_targets_when_optimize_is_left_out(tmp_path: Path) -> None:
    path = tmp_path / "pocketml.toml"
    path.write_text('[model]\npath = "m"\n[convert]\ntargets = ["onnx", "ort"]\n')
    config = load_build_config(path)
    assert config.optimizations("tflite") == [] and config.optimizations("coreml") == []
    assert config.optimizations("onnx") == ["static-int8", "fp16", "dynamic-int8"]


def test_a_sklearn_pipeline_builds_with_impossible_variants_skipped(tmp_path: Path) -> None:
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(TABLE, TABLE_Y)
    from_trained(pipeline, example=TABLE, labels=["no", "yes"], name="tab").save(tmp_path / "m")
    np.savez(tmp_path / "tab.npz", x=TABLE, y=TABLE_Y)
    (tmp_path / "pocketml.toml").write_text(
        f'[data]\nsource = "tab.npz"\n[model]\npath = "m"\n{BENCH}'  # default targets
    )
    outcome = run_build(load_build_config(tmp_path / "pocketml.toml"), tmp_path / "out")
    skipped = {s.name: s.reason for s in outcome.skipped}
    assert "coreml: conversion supports PyTorch models" in skipped["tab-coreml-fp32"]
    assert "tflite" in skipped["tab-tflite-fp32"]
    assert "no operator int8 quantization applies to" in skipped["tab-onnx-static-int8"]
    manifest = json.loads(outcome.build_json.read_text())
    assert {s["name"] for s in manifest["skipped"]} == set(skipped)
    chosen = {s.profile.name: s.variant.name for s in outcome.selections if s.variant}
    assert chosen["android-mid"] in {"tab-onnx-fp32", "tab-ort-fp32", "tab-onnx-fp16"}


def test_a_1d_cnn_on_an_npz_builds_to_a_variant_per_device_class(tmp_path: Path) -> None:
    x = RNG.normal(size=(120, 3, 32)).astype(np.float32)
    y = (x[:, 0].mean(axis=1) > 0).astype(int)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv1d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 32, 2),
    ).eval()
    from_trained(net, example=x, labels=["low", "high"], name="imu").save(tmp_path / "m")
    np.savez(tmp_path / "sensor.npz", x=x, y=y)
    (tmp_path / "pocketml.toml").write_text(
        '[data]\nsource = "sensor.npz"\n[model]\npath = "m"\n'
        '[convert]\ntargets = ["onnx", "ort"]\n[optimize]\nonnx = ["static-int8"]\n'
        "calibration_samples = 32\n" + BENCH
    )
    outcome = run_build(load_build_config(tmp_path / "pocketml.toml"), tmp_path / "out")
    names = {v.name for v in outcome.variants}
    assert {"imu-onnx-fp32", "imu-ort-fp32", "imu-onnx-static-int8"} <= names
    assert all(s.variant is not None for s in outcome.selections)
