"""The capture policy and the sample batch: one declaration, checked copies."""

from __future__ import annotations

import pytest

from pocketml.errors import ValidationFailed
from pocketml.protocol import (
    CAPTURE_POLICY_FIELDS,
    SAMPLE_BATCH_FIELDS,
    SAMPLE_FIELDS,
    SAMPLE_INPUT_FIELDS,
    CapturePolicy,
    parse_sample_batch,
)
from pocketml.server.schemas_device import CapturePolicyInput, CapturePolicyPublic
from pocketml.server.schemas_samples import SampleBatchRequest, SampleInputWire, SampleWire


def test_the_defaults_capture_nothing_and_round_trip_through_the_manifest_object() -> None:
    policy = CapturePolicy()

    assert policy.enabled is False
    assert CapturePolicy.from_dict(policy.to_dict()) == policy
    assert list(policy.to_dict()) == [spec.name for spec in CAPTURE_POLICY_FIELDS]


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"rate": 1.01}, "capture.rate"),
        ({"rate": float("nan")}, "capture.rate"),
        ({"when": "often"}, "capture.when"),
        ({"retention_days": 366}, "capture.retention_days"),
        ({"max_hold": 0}, "capture.max_hold"),
        ({"enabled": 1}, "capture.enabled"),
        ({"drifted_bins": {"brightness": [-1]}}, "capture.drifted_bins.brightness"),
        ({"surprise": True}, "unknown field"),
    ],
)
def test_a_policy_out_of_bounds_names_the_field(raw: dict, named: str) -> None:
    with pytest.raises(ValidationFailed, match=named.replace(".", r"\.")):
        CapturePolicy.from_dict(raw)


def test_the_server_models_name_the_protocols_fields() -> None:
    names = [spec.name for spec in CAPTURE_POLICY_FIELDS]

    assert list(CapturePolicyPublic.model_fields) == names
    assert list(CapturePolicyInput.model_fields) == names
    assert list(SampleBatchRequest.model_fields) == [s.name for s in SAMPLE_BATCH_FIELDS]
    assert list(SampleWire.model_fields) == [s.name for s in SAMPLE_FIELDS]
    assert list(SampleInputWire.model_fields) == [s.name for s in SAMPLE_INPUT_FIELDS]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ([], "body must be an object"),
        ({"batch_id": "x", "device_id": "device-aaaa", "samples": []}, "batch_id"),
        ({"batch_id": "a" * 32, "device_id": "d", "samples": []}, "device_id"),
        ({"batch_id": "a" * 32, "device_id": "device-aaaa", "samples": []}, "samples must be"),
        ({"batch_id": "a" * 32, "device_id": "device-aaaa", "samples": [{}]}, r"samples\[0\]"),
        # text that PostgreSQL could not store (a 503 the device would retry forever)
        ({"batch_id": "a" * 32, "device_id": "device-\x00aaa", "samples": []}, "NUL"),
        ({"batch_id": "a" * 32, "device_id": "device-\ud800aa", "samples": []}, "surrogate"),
    ],
)
def test_a_malformed_batch_is_refused_naming_where(body: object, named: str) -> None:
    with pytest.raises(ValidationFailed, match=named):
        parse_sample_batch(body)
