"""Demo chapter "Watch the world change": drift and accuracy from device sketches, an alert.

The phones keep classifying low-light digits, and each one that scores with its own model
sends what it saw as counts, never as images: a ``profile`` event per window with the
brightness, contrast and blur of its inputs, its predicted classes and its confidence,
binned into the edges the version's reference profile fixed. Then the world changes for
one device class: the android-low phones get a cheaper camera module whose photos are much
darker and noisier. Nobody has labelled anything yet.

1. The monitor merges the sketches per device class and tests them against the reference:
   the changed class drifts, feature by feature; the others do not.
2. The label-free estimate (CBPE: the confidence histogram read through the version's
   calibration table) falls for that class before any label exists.
3. The default alert rules fire, and the server delivers each alert, HMAC-signed, to a
   webhook receiver this chapter runs; the receiver checks every signature.
4. Then users correct the app (feedback labels), and the realised accuracy confirms.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from pocketml.data import Dataset, augment_dataset, parse_augmentations
from pocketml.errors import InvalidInput
from pocketml.monitor.alerts import verify_signature
from pocketml.server.client import AdminClient
from pocketml.server.monitor_views import accuracy_table, drift_tables, plot_histograms
from pocketml.server.schemas_monitor import AccuracyReportPublic
from pocketml.sim import FleetReport, make_fleet, run_fleet

__all__ = [
    "CHANGED_CLASS",
    "WebhookReceiver",
    "accuracy_by_class",
    "watch_the_world",
    "watched_photos",
]

CHANGED_CLASS = "android-low"
"""The device class whose camera changes (the others keep the chapter-6 low light)."""
NETWORKS = ("wifi", "4g")
# How long the chapter waits for the server's evaluator and sender (they run every half
# second in the demo): the drift alert must come; the realised-accuracy alert may not, when
# the labels do not show a drop.
_ALERT_WAIT_S = 60.0
_LABEL_ALERT_WAIT_S = 15.0


@dataclass
class WebhookReceiver:
    """A local HTTP receiver of alert webhooks that checks each body's HMAC signature.

    ``secret`` is set once the server returned it (``AdminClient.add_webhook``); every
    delivery is kept with whether its signature verified.
    """

    secret: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _changed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        assert self._server is not None, "start the receiver first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/alerts"

    @contextmanager
    def running(self) -> Iterator[WebhookReceiver]:
        """Serve on a free port of 127.0.0.1 until the block ends."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                signed = verify_signature(
                    receiver.secret, body, self.headers.get("X-PocketML-Signature")
                )
                with receiver._changed:
                    receiver.received.append({"verified": signed, "event": json.loads(body)})
                    receiver._changed.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the chapter prints what arrived."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join()

    def wait_for(self, wanted: Callable[[list[dict[str, Any]]], bool], timeout_s: float) -> bool:
        """Block until ``wanted(received)`` holds or ``timeout_s`` passed (the server's
        evaluator and sender run on their own loops)."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not wanted(self.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True


def watch_the_world(
    console: Console,
    *,
    url: str,
    admin: AdminClient,
    device_key: str,
    evaluation: Dataset,
    low_light: str,
    new_camera: str,
    devices: int,
    out_dir: Path,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the fleet, change one device class's camera, watch the monitor and the alerts."""
    fleet = make_fleet(devices, NETWORKS, seed=seed + 90)
    usual_phones = [d for d in fleet if d.device_class != CHANGED_CLASS]
    changed_phones = [d for d in fleet if d.device_class == CHANGED_CLASS]
    usual, changed = watched_photos(evaluation, low_light, new_camera, seed=seed)
    production = admin.show_model("digits").production_version
    if production is None:
        raise InvalidInput(
            "this chapter watches the production version of digits; promote one first."
        )
    # Device-only answers: every prediction is the phone's own, so the sketches, the estimate
    # and the users' labels all describe the same model.
    admin.set_policy("digits", production, hybrid={"mode": "local"}, monitor={"enabled": True})
    receiver = WebhookReceiver()
    with receiver.running():
        hook = admin.add_webhook(receiver.url)
        receiver.secret = hook.secret
        rules = admin.create_default_alert_rules("digits").items
        console.print(
            f"   digits v{production} answers on the phones (device only); "
            f"{len(rules)} default alert rules ({', '.join(rule.name for rule in rules)}); "
            f"a webhook receiver on {receiver.url}"
        )
        # 1. A day without labels: the android-low phones now see much darker photos.
        drift_at = time.time()
        for phones, data, name in (
            (usual_phones, usual, "usual"),
            (changed_phones, changed, "new"),
        ):
            run_fleet(url, device_key, phones, data.features, out_dir / "fleet" / name)
        rows = len(evaluation) * devices
        console.print(
            f"   {devices} phones scored {rows:,} digits; the {len(changed_phones)} "
            f"{CHANGED_CLASS} phones through a new camera ({new_camera}), the others in the "
            f"usual low light ({low_light}). No labels yet. What reached the server: counts "
            "per bin, never a photo."
        )
        drift = admin.drift("digits", window="1h", group_by="device_class")
        for table in drift_tables(drift, console.width):
            console.print(table)
        plot = plot_histograms(drift, out_dir / "drift.png")
        before = admin.accuracy("digits", window="1h", group_by="device_class")
        console.print(accuracy_table(before, console.width))
        changed_estimate = _estimate(before, CHANGED_CLASS)
        console.print(
            f"   label-free estimate for {CHANGED_CLASS}: {_pct(changed_estimate)} vs the "
            f"reference's {_pct(before.reference_accuracy)}, before a single label. The "
            f"histograms of the most drifted features are in {plot.name}."
        )
        alerted = receiver.wait_for(
            lambda got: any(_is_firing(e, "drift_share", CHANGED_CLASS) for e in got),
            _ALERT_WAIT_S,
        )
        # 2. Users correct the app: feedback labels for the same kind of day.
        labelled: list[FleetReport] = []
        for phones, data, name in (
            (usual_phones, usual, "usual"),
            (changed_phones, changed, "new"),
        ):
            report = run_fleet(
                url,
                device_key,
                phones,
                data.features,
                out_dir / "fleet" / f"{name}-labelled",
                labels=data.labels,
                feedback_labels=data.class_names,
            )
            labelled.append(report)
        after = admin.accuracy("digits", window="1h", group_by="device_class")
        console.print(accuracy_table(after, console.width))
        receiver.wait_for(
            lambda got: any(_is_firing(e, "accuracy_realised_drop", CHANGED_CLASS) for e in got),
            _LABEL_ALERT_WAIT_S,
        )
        admin.delete_webhook(hook.id)  # the receiver stops with this chapter
    _print_alerts(console, receiver.received, alerted)
    changed_after = _group(after, CHANGED_CLASS)
    realised = changed_after.realised.value if changed_after and changed_after.realised else None
    estimate = changed_after.estimated.value if changed_after and changed_after.estimated else None
    if realised is not None and estimate is not None:
        console.print(
            f"   {CHANGED_CLASS}: estimated {_pct(estimate)}, realised {_pct(realised)} from "
            f"{changed_after.labelled:,} labels (gap {100 * (realised - estimate):+.1f} points)"
        )
        if changed_after.state == "concept_drift":
            console.print(
                "   the estimate reads confidence through the reference's calibration; "
                "photos this dark and noisy make the model wrong while still fairly sure, "
                "so the labels show more damage than the estimate did: CONCEPT DRIFT says "
                "the two disagree and the estimate is no longer to be trusted for this class."
            )
    return {
        "changed_class": CHANGED_CLASS,
        "new_camera": new_camera,
        "drift": drift.model_dump(mode="json", exclude={"series"}),
        "accuracy_before_labels": before.model_dump(mode="json", exclude={"series"}),
        "accuracy_with_labels": after.model_dump(mode="json", exclude={"series"}),
        "alerts_received": receiver.received,
        "drift_at": drift_at,
        "accuracy_by_class": accuracy_by_class(labelled),
    }


