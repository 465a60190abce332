"""Fixtures of the alert tests (helpers live in ``alerts_kit.py``)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from alerts_kit import World, open_world


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[World]:
    """App "app-a" with model "digits" and an alert service (3 attempts, seeded jitter)."""
    with open_world(database_url, tmp_path, rng=random.Random(7)) as w:
        yield w
