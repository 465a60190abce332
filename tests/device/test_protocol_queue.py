"""A real prediction's queued event carries each value under its declared field name.

``LocalModel`` builds inference tuples by position (the hot path skips dicts); the queue
names them with ``INFERENCE_FIELDS``, which the protocol's declaration decides. A field
added to the declaration without the tuple following would shift every name: this test
reads a prediction back and checks each value where the protocol says it is.
"""

from __future__ import annotations

import numpy as np

from pocketml.device._queue import INFERENCE_FIELDS

from .conftest import ANDROID, DeviceFactory


def test_a_local_prediction_is_queued_under_the_declared_field_names(
    make_device: DeviceFactory, digit_centroids: np.ndarray
) -> None:
    device = make_device(ANDROID)
    device.sync()
    prediction = device.model("digits").predict(digit_centroids[4][np.newaxis])

    batch = device.queue.claim_batch(10)

    assert batch is not None
    event = batch.events[-1]
    assert set(INFERENCE_FIELDS) <= set(event)
    expected = {
        "type": "inference",
        "model": "digits",
        "version": prediction.version,
        "source": "local",
        "confidence": prediction.confidence,
        "label": prediction.label,
        "prediction_id": prediction.prediction_id,
        "latency_ms": prediction.latency_ms,
    }
    assert {name: event[name] for name in expected} == expected
    assert isinstance(event["variant"], str) and event["variant"]
    assert isinstance(event["ts"], float) and event["ts"] > 1e9
