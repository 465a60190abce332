"""The server freezes its startup objects out of the garbage collector (``gc_freeze``)."""

from __future__ import annotations

import gc
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from pocketml.config import ServerSettings, Settings
from pocketml.server.background import serve_in_thread


@pytest.mark.parametrize("freeze", [True, False])
def test_startup_objects_are_frozen_only_when_configured(tmp_path: Path, freeze: bool) -> None:
    settings = Settings(
        home=tmp_path / "home",
        operator_token=SecretStr("pml_op_test-operator-token"),
        server=ServerSettings(gc_freeze=freeze),
    )
    gc.unfreeze()
    with serve_in_thread(settings) as url:
        assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200
        frozen = gc.get_freeze_count()
    if freeze:
        assert frozen > 10_000  # the app, its routes and schemas, the imported modules
    else:
        assert frozen == 0
