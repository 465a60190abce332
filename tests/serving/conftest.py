"""Fixtures of the serving tests: a real digits model, live servers with chosen options."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "delivery"))

from device_kit import (
    AppKeys,
    DeviceServer,
    DigitsBuild,
    build_digits,
    onnx_variant,
    serve_device_app,
)


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> DigitsBuild:
    """Logistic regression on digits (seed 0), converted to ONNX, trained once per session."""
    return build_digits(tmp_path_factory.mktemp("digits"))


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[DeviceServer]:
    """A live server with default serving options (batching on)."""
    with serve_device_app(tmp_path / "home", database_url) as live:
        yield live


@pytest.fixture
def digits_app(server: DeviceServer, digits: DigitsBuild) -> AppKeys:
    """An app whose 'digits' model has the real ONNX file as its production cloud variant."""
    app = server.create_app("serving")
    server.push(app, "digits", [onnx_variant(digits, "lr-onnx-fp32")], schema=digits.schema)
    return app
