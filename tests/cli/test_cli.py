"""The CLI as a user runs it: a real ``python -m pocketml`` process.

User mistakes exit with code 2 and one paragraph on stderr, never a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pocketml import __version__


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "pocketml", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )


def assert_user_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    for fragment in fragments:
        assert fragment in message, message


def test_version_and_help() -> None:
    assert run_cli("--version").stdout.strip() == f"pocketml {__version__}"
    help_text = run_cli("--help").stdout
    for command in ("data", "train", "convert", "demo"):
        assert command in help_text


def test_data_info_prints_the_fingerprint() -> None:
    result = run_cli("data", "info", "digits", "--json")
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["rows"] == 1797 and facts["fingerprint"].startswith("sha256:")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    assert_user_error(
        run_cli("data", "info", str(tmp_path / "nope.csv"), "--target", "y"), "does not exist"
    )


def test_non_numeric_csv_column_is_named(tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("a,b,label\n1,2,x\n3,oops,y\n")
    assert_user_error(
        run_cli("data", "info", str(csv), "--target", "label"), "column 'b'", "'oops'"
    )


def test_validate_reports_a_wrong_shape(tmp_path: Path) -> None:
    schema = {
        "name": "digits",
        "inputs": [{"name": "input", "shape": [None, 1, 28, 28], "layout": "NCHW"}],
        "outputs": [{"name": "probabilities", "labels": [str(i) for i in range(10)]}],
    }
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    result = run_cli("data", "validate", "digits", "--schema", str(path))
    assert_user_error(result, "shape", "(1, 28, 28)")


def test_validate_lists_violations_with_rows(tmp_path: Path) -> None:
    schema = {
        "name": "t",
        "inputs": [{"name": "input", "shape": [None, 1], "layout": "NC", "value_range": [0, 5]}],
        "outputs": [{"name": "probabilities", "labels": ["a", "b"]}],
    }
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    (tmp_path / "t.csv").write_text("x,label\n1,a\n9,b\n2,c\n")
    result = run_cli(
        "data",
        "validate",
        str(tmp_path / "t.csv"),
        "--schema",
        str(tmp_path / "schema.json"),
        "--target",
        "label",
        "--json",
    )
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert [(v["kind"], v["row"]) for v in report["violations"]] == [("range", 2), ("label", 3)]


def test_malformed_schema_names_the_field(tmp_path: Path) -> None:
    (tmp_path / "schema.json").write_text(json.dumps({"name": "x", "inputs": [], "outputs": []}))
    result = run_cli("data", "validate", "digits", "--schema", str(tmp_path / "schema.json"))
    assert_user_error(result, "field 'inputs'")


def test_unknown_architecture_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("train", "--arch", "resnet-9000", "--out", str(tmp_path / "m"))
    assert_user_error(result, "unknown architecture 'resnet-9000'", "cnn-small")


def test_unsupported_conversion_is_a_clear_error(tmp_path: Path) -> None:
    trained = run_cli("train", "--arch", "logistic-regression", "--out", str(tmp_path / "lr"))
    assert trained.returncode == 0, trained.stderr
    result = run_cli(
        "convert", str(tmp_path / "lr"), "--to", "tflite", "--out", str(tmp_path / "b")
    )
    assert_user_error(result, "tflite", "supports PyTorch", "logistic-regression")


def test_unknown_target_lists_the_choices(tmp_path: Path) -> None:
    result = run_cli("convert", str(tmp_path), "--to", "onnx,caffe")
    assert_user_error(result, "unknown value(s) caffe", "onnx, ort, tflite, coreml")


def test_train_then_convert_writes_a_pushable_build(tmp_path: Path) -> None:
    trained = run_cli("train", "--arch", "mlp", "--epochs", "3", "--out", str(tmp_path / "mlp"))
    assert trained.returncode == 0, trained.stderr
    assert (tmp_path / "mlp" / "run.json").is_file()
    converted = run_cli(
        "convert", str(tmp_path / "mlp"), "--to", "onnx,ort", "--out", str(tmp_path / "b")
    )
    assert converted.returncode == 0, converted.stderr
    build = json.loads((tmp_path / "b" / "build.json").read_text())
    assert [v["format"] for v in build["variants"]] == ["onnx", "ort"]
    for variant in build["variants"]:
        assert (tmp_path / "b" / variant["file"]).is_file()
        assert variant["metrics"]["check"]["passed"] is True


@pytest.mark.parametrize("flag", ["--debug"])
def test_debug_shows_the_traceback(tmp_path: Path, flag: str) -> None:
    result = run_cli(flag, "data", "info", str(tmp_path / "nope.csv"), "--target", "y")
    assert result.returncode != 0
    assert "Traceback" in result.stderr
