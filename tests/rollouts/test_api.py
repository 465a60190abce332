"""The rollout admin API and check-in on a live server (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from rollout_kit import SCHEMA

from pocketml.config import ServerSettings, Settings
from pocketml.delivery import in_candidate_group
from pocketml.errors import Conflict
from pocketml.server.background import serve_in_thread
from pocketml.server.client import AdminClient
from pocketml.testing import write_model_file

OPERATOR = "pml_op_rollout-tests-operator-token"


@dataclass(frozen=True)
class Live:
    """A live server with an app whose "digits" has v1 in production and v2 pushed."""

    url: str
    admin_token: str
    device_key: str

    def admin(self) -> AdminClient:
        return AdminClient(self.url, self.admin_token)

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.admin_token}"}
        )

    def checkin_version(self, device_id: str, **facts: object) -> int | None:
        body = {
            "device_id": device_id,
            "platform": "android",
            "os_version": "14",
            "app_version": "2.0",
            "device_class": "android-mid",
            "formats": ["onnx"],
            **facts,
        }
        headers = {"Authorization": f"Bearer {self.device_key}"}
        response = httpx.post(f"{self.url}/v1/checkin", json=body, headers=headers)
        response.raise_for_status()
        (model,) = response.json()["models"]
        return model["version"]


def _push(client: AdminClient, tmp: Path, seed: int) -> int:
    path = write_model_file(tmp / f"m{seed}.onnx", "onnx", seed=seed, size=400)
    meta = {
        "variants": [
            {
                "name": "onnx-fp32",
                "format": "onnx",
                "precision": "fp32",
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "profiles": ["android-mid"],
            }
        ]
    }
    return client.push_files("digits", meta, {"onnx-fp32": path}).version


@pytest.fixture
def live(tmp_path: Path, database_url: str) -> Iterator[Live]:
    settings = Settings(
        home=tmp_path / "home",
        database_url=database_url,
        operator_token=SecretStr(OPERATOR),
        server=ServerSettings(),
    )
    with serve_in_thread(settings) as url:
        with AdminClient(url, OPERATOR) as operator:
            created = operator.create_app("app-a")
        with AdminClient(url, created.admin_token) as client:
            client.create_model("digits", schema=SCHEMA)
            _push(client, tmp_path, 1)
            client.set_stage("digits", 1, "production")
            _push(client, tmp_path, 2)
        yield Live(url, created.admin_token, created.device_key)


def test_a_rollout_is_started_moved_and_audited_through_the_api(live: Live) -> None:
    with live.admin() as client:
        rollout = client.create_rollout("digits", 2, schedule=[20, 100], min_dwell_s=60)
        assert (rollout.state, rollout.percent, rollout.control_version) == ("running", 20.0, 1)
        rollout = client.move_rollout(rollout.id, "advance", reason="looks good")
        assert rollout.percent == 100.0
        rollout = client.move_rollout(rollout.id, "complete")
        assert rollout.state == "completed"
        assert client.show_model("digits").production_version == 2
        audit = client.audit(subject=rollout.id)
    actions = [(e.action, e.to_state) for e in audit.items]
    assert actions == [("complete", "completed"), ("advance", "running"), ("create", "running")]
    assert audit.items[1].reason == "looks good"
    assert audit.items[0].actor.startswith("admin:")


def test_check_in_follows_the_rollout_bucket(live: Live) -> None:
    with live.admin() as client:
        rollout = client.create_rollout("digits", 2, schedule=[50, 100])
        assert client.show_rollout(rollout.id).percent == 50.0
    versions = {live.checkin_version(f"device-{i:03d}") for i in range(40)}
    assert versions == {1, 2}
    with live.admin() as client:
        client.move_rollout(rollout.id, "rollback")
        assert [r.state for r in client.list_rollouts().items] == ["rolled_back"]
        assert client.list_rollouts(active=True).items == []
    assert {live.checkin_version(f"device-{i:03d}") for i in range(40)} == {1}


def test_targeting_set_through_the_api_applies_at_check_in(live: Live) -> None:
    with live.admin() as client:
        client.set_targeting("digits", [{"field": "country", "in": ["DE"]}])
    assert live.checkin_version("device-001", country="DE") == 1
    assert live.checkin_version("device-001", country="FR") is None


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"schedule": [5, 50]}, "must reach 100"),
        ({"schedule": [0, 100]}, "(0, 100]"),
        ({"schedule": [10, 200]}, "(0, 100]"),
        (
            {"targeting": [{"field": "device_class", "in": ["android-low"]}]},
            "device class android-low",
        ),
        ({"targeting": [{"field": "gpu", "in": ["x"]}]}, "field must be one of"),
    ],
)
def test_invalid_rollouts_answer_422_with_the_reason(live: Live, body: dict, fragment: str) -> None:
    with live.http() as http:
        response = http.post("/v1/admin/rollouts", json={"model": "digits", "version": 2, **body})
    assert response.status_code == 422
    assert fragment in response.json()["error"]["message"]


def test_an_overlapping_rollout_answers_409(live: Live) -> None:
    with live.admin() as client:
        client.create_rollout("digits", 2)
        with pytest.raises(Conflict, match="already has an active rollout"):
            client.create_rollout("digits", 2)


def test_an_illegal_transition_answers_409_naming_the_state(live: Live) -> None:
    with live.admin() as client:
        rollout = client.create_rollout("digits", 2)
        client.move_rollout(rollout.id, "rollback")
    with live.http() as http:
        response = http.post(f"/v1/admin/rollouts/{rollout.id}/resume", json={})
    assert response.status_code == 409
    assert "it is rolled_back" in response.json()["error"]["message"]


def test_a_device_key_cannot_reach_the_rollout_routes(live: Live) -> None:
    headers = {"Authorization": f"Bearer {live.device_key}"}
    response = httpx.get(f"{live.url}/v1/admin/rollouts", headers=headers)
    assert response.status_code in (401, 403)


def test_the_bucket_formula_is_what_check_in_uses() -> None:
    assert in_candidate_group("s", "device-1", 100)
    assert not in_candidate_group("s", "device-1", 0)


def test_the_rollout_cli_starts_shows_moves_and_audits(live: Live) -> None:
    from typer.testing import CliRunner

    from pocketml.cli._rollout import rollout_app

    runner = CliRunner()
    env = {"POCKETML_SERVER_URL": live.url, "POCKETML_TOKEN": live.admin_token, "COLUMNS": "200"}
    started = runner.invoke(rollout_app, ["start", "digits", "2", "--steps", "10,100"], env=env)
    assert started.exit_code == 0, started.output
    assert "10% -> 100%" in started.output
    with live.admin() as client:
        (rollout,) = client.list_rollouts().items
    listed = runner.invoke(rollout_app, ["status"], env=env)
    assert rollout.id in listed.output and "running" in listed.output
    moved = runner.invoke(rollout_app, ["advance", rollout.id, "--reason", "ok"], env=env)
    assert "advance -> running at 100%" in moved.output
    rolled = runner.invoke(rollout_app, ["rollback", rollout.id], env=env)
    assert "rollback -> rolled_back" in rolled.output
    refused = runner.invoke(rollout_app, ["pause", rollout.id], env=env)
    assert refused.exit_code != 0
    audited = runner.invoke(rollout_app, ["audit", rollout.id], env=env)
    assert audited.output.count(rollout.id) == 3


def test_an_experiment_runs_through_the_api_and_cli(live: Live) -> None:
    from typer.testing import CliRunner

    from pocketml.cli._rollout import experiment_app

    runner = CliRunner()
    env = {"POCKETML_SERVER_URL": live.url, "POCKETML_TOKEN": live.admin_token, "COLUMNS": "200"}
    started = runner.invoke(
        experiment_app,
        ["start", "digits", "control:1:1", "new:2:1", "--metric", "error_rate"],
        env=env,
    )
    assert started.exit_code == 0, started.output
    with live.admin() as client:
        (experiment,) = client.list_experiments().items
        assert [(a.name, a.version, a.n) for a in experiment.arms] == [
            ("control", 1, 0),
            ("new", 2, 0),
        ]
        assert client.show_experiment(experiment.id).state == "running"
    assert {live.checkin_version(f"device-{i:03d}") for i in range(30)} == {1, 2}
    status = runner.invoke(experiment_app, ["status", experiment.id], env=env)
    assert "diff vs control" in status.output
    stopped = runner.invoke(experiment_app, ["stop", experiment.id, "--promote", "2"], env=env)
    assert stopped.exit_code == 0, stopped.output
    assert "promoted: v2" in stopped.output
    assert {live.checkin_version(f"device-{i:03d}") for i in range(30)} == {2}


def test_an_experiment_with_one_arm_answers_422(live: Live) -> None:
    with live.http() as http:
        response = http.post(
            "/v1/admin/experiments",
            json={"model": "digits", "arms": [{"name": "a", "version": 1}]},
        )
    assert response.status_code == 422
    assert "arms" in response.json()["error"]["message"]
