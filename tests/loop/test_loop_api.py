"""The loop's admin routes on a real server (SQLite and PostgreSQL), through AdminClient.

The loop's background pass is off (``server.loop.interval_s = 0``): these tests check the
routes (queue, list, show, policy), not the job runner (test_jobs.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pocketml.config import Settings
from pocketml.errors import NotFound, ValidationFailed
from pocketml.testing import DIGITS_SCHEMA, AppKeys, LiveServer, server_settings


@pytest.fixture
def pocketml_settings(tmp_path: Path, pocketml_database_url: str) -> Settings:
    return server_settings(tmp_path / "server-home", pocketml_database_url, loop={"interval_s": 0})


@pytest.fixture
def digits(live_server: LiveServer, pocketml_app: AppKeys) -> AppKeys:
    with live_server.admin(pocketml_app.admin_token) as client:
        client.create_model("digits", DIGITS_SCHEMA)
    return pocketml_app


def test_running_a_job_twice_queues_one(live_server: LiveServer, digits: AppKeys) -> None:
    with live_server.admin(digits.admin_token) as client:
        first = client.run_loop_job("digits", note="after the holiday drift")
        second = client.run_loop_job("digits")
        listed = client.list_loop_jobs("digits")
        everything = client.list_loop_jobs()
        shown = client.show_loop_job(first.job.id)

    assert (first.created, second.created) == (True, False)
    assert second.job.id == first.job.id
    assert first.job.state == "queued" and first.job.trigger == "manual"
    assert first.job.trigger_details == {"note": "after the holiday drift"}
    assert [j.id for j in listed.items] == [first.job.id]
    assert [j.id for j in everything.items] == [first.job.id]
    assert shown.id == first.job.id and shown.created_by == f"admin:{digits.app_id}"


def test_the_run_route_answers_201_then_200(live_server: LiveServer, digits: AppKeys) -> None:
    with live_server.http(digits.admin_token) as http:
        created = http.post("/v1/admin/models/digits/loop/jobs", json={})
        again = http.post("/v1/admin/models/digits/loop/jobs", json={})

    assert (created.status_code, again.status_code) == (201, 200)


def test_the_policy_reads_with_defaults_and_a_put_replaces_it(
    live_server: LiveServer, digits: AppKeys
) -> None:
    with live_server.admin(digits.admin_token) as client:
        default = client.get_loop_policy("digits")
        stored = client.set_loop_policy(
            "digits", {"sample_weight": 3, "triggers": {"schedule_s": 86400}}
        )
        read = client.get_loop_policy("digits")

    assert default["sample_weight"] == 1 and default["gate"]["max_drop"] == 0.0
    assert stored == read
    assert read["sample_weight"] == 3 and read["triggers"]["schedule_s"] == 86400
    assert read["gate"] == default["gate"]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"gate": {"max_drop": 2}}, "max_drop"),
        ({"surprise": 1}, "surprise"),
        ({"triggers": {"alert_metrics": ["nope"]}}, "unknown alert metric"),
        ({"rollout": {"schedule": [50, 10]}}, "schedule must increase"),
    ],
)
def test_an_invalid_policy_is_a_422_naming_it_and_changes_nothing(
    live_server: LiveServer, digits: AppKeys, body: dict, named: str
) -> None:
    with live_server.admin(digits.admin_token) as client:
        client.set_loop_policy("digits", {"sample_weight": 2})
        with pytest.raises(ValidationFailed, match=named):
            client.set_loop_policy("digits", body)
        assert client.get_loop_policy("digits")["sample_weight"] == 2


def test_unknown_models_and_jobs_are_404(live_server: LiveServer, digits: AppKeys) -> None:
    with live_server.admin(digits.admin_token) as client:
        with pytest.raises(NotFound):
            client.run_loop_job("no-such-model")
        with pytest.raises(NotFound):
            client.show_loop_job("0" * 32)
        with pytest.raises(NotFound):
            client.get_loop_policy("no-such-model")


def test_another_apps_job_is_not_found(live_server: LiveServer, digits: AppKeys) -> None:
    with live_server.admin(digits.admin_token) as client:
        job = client.run_loop_job("digits").job
    other = live_server.create_app("other-app")

    with live_server.admin(other.admin_token) as client, pytest.raises(NotFound):
        client.show_loop_job(job.id)


def test_a_device_key_cannot_run_jobs(live_server: LiveServer, digits: AppKeys) -> None:
    with live_server.http(digits.device_key) as http:
        answer = http.post("/v1/admin/models/digits/loop/jobs", json={})

    assert answer.status_code in (401, 403)
