"""The settings tree: nested groups from the environment, renamed flat variables, and
``create_app(settings)`` handing each group to what it configures."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from pocketml.config import (
    RENAMED_SERVER_SETTINGS,
    PredictSettings,
    ServerSettings,
    Settings,
    load_settings,
)
from pocketml.errors import InvalidInput
from pocketml.serving import ServingOptions


def test_a_nested_variable_sets_its_group_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POCKETML_SERVER__PREDICT__MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("POCKETML_SERVER__DEVICES__CATALOG_TTL_S", "0")

    server = load_settings().server

    assert (server.predict.max_batch_size, server.devices.catalog_ttl_s) == (8, 0.0)


def test_an_old_flat_variable_is_read_into_its_group_with_a_warning_naming_the_new_one(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("POCKETML_SERVER__PREDICT_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("POCKETML_SERVER__CHECKIN_CACHE_TTL_S", "0")

    with caplog.at_level(logging.WARNING, logger="pocketml.config"):
        server = load_settings().server

    assert (server.predict.max_batch_size, server.devices.catalog_ttl_s) == (8, 0.0)
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "POCKETML_SERVER__PREDICT_MAX_BATCH_SIZE is deprecated" in warned
    assert "read as POCKETML_SERVER__PREDICT__MAX_BATCH_SIZE" in warned
    assert "read as POCKETML_SERVER__DEVICES__CATALOG_TTL_S" in warned


@pytest.mark.parametrize("old", sorted(RENAMED_SERVER_SETTINGS))
def test_every_renamed_variable_lands_on_a_real_field(old: str) -> None:
    group, field = RENAMED_SERVER_SETTINGS[old]

    value = getattr(getattr(ServerSettings(), group), field)
    moved = ServerSettings.model_validate({old: value})

    assert getattr(getattr(moved, group), field) == value


def test_an_old_and_a_new_variable_that_disagree_stop_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POCKETML_SERVER__PREDICT_WORKERS", "4")
    monkeypatch.setenv("POCKETML_SERVER__PREDICT__WORKERS", "2")

    with pytest.raises(InvalidInput) as caught:
        load_settings()

    assert "POCKETML_SERVER__PREDICT_WORKERS (deprecated)" in str(caught.value)
    assert "POCKETML_SERVER__PREDICT__WORKERS" in str(caught.value)


def test_an_unknown_server_variable_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POCKETML_SERVER__PREDICT__MAX_BATCH", "8")  # a typo of MAX_BATCH_SIZE

    with pytest.raises(InvalidInput, match="POCKETML_SERVER__PREDICT__MAX_BATCH: Extra"):
        load_settings()


def test_a_value_out_of_bounds_is_refused_with_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POCKETML_SERVER__PREDICT__WORKERS", "0")

    with pytest.raises(InvalidInput, match="POCKETML_SERVER__PREDICT__WORKERS: Input should"):
        load_settings()


def test_pocketml_server_refuses_a_bad_variable_before_it_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pocketml.cli import EXIT_USER_ERROR, main

    monkeypatch.setenv("POCKETML_SERVER__LIMITS__MAX_UPLOAD", "1")

    with pytest.raises(SystemExit) as exited:
        main(["server", "--port", "0"])

    assert exited.value.code == EXIT_USER_ERROR
    assert "POCKETML_SERVER__LIMITS__MAX_UPLOAD" in capsys.readouterr().err


def test_groups_are_values_that_cannot_be_changed_after_start_up() -> None:
    predict = PredictSettings()

    with pytest.raises(ValidationError):
        predict.workers = 8  # type: ignore[misc]


def test_serving_options_take_every_predict_setting() -> None:
    options = {f.name for f in dataclasses.fields(ServingOptions)}
    settings = set(PredictSettings.model_fields)

    assert options - {"cache_bytes"} == settings - {"cache_mb"}


def test_serving_options_from_settings_carry_each_value() -> None:
    predict = PredictSettings(
        batching=False, max_batch_size=7, max_wait_ms=3, max_rows=9, workers=3,
        session_threads=2, inline_max_ms=0, cache_mb=2, resolve_ttl_s=0, stale_grace_s=0,
    )  # fmt: skip

    options = ServingOptions.from_settings(predict)

    assert options == ServingOptions(
        batching=False, max_batch_size=7, max_wait_ms=3, max_rows=9, workers=3,
        session_threads=2, inline_max_ms=0, cache_bytes=2 * 2**20, resolve_ttl_s=0,
        stale_grace_s=0,
    )  # fmt: skip


def test_create_app_hands_each_group_to_what_it_configures(tmp_path: Path) -> None:
    from pocketml.server.app import create_app

    settings = Settings(
        home=tmp_path / "home",
        operator_token=SecretStr("pml_op_settings-test"),
        server=ServerSettings.model_validate(
            {
                "gc_freeze": False,
                "devices": {"checkin_interval_s": 120, "catalog_ttl_s": 0, "auth_ttl_s": 0},
                "predict": {"workers": 1, "max_rows": 5},
                "telemetry_export": {"interval_s": 0, "pending_events": 7},
                "rollout_eval": {"interval_s": 0},
            }
        ),
    )
    app = create_app(settings)

    async def opened() -> tuple[object, ...]:
        async with app.router.lifespan_context(app):
            state = app.state.pocketml
            return (
                state.serving.options,
                state.delivery.checkin_interval_s,
                state.delivery.cache_ttl_s,
                state.principals.ttl_s,
                state.telemetry.export_pending_events,
            )

    serving, interval, catalog_ttl, auth_ttl, pending = asyncio.run(opened())

    assert serving == ServingOptions.from_settings(settings.server.predict)
    assert (interval, catalog_ttl, auth_ttl, pending) == (120, 0.0, 0.0, 7)
