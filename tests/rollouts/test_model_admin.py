"""Correcting and deleting a model through the HTTP API and the CLI (SQLite and PostgreSQL).

The live server's app has "digits" with v1 in production and v2 pushed (``serve_live``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rollout_kit import Live, serve_live
from typer.testing import CliRunner

from pocketml.cli._admin import models_app
from pocketml.errors import Conflict, NotFound
from pocketml.server.client import AdminClient
from pocketml.testing import DIGITS_SCHEMA, OPERATOR_TOKEN


@pytest.fixture
def live(tmp_path: Path, database_url: str) -> Iterator[Live]:
    with serve_live(
        tmp_path, database_url, rollout_eval={"interval_s": 0}, telemetry_export={"interval_s": 0}
    ) as server:
        yield server


def _error(response: httpx.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert {"code", "message", "request_id"} <= set(error)
    return error


def test_a_description_is_corrected_and_audited(live: Live) -> None:
    with live.admin() as client:
        model = client.update_model("digits", description="8x8 digits, corrected")
        assert model.description == "8x8 digits, corrected"
        assert client.show_model("digits").description == "8x8 digits, corrected"
        (entry,) = [e for e in client.audit().items if e.action == "model.update"]
    assert entry.subject == model.id
    assert entry.actor.startswith("admin:")
    assert entry.details == {"model": "digits", "changed": ["description"]}


def test_a_schema_that_keeps_inputs_and_outputs_is_accepted_with_versions(live: Live) -> None:
    schema = {**DIGITS_SCHEMA, "name": "digits-renamed"}
    with live.admin() as client:
        client.update_model("digits", schema=schema)
        assert client.show_model("digits").schema_["name"] == "digits-renamed"


def test_a_schema_changing_inputs_once_versions_exist_answers_409_and_changes_nothing(
    live: Live,
) -> None:
    inputs = [{"name": "pixels", "dtype": "float32", "shape": [None, 32], "layout": "NC"}]
    with live.http() as http:
        before = http.get("/v1/admin/models/digits").json()
        response = http.patch(
            "/v1/admin/models/digits", json={"schema": {**DIGITS_SCHEMA, "inputs": inputs}}
        )
        after = http.get("/v1/admin/models/digits").json()
    assert "inputs and outputs cannot change" in _error(response, 409)["message"]
    assert after == before


def test_any_valid_schema_goes_while_a_model_has_no_version(live: Live) -> None:
    inputs = [{"name": "x", "dtype": "float32", "shape": [None, 3], "layout": "NC"}]
    with live.admin() as client:
        client.create_model("fresh", schema=DIGITS_SCHEMA)
        model = client.update_model("fresh", schema={**DIGITS_SCHEMA, "inputs": inputs})
    assert model.schema_["inputs"][0]["name"] == "x"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "description"),
        ({"schema": {**DIGITS_SCHEMA, "inputs": []}}, "inputs"),
        ({"description": "x" * 2001}, "description"),
        ({"name": "other"}, "name"),
        ({"description": "bad \x00 text"}, "NUL"),
    ],
)
def test_a_bad_correction_answers_422_and_changes_nothing(
    live: Live, body: dict[str, object], fragment: str
) -> None:
    with live.http() as http:
        before = http.get("/v1/admin/models/digits").json()
        response = http.patch(  # json.dumps escapes lone surrogates as \ud800
            "/v1/admin/models/digits",
            content=json.dumps(body),
            headers={"Content-Type": "application/json"},
        )
        after = http.get("/v1/admin/models/digits").json()
    assert fragment in _error(response, 422)["message"]
    assert after == before


def test_a_correction_with_a_lone_surrogate_is_malformed_json_and_changes_nothing(
    live: Live,
) -> None:
    with live.http() as http:
        before = http.get("/v1/admin/models/digits").json()
        response = http.patch(  # json.dumps escapes lone surrogates as \ud800
            "/v1/admin/models/digits",
            content=json.dumps({"description": "bad \ud800 text"}),
            headers={"Content-Type": "application/json"},
        )
        after = http.get("/v1/admin/models/digits").json()
    assert "lone surrogate" in _error(response, 400)["message"]
    assert after == before


def test_deleting_a_model_with_an_active_rollout_needs_force(live: Live) -> None:
    with live.admin() as client:
        rollout = client.create_rollout("digits", 2)
        with pytest.raises(Conflict, match=f"rollout {rollout.id}"):
            client.delete_model("digits")
        assert client.show_model("digits").production_version == 1
        client.delete_model("digits", force=True)
        with pytest.raises(NotFound):
            client.show_model("digits")
        assert client.list_rollouts().items == []
        (entry,) = [e for e in client.audit().items if e.action == "model.delete"]
    assert entry.details["interrupted"] == [rollout.id]
    assert entry.details["versions"] == 2 and entry.details["force"] is True


def test_a_deleted_model_leaves_check_in_and_its_packages_go(live: Live) -> None:
    with live.admin() as client:
        package = client.show_version("digits", 1).variants[0].package_id
        assert "digits" in live.checkin("device-1")
        client.delete_model("digits")
    assert live.checkin("device-1") == {}
    response = httpx.get(
        f"{live.url}/v1/packages/{package}",
        headers={"Authorization": f"Bearer {live.device_key}"},
    )
    assert response.status_code == 404


def test_another_apps_token_cannot_delete_a_model(live: Live) -> None:
    with AdminClient(live.url, OPERATOR_TOKEN) as operator:
        other = operator.create_app("app-b")
    with AdminClient(live.url, other.admin_token) as client, pytest.raises(NotFound):
        client.delete_model("digits")
    with live.admin() as client:
        assert client.show_model("digits").production_version == 1


def test_the_cli_updates_and_deletes_a_model_after_confirmation(live: Live, tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"POCKETML_SERVER_URL": live.url, "POCKETML_TOKEN": live.admin_token}
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({**DIGITS_SCHEMA, "name": "digits-v2"}))
    updated = runner.invoke(
        models_app, ["update", "digits", "--description", "new", "--schema", str(schema)], env=env
    )
    assert updated.exit_code == 0, updated.output
    refused = runner.invoke(models_app, ["delete", "digits"], input="n\n", env=env)
    assert refused.exit_code == 1 and "Nothing deleted" in refused.output
    with live.admin() as client:
        assert client.show_model("digits").description == "new"
    deleted = runner.invoke(models_app, ["delete", "digits", "--yes"], env=env)
    assert deleted.exit_code == 0, deleted.output
    with live.admin() as client, pytest.raises(NotFound):
        client.show_model("digits")


def test_deleting_a_model_with_a_running_experiment_needs_force(live: Live) -> None:
    with live.admin() as client:
        experiment = client.start_experiment(
            "digits", [{"name": "a", "version": 1}, {"name": "b", "version": 2}]
        )
        with pytest.raises(Conflict, match=f"experiment {experiment.id}"):
            client.delete_model("digits")
        client.delete_model("digits", force=True)
        assert client.list_experiments().items == []
