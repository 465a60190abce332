"""Gzip request bodies on the device routes, through both doors, on a live server.

``Content-Encoding: gzip`` is inflated by the request guard within the route's byte
limit, so the fast path and the FastAPI routes read the same plain JSON. Every live test
runs twice: on a server as it ships (the fast path takes check-in, predict and
telemetry) and on one with ``fast_path = False`` (FastAPI answers everything), which also
shows that the two doors answer alike. The body limits are small so that a zip bomb is
cheap to build. The database plays no part in these answers: SQLite only.
"""

from __future__ import annotations

import email.utils
import gzip
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from pocketml.errors import PayloadTooLarge
from pocketml.server import background
from pocketml.server._gzip import Inflater, MalformedGzip
from pocketml.server.app import create_app
from pocketml.testing import AppKeys, live_server, model_variant, server_settings

DEVICE_BODY_KB = 4
TELEMETRY_BODY_KB = 8
ROW = [0.5] * 64
CHECKIN = {
    "device_id": "gzip-device-01",
    "platform": "android",
    "os_version": "14",
    "app_version": "1.0.0",
    "formats": ["onnx"],
}
BATCH = {
    "batch_id": "b-gzip-1",
    "device_id": "gzip-device-01",
    "events": [
        {
            "type": "inference",
            "ts": 1_795_240_000,
            "model": "digits",
            "version": 1,
            "variant": "onnx-fp32",
            "source": "local",
            "latency_ms": 3,
            "confidence": 0.9,
            "label": "7",
            "prediction_id": "p-1",
        }
    ],
}


@dataclass(frozen=True)
class Door:
    url: str
    keys: AppKeys

    def post(self, path: str, body: bytes | Iterator[bytes], **headers: str) -> httpx.Response:
        sent = {
            "Authorization": f"Bearer {self.keys.device_key}",
            "Content-Type": "application/json",
            **{name.replace("_", "-"): value for name, value in headers.items()},
        }
        with httpx.Client(base_url=self.url, timeout=30) as http:
            return http.post(path, content=body, headers=sent)


def _slow_app(*args: Any, **kwargs: Any) -> Any:
    app = create_app(*args, **kwargs)
    app.fast_path = False  # type: ignore[attr-defined]
    return app


@pytest.fixture(scope="module", params=["fast path", "FastAPI"])
def door(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Door]:
    """A live server with small body limits, an app and a production model ``digits``."""
    home = tmp_path_factory.mktemp("gzip-home")
    settings = server_settings(
        home,
        f"sqlite:///{home / 'pocketml.db'}",
        limits={"max_device_body_kb": DEVICE_BODY_KB, "max_telemetry_body_kb": TELEMETRY_BODY_KB},
    )
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "FastAPI":
            patch.setattr(background, "create_app", _slow_app)
        with live_server(settings) as live:
            keys = live.create_app("gzip")
            live.push(keys, "digits", [model_variant(home / "work", "onnx-fp32", size=4000)])
            yield Door(live.url, keys)


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


def _error(response: httpx.Response) -> dict[str, str]:
    error: dict[str, str] = response.json()["error"]
    return error


# -- accepted: the same answers as the plain body ---------------------------------------


def test_a_gzip_checkin_answers_the_manifest_of_the_plain_one(door: Door) -> None:
    plain = door.post("/v1/checkin", _json(CHECKIN))

    packed = door.post("/v1/checkin", gzip.compress(_json(CHECKIN)), Content_Encoding="gzip")

    assert plain.status_code == 200, plain.text
    assert packed.status_code == 200, packed.text
    assert packed.content == plain.content
    assert packed.headers["etag"] == plain.headers["etag"]


def test_a_gzip_predict_answers_the_predictions_of_the_plain_one(door: Door) -> None:
    body = _json({"inputs": [ROW]})
    plain = door.post("/v1/models/digits/predict", body)

    packed = door.post("/v1/models/digits/predict", gzip.compress(body), Content_Encoding="gzip")

    assert plain.status_code == 200, plain.text
    assert packed.status_code == 200, packed.text
    assert packed.json()["predictions"] == plain.json()["predictions"]


def test_a_gzip_telemetry_batch_is_stored_once(door: Door) -> None:
    body = gzip.compress(_json(BATCH))

    first = door.post("/v1/telemetry", body, Content_Encoding="gzip")
    again = door.post("/v1/telemetry", body, Content_Encoding="GZIP")

    assert first.status_code == 202, first.text
    assert first.json() == {
        "accepted": 1,
        "duplicate": False,
        "rejected": [],
        "clock_offset_s": 0.0,
        "clamped": 0,
        "stale": 0,
    }
    assert again.status_code == 200 and again.json()["duplicate"] is True


def test_both_doors_hand_the_date_header_to_the_clock_correction(door: Door) -> None:
    """A device clock two hours slow: its events are moved by the offset its ``Date``
    header shows (the telemetry service's rule; tests/telemetry/test_semantics.py)."""
    slow = email.utils.formatdate(time.time() - 7200, usegmt=True)
    body = _json({**BATCH, "batch_id": "b-date-1"})

    answer = door.post("/v1/telemetry", body, Date=slow)

    assert answer.status_code == 202, answer.text
    assert 7190 <= answer.json()["clock_offset_s"] <= 7210, answer.text


