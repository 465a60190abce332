"""The request guard on a live server: 431, 413, 415 and 401 before any body byte is read.

Raw sockets send a request head without its body and read the answer: a server that
waited for the body (or parsed it) would never answer, so each test is deterministic
without timing. The database plays no part in these refusals, so the server runs on
SQLite only.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import ValidationError

from pocketml.config import LimitsSettings, Settings
from pocketml.testing import DIGITS_SCHEMA, OPERATOR_TOKEN, live_server, server_settings

ADMIN_BODY_KB = 16
TELEMETRY_BODY_KB = 8


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def error(self) -> dict[str, str]:
        error: dict[str, str] = json.loads(self.body)["error"]
        return error


@dataclass(frozen=True)
class Guarded:
    url: str
    admin_token: str
    device_key: str

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        assert parts.hostname is not None and parts.port is not None
        return parts.hostname, parts.port

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    """A live server with small body limits, an app and a model."""
    home = tmp_path_factory.mktemp("guard-home")
    settings = server_settings(
        home,
        f"sqlite:///{home / 'pocketml.db'}",
        limits=LimitsSettings(
            max_admin_body_kb=ADMIN_BODY_KB,
            max_telemetry_body_kb=TELEMETRY_BODY_KB,
            max_upload_mb=64,
        ),
    )
    with live_server(settings) as live:
        created = live.create_app("guarded")
        with live.admin(created.admin_token) as client:
            client.create_model("digits", DIGITS_SCHEMA)
        yield Guarded(live.url, created.admin_token, created.device_key)


def head(method: str, path: str, headers: dict[str, str] | list[tuple[str, str]]) -> bytes:
    items = headers.items() if isinstance(headers, dict) else headers
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in items)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_answer(sock: socket.socket) -> Answer:
    """Read one HTTP/1.1 answer (by its Content-Length) from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed without answering; got {data!r}"
        data += chunk
    raw_head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = raw_head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        assert chunk, "the server closed in the middle of its answer"
        body += chunk
    return Answer(int(status_line.split()[1]), headers, body)


def exchange(server: Guarded, request: bytes) -> Answer:
    """Send ``request`` (a head, perhaps part of a body) and read the answer."""
    with socket.create_connection(server.address, timeout=30) as sock:
        sock.sendall(request)
        return read_answer(sock)


