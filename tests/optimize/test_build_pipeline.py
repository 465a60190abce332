"""``pocketml build``: a small config end to end, and bad configs naming the field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pocketml.errors import InvalidInput, NotFound
from pocketml.monitor import ReferenceProfile, profile_model
from pocketml.optimize.config import load_build_config
from pocketml.optimize.pipeline import run_build

SMALL = """
[model]
architecture = "mlp"
[train]
epochs = 3
[convert]
targets = ["onnx", "ort", "tflite"]
[optimize]
onnx = ["static-int8", "fp16"]
tflite = ["dynamic-int8"]
coreml = []
calibration_samples = 64
[bench]
iterations = 10
warmup = 2
[budgets.android-low]
max_size_mb = 0.000001
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pocketml.toml"
    path.write_text(text)
    return path


def test_build_converts_optimizes_benchmarks_and_selects(tmp_path: Path) -> None:
    config = load_build_config(_write(tmp_path, SMALL))
    steps: list[str] = []
    outcome = run_build(
        config,
        tmp_path / "out",
        on_step=steps.append,
        show_progress=False,
        profiler=profile_model,
    )
    names = {v.name for v in outcome.variants}
    assert {
        "mlp-onnx-fp32",
        "mlp-onnx-static-int8",
        "mlp-ort-static-int8",
        "mlp-tflite-dynamic-int8",
    } <= names
    assert all(r.is_executed and r.accuracy is not None for r in outcome.results)
    manifest = json.loads(outcome.build_json.read_text())
    assert {s["profile"] for s in manifest["selections"]} == set(config.profiles)
    low = next(s for s in manifest["selections"] if s["profile"] == "android-low")
    assert low["variant"] is None  # nothing is 1 byte: the budget fails and says by how much
    assert "max_size_mb" in low["explanation"]
    chosen = {s["variant"] for s in manifest["selections"] if s["variant"]}
    for variant in manifest["variants"]:
        assert (tmp_path / "out" / variant["file"]).exists()
        assert bool(variant["profiles"]) == (variant["name"] in chosen)
    assert outcome.plot is not None and outcome.plot.stat().st_size > 0
    assert "benchmarking" in steps and "selecting" in steps
    # the reference profile of the held-out validation split, with the model's predictions
    assert "profiling the validation split" in steps
    profile = ReferenceProfile.from_dict(
        json.loads((tmp_path / "out" / manifest["reference_profile"]).read_text())
    )
    assert profile.num_classes == 10 and profile.reference.n > 0


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('[model]\narchitecture = "mlp"\n[convert]\ntargets = ["caffe"]\n', "convert.targets[0]"),
        (
            '[model]\narchitecture = "mlp"\n[budgets.android-low]\nmax_size_mb = -1\n',
            "budgets.android-low.max_size_mb",
        ),
        ('[model]\narchitecture = "mlp"\n[budgets.nokia-3310]\nmax_size_mb = 1\n', "nokia-3310"),
        ('[model]\narchitecture = "mlp"\n[train]\nepochz = 3\n', "train.epochz"),
        ("[data]\nsource = 'digits'\n", "model"),
        (
            '[model]\narchitecture = "mlp"\n[convert]\ntargets = ["onnx"]\n'
            '[optimize]\ntflite = ["fp16"]\n',
            "optimize.tflite needs 'tflite'",
        ),
    ],
)
def test_bad_configs_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(InvalidInput, match=r"pocketml\.toml") as info:
        load_build_config(_write(tmp_path, text))
    assert field in str(info.value)


def test_missing_data_and_unknown_profiles_are_clear(tmp_path: Path) -> None:
    config = load_build_config(
        _write(
            tmp_path, '[data]\nsource = "nope.csv"\ntarget = "y"\n[model]\narchitecture = "mlp"\n'
        )
    )
    with pytest.raises(NotFound, match=r"nope\.csv"):
        run_build(config, tmp_path / "out", show_progress=False)
    bad = load_build_config(
        _write(tmp_path, 'profiles = ["tamagotchi"]\n[model]\narchitecture = "mlp"\n')
    )
    with pytest.raises(InvalidInput, match=r"unknown device profile.*tamagotchi"):
        run_build(bad, tmp_path / "out", show_progress=False)


def test_cli_build_with_a_missing_config_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pocketml", "build", str(tmp_path / "missing.toml")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
