"""Federated learning over HTTP on a live server (SQLite and PostgreSQL): the check-in
announcement, a plain round to a verified result package, the bad-input matrix, SecAgg with
a dropout, a round short of reports, and a server restarted mid-round."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from federated.fl_kit import (
    FED_PARAMS,
    SCHEMA,
    HttpTransport,
    MiniDevice,
    WireError,
    device_data,
    embed,
    federatable_onnx,
    variant_entry,
)
from pocketml.testing import AppKeys, LiveServer, push_version, server_settings
from shared_server import shared_server_fixture, unique_app_name

server = shared_server_fixture()

CHECKIN = {
    "device_id": "checkin-device-01",
    "platform": "android",
    "os_version": "14",
    "app_version": "2.3.1",
    "formats": ["onnx"],
}


def _fed_app(live: LiveServer, tmp_path: Path) -> AppKeys:
    app = live.create_app(unique_app_name("fl"))
    _fed_app_on(live, app, tmp_path)
    return app


def _fed_app_on(live: LiveServer, app: AppKeys, tmp_path: Path) -> None:
    """Push the federatable model as version 1 (production) of ``app``'s digits."""
    path = federatable_onnx(tmp_path / "model.onnx")
    with live.admin(app.admin_token) as client:
        push_version(
            client,
            "digits",
            [(variant_entry(path), path)],
            schema=SCHEMA,
            stage="production",
            params=FED_PARAMS,
        )


def _devices(app: AppKeys, n: int, prefix: str = "phone") -> list[MiniDevice]:
    keys = {k: base64.b64decode(v) for k, v in app.public_keys.items()}
    out = []
    for i in range(n):
        x, y = device_data(i)
        out.append(MiniDevice(f"{prefix}-{i:04d}", x, y, keys))
    return out


def _start(live: LiveServer, app: AppKeys, **spec: Any) -> dict[str, Any]:
    body = {
        "model": "digits",
        "version": 1,
        "rounds": 1,
        "clients_per_round": 3,
        "min_reports": 2,
        "clip_norm": 5.0,
        "recipe": {"epochs": 2, "batch_size": 8, "learning_rate": 0.5},
        **spec,
    }
    with live.http(app.admin_token) as http:
        response = http.post("/v1/admin/federated/tasks", json=body)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def _task(live: LiveServer, app: AppKeys, task_id: str) -> dict[str, Any]:
    with live.http(app.admin_token) as http:
        response = http.get(f"/v1/admin/federated/tasks/{task_id}")
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


def test_check_in_announces_an_open_task_to_targeted_devices_only(
    server: LiveServer, tmp_path: Path
) -> None:
    app = _fed_app(server, tmp_path)
    with server.http(app.device_key) as http:
        before = http.post("/v1/checkin", json=CHECKIN)
        assert "federated" not in before.json()
        task = _start(server, app, targeting=[{"field": "platform", "in": ["android"]}])
        after = http.post("/v1/checkin", json=CHECKIN)
        ios = http.post("/v1/checkin", json={**CHECKIN, "platform": "ios"})
    [entry] = after.json()["federated"]
    assert entry["task_id"] == task["id"] and entry["round"] == 1 and entry["base_version"] == 1
    assert entry["requires"] == {"charging": True, "wifi": True, "idle": False, "min_samples": 1}
    assert entry["join_url"] == f"/v1/federated/tasks/{task['id']}/join"
    assert after.headers["etag"] != before.headers["etag"]
    assert "federated" not in ios.json()
    assert ios.headers["etag"] == before.headers["etag"]  # unchanged bytes without a task