def watched_photos(
    evaluation: Dataset, low_light: str, new_camera: str, *, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """The photos this chapter's phones take: (usual low light, the new camera)."""
    return (
        augment_dataset(evaluation, parse_augmentations(low_light), seed=seed + 91),
        augment_dataset(evaluation, parse_augmentations(new_camera), seed=seed + 92),
    )


def accuracy_by_class(reports: list[FleetReport]) -> dict[str, float]:
    """The phones' own accuracy per device class over labelled fleet runs."""
    correct: dict[str, int] = {}
    answered: dict[str, int] = {}
    for report in reports:
        for result in report.devices:
            name = result.device.device_class
            correct[name] = correct.get(name, 0) + sum(result.correct.values())
            answered[name] = answered.get(name, 0) + sum(
                n for source, n in result.sources.items() if source != "unavailable"
            )
    return {name: correct[name] / answered[name] for name in sorted(answered) if answered[name]}


def _is_firing(delivery: dict[str, Any], metric: str, device_class: str) -> bool:
    event = delivery["event"]
    alert = event.get("alert", {})
    return bool(
        event.get("status") == "firing"
        and alert.get("metric") == metric
        and alert.get("labels", {}).get("device_class") == device_class
    )


def _print_alerts(console: Console, received: list[dict[str, Any]], in_time: bool) -> None:
    firing = [d for d in received if d["event"].get("status") == "firing"]
    verified = sum(d["verified"] for d in received)
    console.print(
        f"   the webhook received {len(received)} alert events, {verified} with a valid "
        "HMAC signature"
        + ("" if in_time else f" (the drift alert did not come within {_ALERT_WAIT_S:.0f} s)")
        + ":"
    )
    for delivery in firing:
        alert = delivery["event"]["alert"]
        where = alert["labels"].get("device_class") or "whole fleet"
        line = (
            f"     [{alert['severity']}] {alert['rule']} on {where}: "
            f"{alert['metric']} = {alert['value']:.3g} {alert['comparison']} "
            f"{alert['threshold']:g} (n={alert['n']:,})"
        )
        console.print(escape(line), highlight=False)


def _group(report: AccuracyReportPublic, device_class: str) -> Any:
    return next((g for g in report.groups if g.labels.get("device_class") == device_class), None)


def _estimate(report: AccuracyReportPublic, device_class: str) -> float | None:
    group = _group(report, device_class)
    return group.estimated.value if group is not None and group.estimated is not None else None


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
