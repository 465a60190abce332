"""GET /v1/admin/models/{name}/drift and /accuracy on a live server (SQLite and PostgreSQL).

Every test reads the reports of an app of its own, so the module shares one server per
database (``module_live_server``, tests/shared_server.py) instead of starting one per test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pocketml.errors import InvalidInput, NotFound
from pocketml.sketch import ReferenceProfile
from pocketml.testing import (
    DIGITS_SCHEMA,
    AppKeys,
    LiveServer,
    model_variant,
    monitor_profile,
    push_version,
    store_sketches,
)
from shared_server import unique_app_name

HOUR = 3600
T0 = 1_795_240_000 - 1_795_240_000 % HOUR
UNTIL = T0 + 3 * HOUR


@pytest.fixture
def live_server(module_live_server: LiveServer) -> LiveServer:
    """This module's shared server (on SQLite, then PostgreSQL)."""
    return module_live_server


@pytest.fixture
def pocketml_app(live_server: LiveServer) -> AppKeys:
    """A new app on the shared server for one test."""
    return live_server.create_app(unique_app_name("monitor"))


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    return monitor_profile()


@pytest.fixture
def app(
    live_server: LiveServer, pocketml_app: AppKeys, profile: ReferenceProfile, tmp_path: Path
) -> AppKeys:
    """An app whose 'digits' v1 (with the profile) is in production, with 3 hours of
    sketches from phones (the reference world) and tablets (x0 shifted by 1 sigma)."""
    with live_server.admin(pocketml_app.admin_token) as client:
        push_version(
            client,
            "digits",
            [model_variant(tmp_path, "onnx-fp32")],
            schema=DIGITS_SCHEMA,
            stage="production",
            reference_profile=profile.to_dict(),
        )
    url = live_server.settings.resolved_database_url
    store_sketches(url, pocketml_app.app_id, profile, "phone", start=T0, seed=1)
    store_sketches(url, pocketml_app.app_id, profile, "tablet", start=T0, seed=2, shift=1.0)
    return pocketml_app


def test_the_drift_report_names_the_drifted_device_class_with_histograms(
    live_server: LiveServer, app: AppKeys
) -> None:
    with live_server.http(app.admin_token) as http:
        response = http.get("/v1/admin/models/digits/drift", params={"until": UNTIL})

    assert response.status_code == 200
    body = response.json()
    assert (body["version"], body["since"], body["until"]) == (1, UNTIL - 86_400, UNTIL)
    assert body["baseline"] == "reference" and body["group_by"] == ["device_class"]
    states = {g["labels"]["device_class"]: g["state"] for g in body["groups"]}
    assert states == {"phone": "no_drift", "tablet": "drift"}
    tablet = next(g for g in body["groups"] if g["labels"]["device_class"] == "tablet")
    top = tablet["features"][0]
    assert top["name"] == "x0" and top["state"] == "drift" and top["method"] == "wasserstein"
    histogram = top["histogram"]
    assert len(histogram["labels"]) == len(histogram["current"]) == len(histogram["reference"])
    assert len(histogram["edges"]) == len(histogram["labels"]) - 1
    assert len(body["series"]) == 24 and body["series"][-1]["n"] == 1200


def test_the_accuracy_report_estimates_every_device_class(
    live_server: LiveServer, app: AppKeys
) -> None:
    with live_server.admin(app.admin_token) as client:
        report = client.accuracy("digits", until=UNTIL, window="6h")

    assert report.since == UNTIL - 6 * HOUR
    assert report.reference_accuracy == pytest.approx(0.70, abs=0.02)
    assert {g.labels["device_class"] for g in report.groups} == {"phone", "tablet"}
    assert report.fleet.estimated is not None and report.fleet.estimated.n == 3600
    assert report.fleet.realised is None and report.fleet.state == "not_enough_data"
    assert len(report.series) == 6


def test_the_admin_client_reads_a_fleet_only_report_against_the_previous_window(
    live_server: LiveServer, app: AppKeys
) -> None:
    with live_server.admin(app.admin_token) as client:
        report = client.drift("digits", until=UNTIL, group_by="", baseline="previous")

    assert report.groups[0].labels == {} and len(report.groups) == 1
    assert report.fleet.baseline_n == 0 and report.fleet.state == "not_enough_data"
    assert "reference rows" in report.fleet.features[0].reason


def test_a_filtered_report_keeps_only_that_device_class(
    live_server: LiveServer, app: AppKeys
) -> None:
    with live_server.admin(app.admin_token) as client:
        report = client.drift("digits", until=UNTIL, device_class="phone")

    assert report.filters == {"device_class": "phone"}
    assert [g.labels for g in report.groups] == [{"device_class": "phone"}]
    assert report.fleet.state == "no_drift"


@pytest.mark.parametrize("route", ["drift", "accuracy"])
def test_the_reports_need_the_apps_admin_token(
    live_server: LiveServer, app: AppKeys, route: str
) -> None:
    path = f"/v1/admin/models/digits/{route}"
    with live_server.http() as anonymous:
        assert anonymous.get(path).status_code == 401
    with live_server.http(app.device_key) as device:
        assert device.get(path).status_code == 403
    with live_server.http(live_server.operator_token) as operator:
        assert operator.get(path).status_code == 403


@pytest.mark.parametrize("route", ["drift", "accuracy"])
def test_an_unknown_model_or_version_is_404(
    live_server: LiveServer, app: AppKeys, route: str
) -> None:
    with live_server.http(app.admin_token) as http:
        unknown_model = http.get(f"/v1/admin/models/faces/{route}")
        unknown_version = http.get(f"/v1/admin/models/digits/{route}", params={"version": 9})

    assert unknown_model.status_code == 404 and unknown_version.status_code == 404
    assert unknown_model.json()["error"]["code"] == "not_found"


def test_a_version_without_a_profile_is_404_saying_how_to_get_one(
    live_server: LiveServer, app: AppKeys, tmp_path: Path
) -> None:
    with live_server.admin(app.admin_token) as client:
        push_version(client, "digits", [model_variant(tmp_path, "bare", seed=2)])
        with pytest.raises(NotFound, match="pocketml build"):
            client.drift("digits", version=2)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"window": "10m"}, "window"),
        ({"window": "soon"}, "window"),
        ({"window": "x" * 17}, "window"),
        ({"group_by": "os"}, "group_by"),
        ({"group_by": "device_class,device_class"}, "group_by"),
        ({"baseline": "yesterday"}, "baseline"),
        ({"version": 0}, "version"),
        ({"until": -1}, "until"),
        ({"device_class": "a\x00b"}, "device_class"),
    ],
)
def test_a_bad_query_parameter_is_422_naming_it(
    live_server: LiveServer, app: AppKeys, params: dict[str, object], field: str
) -> None:
    with live_server.http(app.admin_token) as http:
        response = http.get("/v1/admin/models/digits/drift", params=params)

    assert response.status_code == 422, response.text
    assert field in response.json()["error"]["message"]


def test_the_admin_client_raises_the_servers_422_as_invalid_input(
    live_server: LiveServer, app: AppKeys
) -> None:
    with live_server.admin(app.admin_token) as client, pytest.raises(InvalidInput, match="window"):
        client.accuracy("digits", window="1m")