def test_a_round_over_http_ships_a_candidate_whose_package_verifies(
    server: LiveServer, tmp_path: Path
) -> None:
    from pocketml.protect import install_package

    app = _fed_app(server, tmp_path)
    task = _start(server, app, rollout={"schedule": [5, 100], "min_samples": 10})
    devices = _devices(app, 3)
    with server.http(app.device_key) as http:
        t = HttpTransport(http)
        for d in devices:
            assert d.participate(t, task["id"], 1)["accepted"] is True
        done = _task(server, app, task["id"])
        assert done["state"] == "succeeded", done["log"]
        with server.http(app.admin_token) as admin:
            rollout = admin.get(f"/v1/admin/rollouts/{done['rollout_id']}").json()
        assert rollout.get("candidate_version") == done["result_version"], done["log"]
        assert rollout["percent"] == 5
        assert done["rounds"][0]["state"] == "aggregated" and done["clients_total"] == 3
        with server.admin(app.admin_token) as client:
            version = client.show_version("digits", done["result_version"])
        assert version.parent_version == 1 and version.stage == "candidate"
        assert version.run_record["federated"]["task_id"] == task["id"]
        package = http.get(f"/v1/packages/{version.variants[0].package_id}")
    assert package.status_code == 200
    path = tmp_path / "result.pmlpkg"
    path.write_bytes(package.content)
    keys = {k: base64.b64decode(v) for k, v in app.public_keys.items()}
    installed = install_package(
        path,
        tmp_path / "result.onnx",
        trusted_keys=keys,
        app_id=app.app_id,
        content_key=lambda key_id: b"",
        package_sha256=hashlib.sha256(package.content).hexdigest(),
    )
    import onnxruntime as ort

    session = ort.InferenceSession(str(installed.model_path), providers=["CPUExecutionProvider"])
    x = np.concatenate([d.x for d in devices])
    y = np.concatenate([d.y for d in devices])
    probs, emb = session.run(["probabilities", "embedding"], {"pixels": x})
    assert np.allclose(emb, embed(x), atol=1e-5)
    assert float(np.mean(probs.argmax(1) == y)) > 0.6


def _code(call: Any) -> tuple[int, str]:
    with pytest.raises(WireError) as info:
        call()
    return info.value.status, info.value.code


