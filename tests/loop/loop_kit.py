"""Helpers of the loop tests: labelled samples built directly, a synthetic fleet, and
two real ONNX digits models (trained with ``pocketml.train``, converted with
``pocketml.convert``) cached per test session."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from pocketml.data import Dataset
from pocketml.loop import LabelledSamples, RecipeResult

CLASSES = tuple(str(i) for i in range(10))


def samples_from(
    features: np.ndarray,
    labels: np.ndarray,
    devices: np.ndarray,
    *,
    device_class: np.ndarray | None = None,
    prefix: str = "s",
    class_names: tuple[str, ...] = CLASSES,
) -> LabelledSamples:
    """``LabelledSamples`` of these rows (ids ``<prefix>-<i>``, version 1)."""
    n = len(labels)
    classes = device_class if device_class is not None else np.array(["android-mid"] * n)
    return LabelledSamples(
        model="digits",
        class_names=class_names,
        features=np.asarray(features, dtype=np.float32),
        labels=np.asarray(labels, dtype=np.int64),
        predicted=np.asarray(labels, dtype=np.int64),
        confidence=np.full(n, 0.9, dtype=np.float32),
        sample_id=np.array([f"{prefix}-{i}" for i in range(n)]),
        device_id=np.asarray(devices).astype(str),
        device_class=np.asarray(classes).astype(str),
        version=np.ones(n, dtype=np.int64),
        captured_at=np.zeros(n, dtype=np.float64),
    )


@dataclass
class Fleet:
    samples: LabelledSamples
    teacher: np.ndarray
    liars: set[str]
    honest: set[str]


def synthetic_fleet(
    *,
    devices: int = 50,
    per_device: int = 40,
    liar_share: float = 0.2,
    classes: int = 5,
    noise: float = 0.05,
    seed: int = 0,
) -> Fleet:
    """Gaussian classes; honest devices mislabel ``noise`` of their samples, liars flip
    every label to the next class. The teacher is right and confident on 80 % of rows."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 4, (classes, 8))
    n = devices * per_device
    truth = rng.integers(0, classes, n)
    features = centers[truth] + rng.normal(0, 1, (n, 8))
    device_of = np.repeat([f"dev-{d:03d}" for d in range(devices)], per_device)
    liars = {f"dev-{d:03d}" for d in range(int(devices * liar_share))}
    labels = truth.copy()
    lying = np.isin(device_of, sorted(liars))
    labels[lying] = (truth[lying] + 1) % classes
    slips = ~lying & (rng.random(n) < noise)
    labels[slips] = rng.integers(0, classes, slips.sum())
    teacher = np.full((n, classes), 0.05 / (classes - 1))
    sure = rng.random(n) < 0.8
    teacher[np.arange(n), truth] = np.where(sure, 0.95, 0.3)
    teacher[~sure] = 1.0 / classes
    samples = samples_from(
        features, labels, device_of, class_names=tuple(str(c) for c in range(classes))
    )
    honest = {f"dev-{d:03d}" for d in range(devices)} - liars
    return Fleet(samples, teacher, liars, honest)


@dataclass(frozen=True)
class DigitsModels:
    """A good and a poor digits model as ONNX files, the schema, and the test split."""

    good: Path
    poor: Path
    schema: dict
    test_x: np.ndarray
    test_y: np.ndarray


def train_digits_models(out: Path) -> DigitsModels:
    """Train an mlp on digits for 3 epochs (good) and one on shuffled labels (poor)."""
    from pocketml.convert import to_onnx
    from pocketml.data import Dataset, load_dataset
    from pocketml.train import TrainConfig, train

    data = load_dataset("digits")
    splits = data.split(validation=0.15, test=0.3, seed=0)
    good = train(splits, "mlp", config=TrainConfig(seed=0, epochs=3))
    rng = np.random.default_rng(1)
    shuffled = Dataset(
        "digits",
        splits.train.features,
        rng.permutation(splits.train.labels),
        splits.train.class_names,
        layout=splits.train.layout,
    )
    poor_splits = type(splits)(shuffled, splits.validation, splits.test, splits.seed)
    poor = train(poor_splits, "mlp", config=TrainConfig(seed=0, epochs=1))
    good_path = to_onnx(good.model, out / "good.onnx")
    poor_path = to_onnx(poor.model, out / "poor.onnx")
    return DigitsModels(
        good_path,
        poor_path,
        good.model.schema.to_dict(),
        np.asarray(splits.test.features, dtype=np.float32),
        np.asarray(splits.test.labels, dtype=np.int64),
    )


