"""Fixtures of the optimize tests: one torch thread, the digits splits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from pocketml.data import Splits, load_digits


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    # small models on a shared 2-core machine: one thread avoids oversubscription
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def splits() -> Splits:
    return load_digits().split(seed=0)
