"""Fixtures of the protect tests: a fresh kit (keys + plain and encrypted packages)."""

from __future__ import annotations

from pathlib import Path

import pytest
from protect_helpers import Kit, make_kit


@pytest.fixture
def kit(tmp_path: Path) -> Kit:
    """Keys and two freshly built packages (plain, encrypted) of a 4 KiB model."""
    return make_kit(tmp_path / "kit")


@pytest.fixture
def small_kit(tmp_path: Path) -> Kit:
    """Like ``kit`` with a 64-byte model: for tests that tamper with every byte."""
    return make_kit(tmp_path / "small-kit", model_size=64)
