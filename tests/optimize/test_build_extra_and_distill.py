"""``run_build`` with extra training rows and with ``[distill]``; ``load_splits``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pocketml.data import Dataset, augment_dataset, parse_augmentations
from pocketml.errors import InvalidInput
from pocketml.optimize.config import BuildConfig, load_build_config
from pocketml.optimize.pipeline import BuildOutcome, load_splits, run_build
from pocketml.testing import AppKeys, LiveServer
from pocketml.train import model_inputs

TINY = """
[model]
architecture = "mlp"
[train]
epochs = 2
[convert]
targets = ["onnx"]
[optimize]
onnx = []
[bench]
iterations = 5
warmup = 0
"""
DISTILL = """
[distill]
teacher = "mlp"
teacher_epochs = 2
epochs = 2
temperature = 3.0
alpha = 0.5
"""


def _config(tmp_path: Path, text: str = TINY) -> BuildConfig:
    path = tmp_path / "pocketml.toml"
    path.write_text(text)
    return load_build_config(path)


def _extra(config: BuildConfig) -> tuple[Dataset, int]:
    """12 new rows (a dimmed copy of 12 training rows), 3 copies of training rows, 1 repeat,
    and 2 copies of test rows (the golden holdout must not leak into training)."""
    splits = load_splits(config)
    train = splits.train
    new = augment_dataset(train.subset(np.arange(12)), parse_augmentations("dim=0.5"), seed=1)
    copies = train.subset(np.arange(20, 23))
    held_out = splits.test.subset(np.arange(2))
    features = np.concatenate([new.features, copies.features, new.features[:1], held_out.features])
    labels = np.concatenate([new.labels, copies.labels, new.labels[:1], held_out.labels])
    extra = Dataset("samples", features, labels, train.class_names, value_range=train.value_range)
    return extra, 12


def _split_fingerprints(outcome: BuildOutcome) -> list[str]:
    record = json.loads((outcome.out_dir / "run.json").read_text())
    return str(record["dataset"]["fingerprint"]).removeprefix("splits:").split(",")


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> BuildOutcome:
    tmp = tmp_path_factory.mktemp("plain")
    return run_build(_config(tmp), tmp / "out", show_progress=False)


def test_load_splits_are_the_splits_the_build_uses(tmp_path: Path, plain: BuildOutcome) -> None:
    splits = load_splits(_config(tmp_path))
    assert _split_fingerprints(plain) == [
        splits.train.fingerprint,
        splits.validation.fingerprint,
        splits.test.fingerprint,
    ]
    assert plain.fingerprints["extra"] is None
    assert plain.fingerprints["training"] == splits.train.fingerprint
    assert plain.teacher is None
    manifest = json.loads(plain.build_json.read_text())
    assert manifest["params"]["fingerprints"] == plain.fingerprints
    assert {v["role"] for v in manifest["variants"]} == {"device"}


def test_extra_rows_join_training_only_deduplicated_and_weighted(
    tmp_path: Path, plain: BuildOutcome
) -> None:
    config = _config(tmp_path)
    extra, new_rows = _extra(config)
    outcome = run_build(
        config, tmp_path / "out", show_progress=False, extra_training=extra, extra_weight=3
    )
    base_train, base_val, base_test = _split_fingerprints(plain)
    train_fp, val_fp, test_fp = _split_fingerprints(outcome)
    # the golden holdout and the validation split are the very same rows; training grew
    assert (val_fp, test_fp) == (base_val, base_test)
    assert train_fp != base_train
    record = json.loads((outcome.out_dir / "run.json").read_text())
    sizes = record["dataset"]["sizes"]
    assert sizes["train"] == load_splits(config).sizes()["train"] + 3 * new_rows
    assert sizes["test"] == load_splits(config).sizes()["test"]
    manifest = json.loads(outcome.build_json.read_text())
    assert manifest["params"]["extra_training"] == {
        "rows": len(extra),
        "kept": new_rows,
        "duplicates": len(extra) - new_rows - 2,
        "holdout_copies": 2,
        "weight": 3,
        "training_rows": sizes["train"],
    }
    assert outcome.fingerprints == {
        "dataset": plain.fingerprints["dataset"],
        "extra": extra.fingerprint,
        "training": train_fp,
    }
    assert manifest["params"]["fingerprints"] == outcome.fingerprints
    assert record["dataset"]["fingerprints"] == outcome.fingerprints


def test_extra_rows_of_other_classes_or_shape_or_a_bad_weight_are_refused(tmp_path: Path) -> None:
    config = _config(tmp_path)
    extra, _ = _extra(config)
    reordered = Dataset("samples", extra.features, extra.labels, tuple(reversed(extra.class_names)))
    with pytest.raises(InvalidInput, match="same names in the same order"):
        run_build(config, tmp_path / "a", show_progress=False, extra_training=reordered)
    flat = Dataset(
        "samples",
        extra.features.reshape(len(extra), -1),
        extra.labels,
        extra.class_names,
        layout="NC",
    )
    with pytest.raises(InvalidInput, match="shape"):
        run_build(config, tmp_path / "b", show_progress=False, extra_training=flat)
    broken = extra.features.copy()
    broken[2, 0, 3, 3] = np.nan
    nan_rows = Dataset("samples", broken, extra.labels, extra.class_names)
    with pytest.raises(InvalidInput, match="1 of 18 extra training rows hold NaN"):
        run_build(config, tmp_path / "d", show_progress=False, extra_training=nan_rows)
    with pytest.raises(InvalidInput, match="extra_weight must be an int >= 1; got 0"):
        run_build(config, tmp_path / "c", show_progress=False, extra_training=extra, extra_weight=0)
    assert not (tmp_path / "a" / "build.json").exists()


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ('teacher = "resnet-152"', "distill.teacher"),
        ("alpha = 1.5", "distill.alpha"),
        ("temperature = 0", "distill.temperature"),
        ("teacher_epochs = 0", "distill.teacher_epochs"),
        ("epochs = 0", "distill.epochs"),
        ("temprature = 4", "distill.temprature"),
    ],
)
def test_bad_distill_sections_name_the_field(tmp_path: Path, section: str, field: str) -> None:
    with pytest.raises(InvalidInput, match=r"pocketml\.toml") as info:
        _config(tmp_path, TINY + "[distill]\n" + section + "\n")
    assert f"field '{field}'" in str(info.value)


def test_distill_needs_a_student_to_train(tmp_path: Path) -> None:
    text = '[model]\npath = "runs/x"\n[distill]\nteacher = "cnn-large"\n'
    with pytest.raises(InvalidInput, match="distill needs a PyTorch student"):
        _config(tmp_path, text)


def test_a_distilled_build_ships_the_teacher_as_its_cloud_variant(tmp_path: Path) -> None:
    config = _config(tmp_path, TINY + DISTILL)
    assert config.distill is not None and config.distill.alpha == 0.5
    steps: list[str] = []
    outcome = run_build(config, tmp_path / "out", show_progress=False, on_step=steps.append)
    assert outcome.teacher is not None and outcome.teacher.architecture == "mlp"
    assert outcome.model.params["distilled_from"] == "mlp"
    assert outcome.model.params["temperature"] == 3.0 and outcome.model.params["epochs"] == 2
    manifest = json.loads(outcome.build_json.read_text())
    cloud = [v for v in manifest["variants"] if v["role"] == "cloud"]
    assert [(v["name"], v["format"], v["precision"]) for v in cloud] == [
        ("teacher-mlp-onnx-fp32", "onnx", "fp32")
    ]
    assert (outcome.out_dir / cloud[0]["file"]).is_file()
    device = [v["name"] for v in manifest["variants"] if v["role"] == "device"]
    assert device == ["mlp-onnx-fp32"]
    # no device profile is served the cloud model
    assert all(s["variant"] != "teacher-mlp-onnx-fp32" for s in manifest["selections"])
    distill = manifest["params"]["distill"]
    assert distill["teacher"] == "mlp" and distill["alpha"] == 0.5
    assert 0.0 < distill["teacher_metrics"]["accuracy"] <= 1.0
    assert set(manifest["metrics"]) == {"mlp", "teacher-mlp"}
    record = json.loads((outcome.out_dir / "run.json").read_text())
    assert record["params"]["distilled_from"] == "mlp" and record["distill"] == distill
    assert steps.index("training the teacher (mlp)") < steps.index("distilling")


def test_the_cloud_api_serves_the_teacher_of_a_pushed_distilled_build(
    tmp_path: Path, live_server: LiveServer, pocketml_app: AppKeys
) -> None:
    config = _config(tmp_path, TINY + DISTILL)
    outcome = run_build(config, tmp_path / "out", show_progress=False)
    assert outcome.teacher is not None
    with live_server.admin(pocketml_app.admin_token) as client:
        pushed = client.push_build(outcome.out_dir, stage="production")
    roles = {v.name: v.role for v in pushed.variants}
    assert roles == {"mlp-onnx-fp32": "device", "teacher-mlp-onnx-fp32": "cloud"}
    rows = model_inputs(outcome.teacher, load_splits(config).test)[:4]
    with live_server.http(pocketml_app.device_key) as http:
        response = http.post(f"/v1/models/{pushed.model}/predict", json={"inputs": rows.tolist()})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["variant"] == "teacher-mlp-onnx-fp32"
    served = np.array([p["probabilities"] for p in body["predictions"]])
    np.testing.assert_allclose(served, outcome.teacher.predict_proba(rows), atol=1e-5)
    assert not np.allclose(served, outcome.model.predict_proba(rows), atol=1e-3)


@pytest.mark.parametrize(
    "raw",
    [
        {"model": {"architecture": "mlp"}, "convert": {"targets": ["onnx"]}},
        {
            "model": {"architecture": "cnn-small"},
            "distill": {},
            "monitor": {"reference_augment": "dim=0.4"},
        },
        {
            "model": {"architecture": "mlp"},
            "convert": {"targets": ["onnx", "tflite"]},
            "optimize": {"tflite": ["fp16"]},
        },
    ],
)
def test_a_stored_recipe_reads_back_as_the_same_config(raw: dict) -> None:
    """The loop re-runs the config a build stored in params.config (its JSON dump)."""
    config = BuildConfig.model_validate(raw)
    again = BuildConfig.model_validate(json.loads(json.dumps(config.model_dump(mode="json"))))
    assert again == config
    for fmt in ("onnx", "tflite", "coreml"):
        assert again.optimizations(fmt) == config.optimizations(fmt)


def test_a_set_optimization_for_a_format_that_is_not_a_target_is_refused() -> None:
    with pytest.raises(ValueError, match=r"optimize\.tflite needs 'tflite'"):
        BuildConfig.model_validate(
            {
                "model": {"architecture": "mlp"},
                "convert": {"targets": ["onnx"]},
                "optimize": {"tflite": ["fp16"]},
            }
        )


def test_the_reference_profile_rows_follow_monitor_reference_augment() -> None:
    from pocketml.optimize.pipeline import reference_rows

    config = BuildConfig.model_validate(
        {"model": {"architecture": "mlp"}, "monitor": {"reference_augment": "dim=0.4,noise=0.15"}}
    )
    splits = load_splits(config)
    rows = reference_rows(config, splits)
    expected = augment_dataset(
        splits.validation, parse_augmentations("dim=0.4,noise=0.15"), seed=config.train.seed + 5
    )
    assert np.array_equal(rows.features, expected.features)
    assert not np.array_equal(rows.features, splits.validation.features)
    plain_config = BuildConfig.model_validate({"model": {"architecture": "mlp"}})
    assert reference_rows(plain_config, splits) is splits.validation
    with pytest.raises(ValueError, match=r"monitor\.reference_augment"):
        BuildConfig.model_validate(
            {"model": {"architecture": "mlp"}, "monitor": {"reference_augment": "glow=2"}}
        )


def test_a_golden_row_that_went_through_a_device_and_back_is_still_kept_out() -> None:
    # A sample comes back from a device's float32 normalization and the server's float64
    # inversion a few ulps off: bit-exact hashing would let a test-split copy into training.
    from pocketml.optimize.pipeline import _with_extra_rows

    config = BuildConfig.model_validate({"model": {"architecture": "mlp"}})
    splits = load_splits(config)
    test = splits.test
    mean, std = np.float32(4.9), np.float32(6.1)
    on_device = ((test.features.astype(np.float32) - mean) / std).astype(np.float32)
    back = on_device.astype(np.float64) * float(std) + float(mean)
    assert not np.array_equal(back.astype(np.float32), test.features)  # not bit-identical
    extra = Dataset("samples", back, test.labels, test.class_names, layout=test.layout)

    grown, info = _with_extra_rows(splits, extra, 1)

    assert info["holdout_copies"] == len(test) and info["kept"] == 0
    assert len(grown.train) == len(splits.train)
