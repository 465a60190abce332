"""Fixtures of the serving tests: a real digits model, live servers with chosen options."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serving_kit import DigitsBuild, build_digits, onnx_variant

from pocketml.testing import AppKeys, LiveServer, live_server, server_settings
from shared_server import unique_app_name


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> DigitsBuild:
    """Logistic regression on digits (seed 0), converted to ONNX, trained once per session."""
    return build_digits(tmp_path_factory.mktemp("digits"))


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[LiveServer]:
    """A live server with default serving options (batching on)."""
    settings = server_settings(tmp_path / "home", database_url, devices={"catalog_ttl_s": 0})
    with live_server(settings) as live:
        yield live


@pytest.fixture
def digits_app(server: LiveServer, digits: DigitsBuild) -> AppKeys:
    """An app whose 'digits' model has the real ONNX file as its production cloud variant."""
    app = server.create_app(unique_app_name("serving"))
    server.push(app, "digits", [onnx_variant(digits, "lr-onnx-fp32")], schema=digits.schema)
    return app
