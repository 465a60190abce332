"""The msgspec telemetry check agrees with the pydantic schema it short-cuts."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from pydantic import ValidationError

from pocketml.server.device_api._telemetry_check import decode_batch
from pocketml.server.routes.telemetry import BatchRejected, validate_batch, validate_body
from pocketml.server.schemas_device import TelemetryRequest


def _batch(**event_changes: Any) -> dict[str, Any]:
    inference = {
        "type": "inference",
        "ts": 1_795_240_000,
        "model": "digits",
        "version": 1,
        "variant": "tflite-fp32",
        "source": "local",
        "latency_ms": 3,
        "confidence": 0.9,
        "label": "7",
        "prediction_id": "p-1",
    }
    inference.update(event_changes)
    return {
        "batch_id": "batch-000001",
        "device_id": "device-0001",
        "device": {"platform": "android", "device_class": "android-mid"},
        "events": [
            {k: v for k, v in inference.items() if v is not _DROP},
            {"type": "error", "ts": 5.0, "model": "digits", "stage": "load", "message": "oom"},
            {
                "type": "download",
                "ts": 6.0,
                "model": "digits",
                "variant": "v",
                "bytes": 10,
                "duration_ms": 2,
                "outcome": "done",
            },
        ],
    }


_DROP = object()


def _pydantic_events(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(e) for e in TelemetryRequest.model_validate(payload).events]


def _fields(event: Any) -> dict[str, Any]:
    return {"type": event.type, **{f: getattr(event, f) for f in event.__struct_fields__}}


def test_decoding_bytes_gives_the_pydantic_values() -> None:
    payload = _batch(memory_mb=12)
    expected = _pydantic_events(copy.deepcopy(payload))

    batch = decode_batch(json.dumps(payload).encode())

    assert batch is not None and len(batch.events) == len(expected)
    for event, want in zip(batch.events, expected, strict=True):
        got = _fields(event)
        assert {k: got[k] for k in want} == want
        assert all(got[k] is None for k in got.keys() - want.keys())
        assert type(got["ts"]) is float
    assert (batch.batch_id, batch.platform, batch.device_class) == (
        "batch-000001",
        "android",
        "android-mid",
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"latency_ms": -1},
        {"confidence": 1.5},
        {"ts": float("nan")},
        {"version": 0},
        {"version": True},
        {"version": 1.0},
        {"source": "moon"},
        {"label": "x" * 129},
        {"model": ""},
        {"prediction_id": _DROP},
        {"unknown": 1},
        {"version": "1"},
    ],
)
def test_decoding_leaves_anything_not_certainly_valid_to_pydantic(
    changes: dict[str, Any],
) -> None:
    body = json.dumps(_batch(**changes)).encode()

    assert decode_batch(body) is None


def test_decoding_rejects_a_batch_id_with_a_trailing_newline() -> None:
    payload = _batch()
    payload["batch_id"] = "batch-000001\n"

    assert decode_batch(json.dumps(payload).encode()) is None


def test_validate_body_names_the_bad_event_field_like_before() -> None:
    body = json.dumps(_batch(latency_ms=-1)).encode()

    with pytest.raises(BatchRejected, match=r"events\[0\]\.latency_ms: Input should be greater"):
        validate_body(body, max_events=10)


def test_a_batch_id_with_a_trailing_newline_is_not_accepted() -> None:
    payload = _batch()
    payload["batch_id"] = "batch-000001\n"

    with pytest.raises(ValidationError):
        TelemetryRequest.model_validate(payload)


def test_validate_batch_names_the_bad_event_field_like_before() -> None:
    with pytest.raises(BatchRejected, match=r"events\[0\]\.latency_ms: Input should be greater"):
        validate_batch(_batch(latency_ms=-1), max_events=10)


def test_validate_batch_accepts_what_pydantic_coerces() -> None:
    batch = validate_batch(_batch(version="2"), max_events=10)

    assert batch.events[0]["version"] == 2