def test_bad_updates_and_requests_get_a_clear_4xx_and_are_never_aggregated(
    server: LiveServer, tmp_path: Path
) -> None:
    app = _fed_app(server, tmp_path)
    task = _start(server, app, clip_norm=1.0)
    tid = task["id"]
    a, b, outsider = _devices(app, 3)
    with server.http(app.device_key) as http:
        t = HttpTransport(http)
        for d in (a, b):
            d.join(t, tid, 1)
            d.fetch(t, tid, 1)
            d.train()
        good = a.clipped.astype("<f4").tobytes()  # type: ignore[union-attr]
        cases = {
            (422, "fl_wrong_shape"): good[:-4],
            (422, "fl_not_finite"): np.full(170, np.inf, "<f4").tobytes(),
            (422, "fl_norm_too_large"): (np.ones(170, "<f4") * 3).tobytes(),
        }
        for expected, body in cases.items():
            assert _code(lambda body=body: a.upload(t, tid, 1, body)) == expected
        assert _code(lambda: outsider.upload(t, tid, 1, good)) == (403, "fl_not_selected")
        assert _code(lambda: a.upload(t, tid, 2, good)) == (409, "fl_wrong_round")
        assert _code(lambda: a.upload(t, "flt_0000000000000000", 1, good)) == (404, "not_found")
        assert _code(lambda: outsider.fetch(t, tid, 1)) == (403, "fl_not_selected")
        assert _code(
            lambda: outsider.join(
                t, tid, 1, conditions={"charging": False, "wifi": True, "idle": True}
            )
        ) == (403, "fl_not_eligible")
        url = f"/v1/federated/tasks/{tid}/rounds/1/update"
        plain = http.put(
            url,
            params={"device_id": a.device_id},
            content=good,
            headers={"Content-Type": "application/json", "Idempotency-Key": "k" * 8},
        )
        assert plain.status_code == 415
        no_key = http.put(
            url,
            params={"device_id": a.device_id},
            content=good,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert no_key.status_code == 422 and "idempotency-key" in no_key.text.lower()
        first = http.put(
            url,
            params={"device_id": a.device_id},
            content=good,
            headers={
                "Content-Type": "application/octet-stream",
                "Idempotency-Key": "upload-a-0001",
            },
        )
        again = http.put(
            url,
            params={"device_id": a.device_id},
            content=good,
            headers={
                "Content-Type": "application/octet-stream",
                "Idempotency-Key": "upload-a-0001",
            },
        )
        other = http.put(
            url,
            params={"device_id": a.device_id},
            content=good,
            headers={
                "Content-Type": "application/octet-stream",
                "Idempotency-Key": "upload-a-0002",
            },
        )
    assert (first.status_code, first.json()["duplicate"]) == (202, False)
    assert (again.status_code, again.json()["duplicate"]) == (200, True)
    assert other.status_code == 409 and other.json()["error"]["code"] == "fl_already_reported"
    info = _task(server, app, tid)
    assert info["rounds"][0]["reports"] == 1 and info["state"] == "running"


def test_a_round_whose_devices_leave_closes_without_a_model_and_retries(
    server: LiveServer, tmp_path: Path
) -> None:
    app = _fed_app(server, tmp_path)
    task = _start(server, app, max_retries=2)
    a, b, c = _devices(app, 3)
    with server.http(app.device_key) as http:
        t = HttpTransport(http)
        a.participate(t, task["id"], 1)
        for d in (b, c):
            d.join(t, task["id"], 1)
            t.leave(task["id"], 1, d.device_id, "wifi_lost")
        announced = http.post("/v1/checkin", json=CHECKIN).json()["federated"]
    info = _task(server, app, task["id"])
    assert info["rounds"][0]["state"] == "no_model"
    assert "min_reports is 2" in info["rounds"][0]["outcome"]["reason"]
    assert info["round"] == 2 and info["state"] == "running" and announced[0]["round"] == 2


def test_a_secagg_round_over_http_recovers_a_dropout(server: LiveServer, tmp_path: Path) -> None:
    app = _fed_app(server, tmp_path)
    task = _start(server, app, clients_per_round=4, min_reports=3, secagg=True)
    tid = task["id"]
    devices = _devices(app, 4)
    with server.http(app.device_key) as http:
        t = HttpTransport(http)
        for d in devices:
            d.join(t, tid, 1)
            d.fetch(t, tid, 1)
            d.train()
        short = {
            "device_id": devices[0].device_id,
            "cipher_public": "AAAA",
            "mask_public": "AAAA",
            "seed_commitment": "AAAA",
        }
        assert _code(lambda: t.secagg_post(tid, 1, "keys", short)) == (422, "fl_secagg_invalid")
        early = {"device_id": devices[0].device_id, "shares": {}}
        assert _code(lambda: t.secagg_post(tid, 1, "shares", early)) == (409, "fl_wrong_phase")
        for d in devices:
            d.advertise(t, tid, 1)
        for d in devices:
            d.share(t, tid, 1)
        for d in devices[:3]:
            d.masked_upload(t, tid, 1)
        t.leave(tid, 1, devices[3].device_id, "battery_low")  # dropped after sharing
        for d in devices[:3]:
            d.unmask(t, tid, 1)
    info = _task(server, app, tid)
    assert info["state"] == "succeeded", info["log"]
    outcome = info["rounds"][0]["outcome"]
    assert outcome["dropped"] == [devices[3].client_id] and outcome["reports"] == 3
    assert info["spec"]["secagg"] is True


def test_a_server_killed_mid_round_carries_on_after_a_restart(tmp_path: Path) -> None:
    """Two reports reach a ``pocketml server`` process, which is then killed with SIGKILL
    (no shutdown, nothing in memory survives); a new process on the same home and database
    takes the third report and the round aggregates. (SQLite; the service test runs a
    second replica on PostgreSQL.)"""
    import httpx

    from pocketml.server.background import serve_in_process
    from pocketml.testing import OPERATOR_TOKEN

    env = {
        "POCKETML_HOME": str(tmp_path / "home"),
        "POCKETML_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.db'}",
        "POCKETML_OPERATOR_TOKEN": OPERATOR_TOKEN,
    }
    with serve_in_process(env) as (process, url):
        live = LiveServer(url, server_settings(tmp_path / "unused", "sqlite://"))
        with live.admin(OPERATOR_TOKEN) as operator:
            created = operator.create_app("restart-app")
        app = AppKeys(
            created.app.id, created.admin_token, created.device_key, created.app.public_keys
        )
        _fed_app_on(live, app, tmp_path / "model")
        task = _start(live, app)
        devices = _devices(app, 3)
        with live.http(app.device_key) as http:
            for d in devices[:2]:
                d.participate(HttpTransport(http), task["id"], 1)
        process.kill()  # SIGKILL: no lifespan shutdown
        process.wait(timeout=30)
    with serve_in_process(env) as (_, url):
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {app.device_key}"}, timeout=60
        ) as http:
            devices[2].participate(HttpTransport(http), task["id"], 1)
        info = _task(LiveServer(url, live.settings), app, task["id"])
    assert info["state"] == "succeeded", info["log"]
    assert info["rounds"][0]["reports"] == 3


