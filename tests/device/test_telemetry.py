"""The telemetry queue: bounded, restart-proof, exactly once on the server; feedback."""

from __future__ import annotations

import email.utils
import json
import time
from pathlib import Path

import httpx
import numpy as np

from pocketml.device import TelemetryQueue

from .conftest import DeviceFactory, FaultTransport, Shipped


def _is_telemetry(request: httpx.Request) -> bool:
    return request.url.path == "/v1/telemetry"


def _inference(i: int) -> dict[str, object]:
    return {
        "type": "inference",
        "ts": time.time(),
        "model": "digits",
        "version": 1,
        "variant": "nc-small-onnx-fp32",
        "source": "local",
        "latency_ms": 0.5,
        "confidence": 0.9,
        "label": "1",
        "prediction_id": f"p-{i}",
    }


def _stored_inferences(shipped: Shipped) -> int:
    return sum(int(group["count"]) for group in shipped.metrics())


def test_queued_events_survive_a_restart_and_arrive_exactly_once(
    make_device: DeviceFactory, shipped: Shipped, digit_centroids: np.ndarray
) -> None:
    offline = FaultTransport(
        fail=lambda r: httpx.ConnectError("offline", request=r) if _is_telemetry(r) else None
    )
    first = make_device(transport=offline)
    first.sync()
    for digit in range(5):
        first.model("digits").predict(digit_centroids[digit])
    assert first.flush().error is not None
    first.close()  # the app is killed; a new process opens the same cache dir
    lost = {"count": 0}

    def lose_first_answer(request: httpx.Request) -> bool:
        if _is_telemetry(request) and lost["count"] == 0:
            lost["count"] += 1
            return True
        return False

    transport = FaultTransport(lose_answer=lose_first_answer)
    second = make_device(transport=transport)
    report_lost = second.flush()  # the server stored the batch, the answer was lost
    report = second.flush()

    assert report_lost.error is not None and report_lost.pending == 6  # 5 inferences, 1 download
    assert (report.sent, report.duplicates, report.pending) == (6, 1, 0)
    batch_ids = [json.loads(r.content)["batch_id"] for r in transport.requests if _is_telemetry(r)]
    assert len(batch_ids) == 2 and batch_ids[0] == batch_ids[1]
    # every batch says when the device sent it, for the server's clock-skew correction
    dates = [r.headers.get("date") for r in transport.requests if _is_telemetry(r)]
    assert all(email.utils.parsedate_to_datetime(d).tzinfo is not None for d in dates), dates
    assert _stored_inferences(shipped) == 5


def test_more_than_500_events_go_out_in_batches_of_at_most_500(
    make_device: DeviceFactory, shipped: Shipped
) -> None:
    transport = FaultTransport()
    device = make_device(transport=transport)
    device.queue.append(_inference(i) for i in range(1200))

    report = device.flush()

    sizes = [len(json.loads(r.content)["events"]) for r in transport.requests if _is_telemetry(r)]
    assert sizes == [500, 500, 200]
    assert (report.sent, report.pending) == (1200, 0)
    assert _stored_inferences(shipped) == 1200


def test_a_batch_the_server_refuses_as_invalid_is_dropped_and_counted(
    make_device: DeviceFactory,
) -> None:
    device = make_device()
    bad = _inference(0) | {"latency_ms": -1.0}
    device.queue.append([bad])

    report = device.flush()

    assert report.error is None and report.pending == 0
    assert device.queue.counter("rejected") == 1


def test_the_queue_drops_the_oldest_events_beyond_its_bound(tmp_path: Path) -> None:
    queue = TelemetryQueue(tmp_path / "telemetry.db", max_events=3)

    dropped = queue.append(_inference(i) for i in range(5))
    batch = queue.claim_batch(10)

    assert dropped == 2 and queue.counter("dropped") == 2
    assert batch is not None
    assert [e["prediction_id"] for e in batch.events] == ["p-2", "p-3", "p-4"]
    queue.close()


def test_a_claimed_batch_keeps_its_id_across_reopening(tmp_path: Path) -> None:
    queue = TelemetryQueue(tmp_path / "telemetry.db")
    queue.append([_inference(1)])
    first = queue.claim_batch(500)
    queue.close()
    reopened = TelemetryQueue(tmp_path / "telemetry.db")
    reopened.append([_inference(2)])

    again = reopened.claim_batch(500)

    assert first is not None and again is not None
    assert again.batch_id == first.batch_id and len(again.events) == 1
    reopened.close()


def test_feedback_is_queued_offline_and_sent_on_flush(
    make_device: DeviceFactory, shipped: Shipped, digit_centroids: np.ndarray
) -> None:
    state = {"online": True}
    transport = FaultTransport(
        fail=lambda r: None if state["online"] else httpx.ConnectError("offline", request=r)
    )
    device = make_device(transport=transport)
    device.sync()
    prediction = device.model("digits").predict(digit_centroids[2])
    state["online"] = False

    outcome = device.feedback(prediction.prediction_id, label="2")
    state["online"] = True
    report = device.flush()

    assert outcome == "queued"
    assert report.feedback_sent == 1 and report.error is None
    sent = [json.loads(r.content) for r in transport.requests if r.url.path == "/v1/feedback"]
    assert sent[-1]["model"] == "digits" and sent[-1]["label"] == "2"
    groups = shipped.metrics()
    assert sum(g["feedback_count"] for g in groups) == 1
    assert [g["accuracy"] for g in groups if g["feedback_count"]] == [1.0]
