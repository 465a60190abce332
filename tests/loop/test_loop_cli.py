"""``pocketml loop ...`` against a live server, in a child process at 80 columns.

The server's own loop pass is off; a second ``LoopService`` on its database (a replica,
with an injected sample source and recipe runner) runs the jobs the CLI queues.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from loop_kit import RECIPE, Clock, DigitsModels, FakeRecipe, MemorySamples, fleet_samples
from loop_kit import write_build_dir as build_dir

from pocketml.config import Settings
from pocketml.delivery import DeliveryService
from pocketml.loop import LoopService
from pocketml.protect import MasterKey
from pocketml.registry import Registry, open_artifact_store
from pocketml.server._loop import make_pusher
from pocketml.testing import AppKeys, LiveServer, server_settings

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def pocketml_settings(tmp_path: Path, pocketml_database_url: str) -> Settings:
    return server_settings(tmp_path / "server-home", pocketml_database_url, loop={"interval_s": 0})


@dataclass
class Live:
    server: LiveServer
    app: AppKeys
    replica: LoopService


@pytest.fixture
def live(
    live_server: LiveServer, pocketml_app: AppKeys, digits_models: DigitsModels, tmp_path: Path
) -> Iterator[Live]:
    with live_server.admin(pocketml_app.admin_token) as client:
        client.create_model("digits", digits_models.schema)
    settings = live_server.settings
    registry = Registry(
        settings.resolved_database_url,
        open_artifact_store(settings.resolved_artifact_url),
        MasterKey.load_or_create(settings.home / "master.key"),
        tmp_dir=tmp_path,
    )
    registry.open()
    try:
        push = make_pusher(registry)
        champion = build_dir(tmp_path / "champion", digits_models.poor, {})
        version = push(pocketml_app.app_id, "digits", champion, {"params": {"config": RECIPE}})
        registry.set_stage(pocketml_app.app_id, "digits", version, "production")
        delivery = DeliveryService(registry)
        delivery.open()
        samples = MemorySamples(fleet_samples(digits_models, (T0 - timedelta(hours=1)).timestamp()))
        replica = LoopService(
            registry.store.engine,
            registry,
            delivery,
            None,
            samples,
            FakeRecipe(digits_models.good, digits_models),
            push,
            Clock(T0),
            work_dir=tmp_path / "work",
            owner="replica",
        )
        yield Live(live_server, pocketml_app, replica)
    finally:
        registry.close()


def _env(live: Live) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POCKETML_")}
    env |= {"POCKETML_SERVER_URL": live.server.url, "POCKETML_TOKEN": live.app.admin_token}
    return env | {
        "COLUMNS": "80",
        "POCKETML_HOME": str(live.server.settings.home),
        "PYTHONUNBUFFERED": "1",
    }


def cli(live: Live, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pocketml", "loop", *args]
    return subprocess.run(command, env=_env(live), capture_output=True, text=True, timeout=120)


def fits(result: subprocess.CompletedProcess[str]) -> bool:
    return all(len(line) <= 80 for line in result.stdout.splitlines())


def test_run_status_and_one_jobs_gate_numbers(live: Live) -> None:
    queued = cli(live, "run", "digits", "--note", "drift on android-low")
    live.replica.tick(T0)
    listed = cli(live, "status")
    [job] = live.replica.list_jobs(live.app.app_id, "digits")
    shown = cli(live, "status", job.id[:8])

    for result in (queued, listed, shown):
        assert result.returncode == 0, result.stderr
        assert fits(result), result.stdout
    assert f"job {job.id} of digits queued" in queued.stdout
    assert job.id[:8] in listed.stdout and "succeeded" in listed.stdout
    assert "manual" in listed.stdout and "collect" in listed.stdout
    assert "v2" in listed.stdout and "blessed" in listed.stdout
    assert "golden holdout" in shown.stdout and "fresh samples" in shown.stdout
    assert "gate" in shown.stdout and "rollout" in shown.stdout
    assert shown.stdout.count("\n") > 10


def test_run_wait_follows_the_job_and_exits_by_its_verdict(live: Live) -> None:
    job, _ = live.replica.run(live.app.app_id, "digits", actor="ci")
    command = [sys.executable, "-m", "pocketml", "loop", "run", "digits", "--wait", "--poll", "0.2"]
    with subprocess.Popen(
        command, env=_env(live), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as follower:
        assert follower.stdout is not None
        first = follower.stdout.readline()  # the CLI found the job: now let it finish
        live.replica.tick(T0)
        out, err = follower.communicate(timeout=120)

    assert f"job {job.id} of digits already active" in first
    assert follower.returncode == 0, err
    assert "succeeded" in out


def test_policy_shows_defaults_and_sets_dotted_keys(live: Live) -> None:
    shown = cli(live, "policy", "digits")
    changed = cli(
        live, "policy", "digits", "--set", "gate.max_drop=0.02", "--set", "triggers.schedule_s=3600"
    )
    refused = cli(live, "policy", "digits", "--set", "gate.max_drop=5")

    assert shown.returncode == 0 and '"max_drop": 0.0' in shown.stdout
    assert changed.returncode == 0, changed.stderr
    assert '"max_drop": 0.02' in changed.stdout and '"schedule_s": 3600' in changed.stdout
    assert refused.returncode == 2
    assert "max_drop" in refused.stderr + refused.stdout
    assert live.replica.get_policy(live.app.app_id, "digits").gate.max_drop == 0.02


def test_status_of_an_unknown_reference_says_how_to_list(live: Live) -> None:
    result = cli(live, "status", "zzzzzzzz")

    assert result.returncode == 2
    assert "pocketml loop status" in result.stderr + result.stdout