def test_operator_routes_list_get_and_cancel(server: LiveServer, tmp_path: Path) -> None:
    app = _fed_app(server, tmp_path)
    task = _start(server, app)
    with server.http(app.admin_token) as http:
        listed = http.get("/v1/admin/federated/tasks", params={"model": "digits"}).json()
        bad = http.post(
            "/v1/admin/federated/tasks", json={"model": "digits", "version": 1, "rounds": 0}
        )
        busy = http.post("/v1/admin/federated/tasks", json={"model": "digits", "version": 1})
        cancelled = http.post(f"/v1/admin/federated/tasks/{task['id']}/cancel")
        again = http.post(f"/v1/admin/federated/tasks/{task['id']}/cancel")
        missing = http.get("/v1/admin/federated/tasks/flt_0123456789abcdef")
    with server.http(app.device_key) as http:
        device = http.get("/v1/admin/federated/tasks")
    assert [t["id"] for t in listed["items"]] == [task["id"]]
    assert bad.status_code == 400 and "rounds" in bad.json()["error"]["message"]
    assert busy.status_code == 409
    assert cancelled.json()["state"] == "cancelled" and again.status_code == 409
    assert missing.status_code == 404 and device.status_code == 403


def _cli(live: LiveServer, app: AppKeys, *args: str) -> Any:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("POCKETML_")}
    env |= {
        "POCKETML_SERVER_URL": live.url,
        "POCKETML_TOKEN": app.admin_token,
        "COLUMNS": "80",
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "pocketml", "fl", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_the_cli_starts_lists_shows_and_cancels_at_80_columns(
    server: LiveServer, tmp_path: Path
) -> None:
    if not server.settings.resolved_database_url.startswith("sqlite"):
        pytest.skip("the CLI is a thin client: one database is enough")
    app = _fed_app(server, tmp_path)
    started = _cli(
        server,
        app,
        "start",
        "digits",
        "--version",
        "1",
        "--rounds",
        "3",
        "--clients-per-round",
        "3",
        "--dp",
        "--population",
        "100",
        "--secagg",
    )
    assert started.returncode == 0, started.stderr
    task_id = started.stdout.split()[1]
    listed = _cli(server, app, "status")
    shown = _cli(server, app, "status", task_id)
    cancelled = _cli(server, app, "cancel", task_id)
    for result in (listed, shown, cancelled):
        assert result.returncode == 0, result.stderr
        assert all(len(line) <= 80 for line in result.stdout.splitlines()), result.stdout
    assert task_id in listed.stdout and "0/3" in listed.stdout
    assert (
        "secagg on" in shown.stdout and "DP z=1.0" in shown.stdout and "selecting" in shown.stdout
    )
    assert "cancelled" in cancelled.stdout


def test_the_console_shows_the_tasks_rounds_and_result_and_cancels_with_csrf(
    server: LiveServer, tmp_path: Path
) -> None:
    from .test_console_ship import logged_in, post_form

    app = _fed_app(server, tmp_path)
    done = _start(server, app)
    with server.http(app.device_key) as http:
        for d in _devices(app, 3):
            d.participate(HttpTransport(http), done["id"], 1)
    running = _start(server, app, rounds=5)
    api = _task(server, app, done["id"])
    other = server.create_app(unique_app_name("fl-other"))
    with logged_in(server, app.admin_token) as browser:
        listing = browser.get("/ui/federated").text
        detail = browser.get(f"/ui/federated/{done['id']}").text
        forged = browser.post(f"/ui/federated/{running['id']}/cancel", data={"csrf": "0" * 64})
        cancelled = post_form(
            browser, f"/ui/federated/{running['id']}", f"/ui/federated/{running['id']}/cancel"
        )
        shown = browser.get(cancelled.headers["location"]).text
    with logged_in(server, other.admin_token) as browser:
        foreign = browser.get(f"/ui/federated/{done['id']}")
        empty = browser.get("/ui/federated").text

    assert api["state"] == "succeeded" and api["result_version"] == 2
    assert done["id"] in listing and running["id"] in listing
    assert f"/ui/models/digits/versions/{api['result_version']}" in detail
    assert f"{api['rounds_done']} / 1" in detail
    assert ">aggregated<" in detail and "the task runs without differential privacy" in detail
    assert forged.status_code == 403 and "Nothing was changed" in forged.text
    assert cancelled.status_code == 303
    assert "The task was cancelled." in shown
    assert _task(server, app, running["id"])["state"] == "cancelled"
    assert foreign.status_code == 404 and "<html" in foreign.text  # another app's: a 404 page
    assert "No federated task yet" in empty


def test_the_console_charts_epsilon_after_each_round_and_only_with_dp() -> None:
    from dataclasses import replace

    from pocketml.federated import RoundInfo, TaskInfo
    from pocketml.server.console.federated import epsilon_chart

    def rnd(n: int, eps: float | None) -> RoundInfo:
        outcome = {"epsilon": eps} if eps is not None else {"reports": 3}
        return RoundInfo(n, "aggregated", "done", 0.0, 0.0, 0.0, 3, 3, 1.0, outcome, 100.0 * n)

    base = TaskInfo(
        "flt_0123456789abcdef",
        "app",
        "digits",
        1,
        "succeeded",
        {},
        3,
        3,
        0,
        9,
        1.0,
        1.5,
        1e-5,
        2,
        None,
        None,
        [],
        "admin:app",
        *(datetime.now(UTC),) * 2,
        None,
    )
    chart = epsilon_chart(replace(base, rounds=(rnd(1, 0.5), rnd(2, 1.0), rnd(3, 1.5))))
    assert chart is not None and "<svg" in chart and "δ = 1e-05" in chart
    assert epsilon_chart(replace(base, rounds=(rnd(1, None),))) is None


def test_the_upload_says_whether_the_device_clipped_and_adaptive_clipping_counts_it(
    server: LiveServer, tmp_path: Path
) -> None:
    app = _fed_app(server, tmp_path)
    spec = {"clients_per_round": 2, "noise_multiplier": 1.0, "population": 2}
    task = _start(server, app, **spec, adaptive_clipping=True, seed=3, clip_norm=0.01)
    tid = task["id"]
    devices = _devices(app, 4)  # DP's cohort: up to 2 m
    with server.http(app.device_key) as http:
        t = HttpTransport(http)
        for d in devices:
            d.join(t, tid, 1)
            d.fetch(t, tid, 1)
            d.train()

        def put(d: MiniDevice, clipped: str) -> Any:
            return http.put(
                f"/v1/federated/tasks/{tid}/rounds/1/update",
                params={"device_id": d.device_id, "num_samples": 5, "clipped": clipped},
                # just inside C: the server's own measurement would say "not clipped"
                content=(np.asarray(d.clipped) * 0.999).astype("<f4").tobytes(),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Idempotency-Key": f"up-{d.device_id}",
                },
            )

        refused = put(devices[0], "maybe")
        assert refused.status_code == 422 and "clipped" in refused.text
        assert [put(d, "true").status_code for d in devices] == [202] * 4
    outcome = _task(server, app, tid)["rounds"][0]["outcome"]
    assert outcome["clipped"] == 4


def test_forgetting_a_device_deletes_its_rows_in_federated_rounds(
    server: LiveServer, tmp_path: Path
) -> None:
    app = _fed_app(server, tmp_path)
    tid = _start(server, app)["id"]
    gone, kept = _devices(app, 2)
    with server.http(app.device_key) as http:
        t = HttpTransport(http)
        for d in (gone, kept):
            d.participate(t, tid, 1)  # the round stays open: 2 of 3 joined
        forgot = http.delete("/v1/device/data", params={"device_id": gone.device_id})
        assert forgot.status_code == 200, forgot.text
        assert forgot.json()["federated_participants"] == 1
        # nothing of the device is left: not even its idempotency key answers a retry
        assert _code(lambda: gone.upload(t, tid, 1)) == (403, "fl_not_selected")
        assert kept.upload(t, tid, 1)["duplicate"] is True