# -- a registry world for the jobs ---------------------------------------------------------


def write_build_dir(out: Path, model_file: Path, schema: dict) -> Path:
    """A BUILD_DIR holding ``model_file`` as its fp32 ONNX device variant."""
    import json
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_file, out / "model.onnx")
    (out / "schema.json").write_text(json.dumps(schema))
    manifest = {
        "format_version": 1,
        "model": "digits",
        "schema": "schema.json",
        "card": None,
        "params": {"config": RECIPE},
        "variants": [
            {
                "name": "mlp-onnx-fp32",
                "file": "model.onnx",
                "format": "onnx",
                "precision": "fp32",
                "role": "device",
            }
        ],
    }
    (out / "build.json").write_text(json.dumps(manifest))
    return out


RECIPE = {"model": {"architecture": "mlp"}, "data": {"source": "digits"}}
"""What the champion stores as its recipe (the test runners below never train)."""


@dataclass
class MemorySamples:
    """A sample source over fixed ``LabelledSamples`` (the sample store's two reads)."""

    samples: LabelledSamples
    calls: int = 0

    def labelled(
        self,
        app_id: str,
        model: str,
        *,
        since: float | None = None,
        until: float | None = None,
    ) -> LabelledSamples:
        self.calls += 1
        return self.samples

    def count_labelled(self, app_id: str, model: str, *, since: float | None = None) -> int:
        if since is None:
            return len(self.samples)
        return int((self.samples.captured_at > since).sum())


class Clock:
    """A settable clock (timezone-aware)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def fleet_samples(models: DigitsModels, captured_at: float) -> LabelledSamples:
    """The models' test split as samples from 10 devices in two device classes."""
    n = len(models.test_y)
    devices = np.array([f"dev-{i % 10}" for i in range(n)])
    classes = np.where(np.arange(n) % 10 < 3, "android-low", "android-mid")
    samples = samples_from(models.test_x, models.test_y, devices, device_class=classes)
    return LabelledSamples(
        **{
            **{k: getattr(samples, k) for k in samples.__dataclass_fields__},
            "captured_at": np.full(n, captured_at),
        }
    )


def restamped(path: Path, tag: str) -> Path:
    """A copy of an ONNX file with other bytes, same computation (a retrain's new file)."""
    import onnx

    model = onnx.load(str(path))
    model.doc_string = tag
    out = path.with_name(f"{path.stem}-{tag}.onnx")
    onnx.save(model, str(out))
    return out


@dataclass
class FakeRecipe:
    """A recipe runner that 'builds' ``model_file`` and records what it was given."""

    model_file: Path
    models: DigitsModels
    fail: Exception | None = None
    training: list[LabelledSamples] = field(default_factory=list)
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event | None = None

    def __call__(
        self,
        recipe: Any,
        training: LabelledSamples,
        *,
        weight: int,
        out_dir: Path,
        on_step: Callable[[str], None],
    ) -> RecipeResult:
        self.training.append(training)
        self.entered.set()
        if self.release is not None:
            assert self.release.wait(60)
        if self.fail is not None:
            raise self.fail
        on_step("training")
        golden = Dataset(
            "digits",
            self.models.test_x[:200],
            self.models.test_y[:200],
            tuple(str(i) for i in range(10)),
        )
        return RecipeResult(write_build_dir(out_dir, self.model_file, self.models.schema), golden)
