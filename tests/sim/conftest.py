"""Fixtures of the simulation tests: a real server with the demo model in production."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pocketml.sim import write_demo_build
from pocketml.testing import live_server, server_settings


@pytest.fixture(scope="module")
def shipped_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(server URL, device key) of a real server with the demo model in production."""
    build = write_demo_build(tmp_path_factory.mktemp("build"), formats=("onnx", "tflite"))
    # the check-in catalog cache off: a promotion is seen by the next check-in
    settings = server_settings(tmp_path_factory.mktemp("home"), devices={"catalog_ttl_s": 0})
    with live_server(settings) as live:
        created = live.create_app("sim-tests")
        with live.admin(created.admin_token) as admin:
            admin.push_build(build, stage="production")
        yield live.url, created.device_key
