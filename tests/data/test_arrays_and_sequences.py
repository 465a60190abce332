"""Sequences (N, C, L) and numpy dataset files reach the rest of the build."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pocketml.data import from_arrays, load_arrays, load_dataset
from pocketml.errors import InvalidInput, NotFound
from pocketml.train import fit_normalization

RNG = np.random.default_rng(0)
WINDOWS = RNG.normal(size=(20, 3, 16)).astype(np.float32)
LABELS = np.arange(20) % 2


def test_from_arrays_takes_sensor_windows_as_ncl() -> None:
    data = from_arrays(WINDOWS, LABELS)
    assert data.layout == "NCL" and data.sample_shape == (3, 16)
    splits = data.split(seed=0)
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 20


def test_a_rank_no_layout_fits_is_refused_without_recommending_it() -> None:
    with pytest.raises(InvalidInput) as info:
        from_arrays(np.zeros((4, 1, 2, 3, 4)), np.arange(4) % 2)
    assert "(N, C, L)" in str(info.value) and "got (4, 1, 2, 3, 4)" in str(info.value)


def test_ncl_normalization_is_one_mean_and_std_a_device_can_broadcast() -> None:
    norm = fit_normalization(from_arrays(WINDOWS * 5 + 2, LABELS))
    assert len(norm.mean) == 1 and len(norm.std) == 1
    assert norm.mean[0] == pytest.approx(2, abs=0.3) and norm.std[0] == pytest.approx(5, rel=0.1)


def test_an_npz_with_class_names_loads_through_load_dataset(tmp_path: Path) -> None:
    path = tmp_path / "sensor.npz"
    np.savez(path, x=WINDOWS, y=LABELS, class_names=np.array(["still", "walk"]))
    data = load_dataset(path)
    assert data.class_names == ("still", "walk") and data.layout == "NCL"
    assert data.name == "sensor"


def test_an_npy_reads_its_labels_beside_it_or_from_target(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", WINDOWS)
    with pytest.raises(NotFound, match=r"x\.labels\.npy"):
        load_arrays(tmp_path / "x.npy")
    np.save(tmp_path / "y.npy", LABELS)
    assert len(load_dataset(tmp_path / "x.npy", target="y.npy")) == 20


def test_an_npz_without_x_and_y_names_what_it_holds(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", features=WINDOWS)
    with pytest.raises(InvalidInput, match=r"'x'.*'y'.*holds features"):
        load_arrays(tmp_path / "bad.npz")


def test_object_arrays_are_refused_so_a_file_cannot_run_code(tmp_path: Path) -> None:
    np.savez(tmp_path / "obj.npz", x=np.array([object()] * 4, dtype=object), y=np.arange(4))
    with pytest.raises(InvalidInput, match="cannot read"):
        load_arrays(tmp_path / "obj.npz")
