"""Fixtures of the rollout tests (helpers live in ``rollout_kit.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rollout_kit import World, open_world

from pocketml.registry import ModelCreate
from pocketml.testing import DIGITS_SCHEMA


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[World]:
    """App "app-a", model "digits", v1 in production and v2 as a candidate."""
    w = open_world(database_url, tmp_path)
    w.registry.create_model(w.app_id, ModelCreate(name="digits", schema=DIGITS_SCHEMA))
    w.push(seed=1)
    w.registry.set_stage(w.app_id, "digits", 1, "production")
    w.push(seed=2)
    try:
        yield w
    finally:
        w.registry.close()