def assert_refused(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status, answer.body
    assert answer.error["code"] == code
    assert answer.error["request_id"] == answer.headers["x-request-id"]


# -- 413: a declared length over the route's limit, before any body byte ---------------


@pytest.mark.parametrize(
    "path",
    ["/v1/admin/apps", "/v1/admin/models", "/v1/checkin", "/v1/telemetry", "/v1/feedback",
     "/v1/models/digits/predict", "/v1/admin/models/digits/versions", "/ui/login"],
)  # fmt: skip
def test_a_declared_100_mb_body_without_a_token_is_refused_413_before_it_is_sent(
    guarded: Guarded, path: str
) -> None:
    request = head(
        "POST", path, {"Content-Type": "application/json", "Content-Length": "100000000"}
    )

    answer = exchange(guarded, request)  # the body is never sent

    assert_refused(answer, 413, "payload_too_large")
    assert "100000000" in answer.error["message"]
    assert answer.headers["connection"] == "close"


def test_a_content_length_of_19_digits_is_413_not_a_crash(guarded: Guarded) -> None:
    request = head("POST", "/v1/checkin", {"Content-Length": "9" * 19})  # longer: llhttp's 400

    assert_refused(exchange(guarded, request), 413, "payload_too_large")


def test_a_body_at_the_limit_passes_and_one_byte_more_is_413(guarded: Guarded) -> None:
    limit = ADMIN_BODY_KB * 1024
    padding = " " * (limit - len(b'{"name": "x"}'))
    with guarded.http(OPERATOR_TOKEN) as http:
        at_limit = http.post(
            "/v1/admin/apps",
            content=('{"name": "x"}' + padding).encode(),
            headers={"Content-Type": "application/json"},
        )
        over = http.post(
            "/v1/admin/apps",
            content=('{"name": "y"}' + padding + " ").encode(),
            headers={"Content-Type": "application/json"},
        )

    assert at_limit.status_code == 201, at_limit.text
    assert over.status_code == 413 and over.json()["error"]["code"] == "payload_too_large"


# -- 413: a chunked body is counted as it streams ----------------------------------------


def chunked(head_bytes: bytes, pieces: int, size: int) -> bytes:
    """``head_bytes`` then ``pieces`` chunks of ``size`` bytes, without the last chunk."""
    chunk = f"{size:x}\r\n".encode() + b" " * size + b"\r\n"
    return head_bytes + chunk * pieces


@pytest.mark.parametrize(
    ("path", "token_of", "limit_kb"),
    [
        ("/v1/admin/models", "admin_token", ADMIN_BODY_KB),  # FastAPI
        ("/v1/telemetry", "device_key", TELEMETRY_BODY_KB),  # the fast path
    ],
)
def test_a_chunked_body_over_the_limit_is_cut_with_413(
    guarded: Guarded, path: str, token_of: str, limit_kb: int
) -> None:
    headers = {
        "Authorization": f"Bearer {getattr(guarded, token_of)}",
        "Content-Type": "application/json",
        "Transfer-Encoding": "chunked",
    }
    request = chunked(head("POST", path, headers), pieces=limit_kb + 1, size=1024)

    answer = exchange(guarded, request)  # no last chunk: only the guard can answer

    assert_refused(answer, 413, "payload_too_large")
    assert "chunked" in answer.error["message"]


def test_healthz_answers_while_a_large_body_is_arriving(guarded: Guarded) -> None:
    headers = {
        "Authorization": f"Bearer {guarded.admin_token}",
        "Content-Type": "application/json",
        "Transfer-Encoding": "chunked",
    }
    with socket.create_connection(guarded.address, timeout=30) as sock:
        sock.sendall(chunked(head("POST", "/v1/admin/models", headers), pieces=4, size=1024))
        with guarded.http() as http:
            health = http.get("/healthz")  # while the request above waits for its body
        sock.sendall(chunked(b"", pieces=ADMIN_BODY_KB, size=1024))
        answer = read_answer(sock)

    assert health.status_code == 200
    assert_refused(answer, 413, "payload_too_large")


# -- 431: headers -----------------------------------------------------------------------


def test_too_many_headers_answer_431(guarded: Guarded) -> None:
    headers = [(f"X-Filler-{i}", "x") for i in range(120)]

    answer = exchange(guarded, head("GET", "/healthz", headers))

    assert_refused(answer, 431, "headers_too_large")
    assert "at most 100 headers; got 121" in answer.error["message"]  # 120 + Host


def test_a_header_value_over_the_limit_answers_431(guarded: Guarded) -> None:
    answer = exchange(guarded, head("GET", "/healthz", {"X-Big": "x" * 9000}))

    assert_refused(answer, 431, "headers_too_large")
    assert "'x-big'" in answer.error["message"]


def test_headers_over_the_total_limit_answer_431(guarded: Guarded) -> None:
    headers = [(f"X-Part-{i}", "x" * 6000) for i in range(3)]  # each under 8 KiB

    answer = exchange(guarded, head("GET", "/healthz", headers))

    assert_refused(answer, 431, "headers_too_large")
    assert "in total" in answer.error["message"]


def test_a_10_mb_header_is_refused_431_without_being_buffered_whole(guarded: Guarded) -> None:
    start = head("GET", "/healthz", {}).removesuffix(b"\r\n") + b"X-Huge: "
    piece = b"x" * 65536
    with socket.create_connection(guarded.address, timeout=30) as sock:
        try:
            sock.sendall(start)
            for _ in range(10 * 1024 * 1024 // len(piece)):
                sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused the head and closed: what this test expects
        answer = read_answer(sock)

    assert_refused(answer, 431, "headers_too_large")
    assert "request head" in answer.error["message"]  # said by the protocol, not the app


def test_pocketml_server_bounds_the_request_head_from_its_settings(tmp_path: Path) -> None:
    from pocketml.server.background import serve_in_process

    env = {
        "POCKETML_HOME": str(tmp_path / "home"),
        "POCKETML_OPERATOR_TOKEN": OPERATOR_TOKEN,
        "POCKETML_SERVER__LIMITS__MAX_HEADER_BYTES": "2048",
        "POCKETML_SERVER__LIMITS__MAX_HEADER_COUNT": "16",
    }
    start = head("GET", "/healthz", {}).removesuffix(b"\r\n") + b"X-Huge: "
    with serve_in_process(env, args=["--no-access-log"]) as (_, url):
        server = Guarded(url, "", "")
        with socket.create_connection(server.address, timeout=30) as sock:
            try:
                sock.sendall(start)
                for _ in range(16):
                    sock.sendall(b"x" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                pass
            answer = read_answer(sock)
        with server.http() as http:
            health = http.get("/healthz")

    assert_refused(answer, 431, "headers_too_large")
    assert f"at most {2048 + 4 * 16 + 8192} bytes" in answer.error["message"]
    assert health.status_code == 200


# -- 415: media types --------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/admin/models", "/v1/checkin", "/v1/feedback"])
def test_a_json_route_answers_415_to_another_content_type(guarded: Guarded, path: str) -> None:
    with guarded.http(guarded.admin_token) as http:
        response = http.post(path, content=b"{}", headers={"Content-Type": "text/plain"})

    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert "application/json" in response.json()["error"]["message"]


def test_a_json_body_without_content_type_answers_415(guarded: Guarded) -> None:
    answer = exchange(
        guarded,
        head("POST", "/v1/checkin", {"Authorization": "Bearer x", "Content-Length": "2"}) + b"{}",
    )

    assert_refused(answer, 415, "unsupported_media_type")


def test_json_with_a_charset_parameter_is_accepted(guarded: Guarded) -> None:
    body = json.dumps(
        {"name": "charset-model", "schema": {**DIGITS_SCHEMA, "name": "charset-model"}}
    )
    with guarded.http(guarded.admin_token) as http:
        response = http.post(
            "/v1/admin/models",
            content=body.encode(),
            headers={"Content-Type": "Application/JSON; charset=utf-8"},
        )

    assert response.status_code == 201, response.text


def test_a_push_answers_415_to_a_json_body(guarded: Guarded) -> None:
    with guarded.http(guarded.admin_token) as http:
        response = http.post("/v1/admin/models/digits/versions", json={"variants": []})

    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["error"]["message"]


def test_a_post_without_a_body_needs_no_content_type(guarded: Guarded) -> None:
    answer = exchange(
        guarded,
        head(
            "POST",
            "/v1/admin/models",
            {"Authorization": f"Bearer {guarded.admin_token}", "Content-Length": "0"},
        ),
    )

    assert answer.status == 422  # the route's own answer: the body is missing


# -- 401: no token, before the body ------------------------------------------------------


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer    ", "Basic dXNlcjpwYXNz", "pml_dev_x"]
)
@pytest.mark.parametrize("path", ["/v1/telemetry", "/v1/admin/models", "/v1/feedback"])
def test_a_request_without_a_bearer_token_is_401_before_its_body(
    guarded: Guarded, path: str, authorization: str | None
) -> None:
    headers = {"Content-Type": "application/json", "Content-Length": "1000"}
    if authorization is not None:
        headers["Authorization"] = authorization

    answer = exchange(guarded, head("POST", path, headers))  # the body is never sent

    assert_refused(answer, 401, "unauthorized")
    assert answer.headers["www-authenticate"] == 'Bearer realm="pocketml"'


def test_unknown_routes_still_answer_404_and_wrong_methods_405_without_a_token(
    guarded: Guarded,
) -> None:
    with guarded.http() as http:
        missing = http.post("/v1/nothing", json={})
        wrong = http.put("/v1/checkin", json={})

    assert missing.status_code == 404
    assert wrong.status_code == 405


def test_the_request_id_given_is_echoed_in_a_refusal(guarded: Guarded) -> None:
    answer = exchange(
        guarded, head("POST", "/v1/telemetry", {"X-Request-ID": "trace-42", "Content-Length": "1"})
    )

    assert answer.status == 415
    assert answer.headers["x-request-id"] == "trace-42" == answer.error["request_id"]


# -- what passes the guard still works ---------------------------------------------------


def test_device_routes_still_answer_with_a_device_key(guarded: Guarded) -> None:
    facts: dict[str, Any] = {
        "device_id": "device-0001",
        "platform": "android",
        "os_version": "14",
        "app_version": "1.0",
        "device_model": "Pixel 7",
        "device_class": "android-mid",
        "formats": ["onnx"],
    }
    with guarded.http(guarded.device_key) as http:
        first = http.post("/v1/checkin", json=facts)
        again = http.post(
            "/v1/checkin", json=facts, headers={"If-None-Match": first.headers["etag"]}
        )

    assert first.status_code == 200, first.text
    assert again.status_code == 304 and again.content == b""


# -- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    [{"max_header_count": 5}, {"max_header_value_bytes": 10}, {"max_admin_body_kb": 0},
     {"max_predict_body_kb": 0}, {"max_telemetry_body_kb": 0}, {"max_device_body_kb": 10**9}],
)  # fmt: skip
def test_limits_out_of_their_bounds_are_refused_at_start_up(field: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        LimitsSettings(**field)


def test_the_telemetry_limit_defaults_to_one_kib_per_event_plus_64_kib() -> None:
    assert LimitsSettings(max_telemetry_events=10).max_telemetry_bytes == 10 * 1024 + 65536
    assert LimitsSettings(max_telemetry_body_kb=3).max_telemetry_bytes == 3 * 1024


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("POCKETML_SERVER__LIMITS__MAX_PREDICT_BODY_KB", "64")
    monkeypatch.setenv("POCKETML_SERVER__LIMITS__MAX_HEADER_COUNT", "50")

    limits = Settings(home=tmp_path).server.limits

    assert (limits.max_predict_body_kb, limits.max_header_count) == (64, 50)


# -- the table route -> limit agrees with the routes ------------------------------------


def test_every_route_of_the_openapi_document_is_in_the_right_class(tmp_path: Path) -> None:
    from pocketml.server._guard import Limits
    from pocketml.server.app import create_app

    app = create_app(Settings(home=tmp_path))
    limits: Limits = app.limits
    wrong = []
    for path, operations in app.openapi()["paths"].items():
        concrete = path.replace("{", "").replace("}", "")
        for method, operation in operations.items():
            route = limits.route_class(method.upper(), concrete)
            media = list(operation.get("requestBody", {}).get("content", {}))
            expected = media[0].encode() if media else route.media_type
            security = operation.get("security") or []
            needs_token = bool(security) and {} not in security  # {}: anonymous allowed
            if route.media_type != expected or route.needs_token != needs_token:
                wrong.append(f"{method.upper()} {path} -> {route.name}")

    assert wrong == []


def test_the_total_header_limit_holds_when_it_is_below_the_value_limit() -> None:
    from pocketml.errors import HeadersTooLarge
    from pocketml.server._guard import Limits, RequestGuard

    limits = LimitsSettings(max_header_value_bytes=65_536, max_header_bytes=16_384)
    guard = RequestGuard(Limits.from_settings(limits), lambda scope: True)
    headers = [(f"x-part-{i}".encode(), b"x" * 7000) for i in range(3)]

    verdict = guard.inspect({"method": "GET", "path": "/healthz", "headers": headers})

    assert isinstance(verdict, HeadersTooLarge) and "in total" in str(verdict)
