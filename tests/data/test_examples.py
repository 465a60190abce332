"""examples/: one valid ``pocketml.toml`` per modality, each with a seeded data generator.

Each example's generator writes its data into the test's folder, the config next to it
loads, and the data loads with the layout the modality promises (and the configured
augmentations fit it); the tabular example is also built end to end (a few seconds).
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from pocketml.data import load_dataset, parse_augmentations
from pocketml.optimize.config import BenchSection, load_build_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _example(name: str, tmp_path: Path) -> Path:
    """Copy examples/<name> into ``tmp_path`` and generate its data there."""
    folder = tmp_path / name
    shutil.copytree(EXAMPLES / name, folder)
    _module(folder / "make_data.py").main(folder / "data")
    return folder / "pocketml.toml"


def _module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{path.parent.name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("name", "layout", "sample_shape", "classes"),
    [
        ("image", "NCHW", (1, 8, 8), 4),
        ("sensor", "NCL", (3, 64), 3),
        ("tabular", "NC", (6,), 2),
    ],
)
def test_each_example_config_loads_its_generated_data_in_its_layout(
    tmp_path: Path, name: str, layout: str, sample_shape: tuple[int, ...], classes: int
) -> None:
    config = load_build_config(_example(name, tmp_path))
    data = load_dataset(config.data.source, target=config.data.target, shape=config.data.shape)
    assert (data.layout, data.sample_shape, len(data.class_names)) == (
        layout,
        sample_shape,
        classes,
    )
    assert len(data) == 600
    parse_augmentations(config.train.augment, layout=layout)  # refuses a misfit


def test_the_generated_data_is_the_same_on_every_run(tmp_path: Path) -> None:
    digests = []
    for run in ("a", "b"):
        path = _module(EXAMPLES / "sensor" / "make_data.py").main(tmp_path / run)
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_the_tabular_example_builds_a_variant_per_device_class(tmp_path: Path) -> None:
    from pocketml.optimize.pipeline import run_build

    config = load_build_config(_example("tabular", tmp_path))
    config = config.model_copy(update={"bench": BenchSection(warmup=1, iterations=5)})
    outcome = run_build(config, tmp_path / "build-out", show_progress=False)
    chosen = {s.profile.name: s.variant.name for s in outcome.selections if s.variant}
    assert set(chosen) == set(config.profiles)
    assert all(name.startswith("logistic-regression-") for name in chosen.values())
    assert outcome.build_json.is_file()
