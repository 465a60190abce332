"""The authorization matrix: every route x every kind of caller -> the expected status.

Callers: no token, a wrong token, app A's device key, app B's device key, app B's admin
token, the operator token, app A's own admin token. Objects belong to app A, so app B's
tokens must get 404 for them (never 403: existence is not leaked). Rows run in order and
the own-admin column runs last in each row, so mutations happen after every refusal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pocketml.server.client import _MultipartBody
from pocketml.server.schemas import AppCreatedPublic, VersionPublic
from pocketml.testing import DIGITS_SCHEMA, OPERATOR_TOKEN, LiveServer, write_model_file

from .conftest import push_two_variants, sha256_of

CALLERS = ("none", "wrong", "device", "other_device", "other_admin", "operator", "own_admin")


@dataclass(frozen=True)
class Row:
    """One route and the status expected for each caller, in CALLERS order."""

    method: str
    path: str
    expected: tuple[int, ...]
    body: str = "none"


# Status per caller:     none wrong dev  oDev oAdm oper own
ROWS = (
    Row("GET", "/healthz", (200, 200, 200, 200, 200, 200, 200)),
    Row("POST", "/v1/admin/apps", (401, 401, 403, 403, 403, 201, 403), "new_app"),
    Row("GET", "/v1/admin/apps", (401, 401, 403, 403, 403, 200, 403)),
    Row("GET", "/v1/admin/app", (401, 401, 403, 403, 200, 403, 200)),
    Row("POST", "/v1/admin/app/rotate", (401, 401, 403, 403, 200, 403, 200), "rotate"),
    Row("POST", "/v1/admin/models", (401, 401, 403, 403, 201, 403, 201), "new_model"),
    Row("GET", "/v1/admin/models", (401, 401, 403, 403, 200, 403, 200)),
    Row("GET", "/v1/admin/models/digits", (401, 401, 403, 403, 404, 403, 200)),
    Row("GET", "/v1/admin/models/digits/versions", (401, 401, 403, 403, 404, 403, 200)),
    Row("GET", "/v1/admin/models/digits/versions/1", (401, 401, 403, 403, 404, 403, 200)),
    Row(
        "POST",
        "/v1/admin/models/digits/versions/1/stage",
        (401, 401, 403, 403, 404, 403, 200),
        "stage",
    ),
    Row("POST", "/v1/admin/models/digits/versions", (401, 401, 403, 403, 404, 403, 201), "push"),
    Row("DELETE", "/v1/admin/models/digits/versions/2", (401, 401, 403, 403, 404, 403, 204)),
    Row("GET", "/v1/packages/{package_id}", (200, 401, 200, 404, 404, 403, 200)),
    Row("HEAD", "/v1/packages/{package_id}", (200, 401, 200, 404, 404, 403, 200)),
)


def _request_kwargs(body: str, tmp_path: Path, counter: int) -> dict[str, Any]:
    if body == "new_app":
        return {"json": {"name": f"matrix-app-{counter}"}}
    if body == "rotate":
        return {"json": {"credential": "signing_key"}}
    if body == "new_model":
        return {"json": {"name": "fresh", "schema": DIGITS_SCHEMA}}
    if body == "stage":
        return {"json": {"stage": "production"}}
    if body == "push":
        model_file = write_model_file(
            tmp_path / f"push-{counter}.onnx", "onnx", seed=counter, size=4096
        )
        meta = {
            "variants": [
                {
                    "name": "v",
                    "format": "onnx",
                    "precision": "fp32",
                    "sha256": sha256_of(model_file),
                }
            ]
        }
        multipart = _MultipartBody(json.dumps(meta).encode(), {"v": model_file})
        return {
            "content": b"".join(multipart.iter(None)),
            "headers": {"Content-Type": multipart.content_type},
        }
    return {}


def _render_matrix(rows: list[tuple[str, list[int]]]) -> str:
    width = max(len(label) for label, _ in rows)
    header = " " * width + " | " + " | ".join(f"{c:>12}" for c in CALLERS)
    lines = [header, "-" * len(header)]
    for label, statuses in rows:
        lines.append(f"{label:<{width}} | " + " | ".join(f"{s:>12}" for s in statuses))
    return "\n".join(lines)


def test_every_route_answers_each_caller_with_the_expected_status(
    live_server: LiveServer,
    app_a: AppCreatedPublic,
    app_b: AppCreatedPublic,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with live_server.admin(app_a.admin_token) as client:
        client.create_model("digits", DIGITS_SCHEMA)
        version = push_two_variants(client, "digits", tmp_path / "seed")
    assert isinstance(version, VersionPublic)
    tokens = {
        "none": None,
        "wrong": "pml_adm_not-a-real-token",
        "device": app_a.device_key,
        "other_device": app_b.device_key,
        "other_admin": app_b.admin_token,
        "operator": OPERATOR_TOKEN,
        "own_admin": app_a.admin_token,
    }
    observed: list[tuple[str, list[int]]] = []
    mismatches = []
    counter = 0
    http = httpx.Client(base_url=live_server.url, timeout=30)
    for row in ROWS:
        path = row.path.format(package_id=version.variants[0].package_id)
        statuses = []
        for caller, expected in zip(CALLERS, row.expected, strict=True):
            counter += 1
            token = tokens[caller]
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            kwargs = _request_kwargs(row.body, tmp_path, counter)
            kwargs["headers"] = {**headers, **kwargs.get("headers", {})}
            response = http.request(row.method, path, **kwargs)
            statuses.append(response.status_code)
            if response.status_code >= 400 and row.method != "HEAD":  # HEAD: no body
                assert response.json()["error"]["code"], response.text
            if response.status_code == 401:
                assert response.headers["www-authenticate"].startswith("Bearer")
            if response.status_code != expected:
                mismatches.append((row.method, row.path, caller, expected, response.text))
        observed.append((f"{row.method} {row.path.replace('{package_id}', '<id>')}", statuses))
    http.close()

    with capsys.disabled():
        print("\nAUTHORIZATION MATRIX (status per caller)\n" + _render_matrix(observed))
    assert not mismatches, mismatches


def test_device_key_on_an_admin_route_is_refused_with_a_clear_message(
    live_server: LiveServer, app_a: AppCreatedPublic
) -> None:
    with live_server.http(app_a.device_key) as http:
        response = http.get("/v1/admin/models")
    assert response.status_code == 403
    assert response.json()["error"]["message"].startswith("device keys cannot call admin routes")


def test_rotated_admin_token_stops_working_and_the_new_one_works(
    live_server: LiveServer, app_a: AppCreatedPublic
) -> None:
    with live_server.http(app_a.admin_token) as http:
        rotated = http.post("/v1/admin/app/rotate", json={"credential": "admin"}).json()
        old = http.get("/v1/admin/app")
    with live_server.http(rotated["token"]) as http:
        new = http.get("/v1/admin/app")
    assert (old.status_code, new.status_code) == (401, 200)
