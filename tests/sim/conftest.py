"""Fixtures of the simulation tests: a real server with the demo model in production."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from pocketml.config import ServerSettings, Settings
from pocketml.server.background import serve_in_thread
from pocketml.server.client import AdminClient
from pocketml.sim import write_demo_build

OPERATOR_TOKEN = "pml_op_sim-tests"


class _FreshCatalogSettings(ServerSettings):
    """Server settings with the check-in catalog cache off (read by ``create_app``)."""

    checkin_cache_ttl_s: float = 0.0


@pytest.fixture(scope="module")
def shipped_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(server URL, device key) of a real server with the demo model in production."""
    build = write_demo_build(tmp_path_factory.mktemp("build"), formats=("onnx", "tflite"))
    settings = Settings(
        home=tmp_path_factory.mktemp("home"),
        operator_token=SecretStr(OPERATOR_TOKEN),
        server=_FreshCatalogSettings(),
    )
    with serve_in_thread(settings) as url:
        with AdminClient(url, OPERATOR_TOKEN) as operator:
            created = operator.create_app("sim-tests")
        with AdminClient(url, created.admin_token) as admin:
            admin.push_build(build, stage="production")
        yield url, created.device_key