def test_gzip_feedback_is_accepted(door: Door) -> None:
    feedback = {"prediction_id": "p-1", "device_id": "gzip-device-01", "model": "digits",
                "label": "7", "ts": 1_795_240_001}  # fmt: skip

    answer = door.post("/v1/feedback", gzip.compress(_json(feedback)), Content_Encoding="x-gzip")

    assert answer.status_code == 202, answer.text
    assert answer.json() == {"accepted": True}


def test_a_chunked_gzip_body_is_inflated_as_it_streams(door: Door) -> None:
    packed = gzip.compress(_json(CHECKIN))
    chunks = iter([packed[:10], packed[10:20], packed[20:]])  # no Content-Length: chunked

    answer = door.post("/v1/checkin", chunks, Content_Encoding="gzip")

    assert answer.status_code == 200, answer.text
    assert "etag" in answer.headers


# -- refused: limits, bad gzip, other encodings -----------------------------------------


def test_a_zip_bomb_answers_413_and_the_server_keeps_answering(door: Door) -> None:
    bomb = gzip.compress(b'{"events": [' + b" " * 6_000_000, compresslevel=9)
    assert len(bomb) < TELEMETRY_BODY_KB * 1024  # the compressed bytes pass the guard

    answer = door.post("/v1/telemetry", bomb, Content_Encoding="gzip")
    after = door.post("/v1/checkin", _json(CHECKIN))

    assert answer.status_code == 413, answer.text
    assert _error(answer)["code"] == "payload_too_large"
    assert "inflates" in _error(answer)["message"]
    assert after.status_code == 200


def test_a_compressed_body_over_the_limit_answers_413_before_inflating(door: Door) -> None:
    noise = random.Random(0).randbytes(2 * DEVICE_BODY_KB * 1024)  # does not compress
    body = gzip.compress(noise)
    assert len(body) > DEVICE_BODY_KB * 1024

    answer = door.post("/v1/checkin", body, Content_Encoding="gzip")

    assert answer.status_code == 413, answer.text
    assert "Content-Length says" in _error(answer)["message"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_json(CHECKIN), "incorrect header check"),
        (gzip.compress(_json(CHECKIN))[:-12], "ends before"),
        (gzip.compress(_json(CHECKIN)) + b"junk", "incorrect header check"),
    ],
    ids=["plain JSON", "cut short", "trailing junk"],
)
def test_a_body_that_is_not_gzip_answers_400_malformed_gzip(
    door: Door, body: bytes, reason: str
) -> None:
    answer = door.post("/v1/checkin", body, Content_Encoding="gzip")

    assert answer.status_code == 400, answer.text
    assert _error(answer)["code"] == "malformed_gzip"
    assert reason in _error(answer)["message"]
    assert "Content-Encoding" in _error(answer)["message"]


@pytest.mark.parametrize("encoding", ["br", "deflate", "gzip, gzip", "compress"])
def test_any_other_content_encoding_answers_415(door: Door, encoding: str) -> None:
    answer = door.post("/v1/telemetry", _json(BATCH), Content_Encoding=encoding)

    assert answer.status_code == 415, answer.text
    assert _error(answer)["code"] == "unsupported_media_type"
    assert repr(encoding) in _error(answer)["message"]


def test_identity_encoding_is_a_plain_body(door: Door) -> None:
    answer = door.post("/v1/checkin", _json(CHECKIN), Content_Encoding="identity")

    assert answer.status_code == 200, answer.text


def test_an_admin_route_refuses_a_gzip_body_with_415(door: Door) -> None:
    headers = {"Authorization": f"Bearer {door.keys.admin_token}",
               "Content-Type": "application/json", "Content-Encoding": "gzip"}  # fmt: skip
    body = gzip.compress(_json({"name": "other", "schema": {}}))
    with httpx.Client(base_url=door.url, timeout=30) as http:
        answer = http.post("/v1/admin/models", content=body, headers=headers)

    assert answer.status_code == 415, answer.text
    assert "uncompressed" in _error(answer)["message"]


# -- the inflater itself ---------------------------------------------------------------


def test_the_inflater_stops_a_bomb_one_byte_past_the_limit() -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)  # about 50 KB
    inflater = Inflater(100_000, PayloadTooLarge("too large"))

    with pytest.raises(PayloadTooLarge):
        inflater.feed(bomb)

    assert inflater.inflated == 100_001  # never the 50 MB


def test_the_inflater_joins_concatenated_gzip_members() -> None:
    body = gzip.compress(b'{"a": ') + gzip.compress(b"1}")
    inflater = Inflater(1000, PayloadTooLarge("too large"))

    inflated = inflater.feed(body[:7]) + inflater.feed(body[7:])
    inflater.finish()

    assert inflated == b'{"a": 1}'


def test_the_inflater_refuses_an_empty_body() -> None:
    with pytest.raises(MalformedGzip, match="ends before"):
        Inflater(1000, PayloadTooLarge("too large")).finish()
