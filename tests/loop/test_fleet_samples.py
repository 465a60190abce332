"""``run_fleet(consent=..., flip_labels_for=...)``: a simulated fleet opts in, some lie."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from samples_kit import open_store

from pocketml.sim import centroids, make_fleet, run_fleet, write_demo_build
from pocketml.testing import live_server, server_settings

CLASSES = [str(i) for i in range(10)]


def test_consenting_devices_send_labelled_samples_and_liars_send_the_next_class(
    tmp_path: Path,
) -> None:
    build = write_demo_build(tmp_path / "build", formats=("onnx", "tflite"))
    settings = server_settings(tmp_path / "home", devices={"catalog_ttl_s": 0})
    inputs, labels = centroids()[:4], np.arange(4)
    with live_server(settings) as live:
        app = live.create_app("fleet-samples")
        with live.admin(app.admin_token) as admin:
            version = admin.push_build(build, stage="production").version
            admin.set_policy(
                "digits",
                version,
                hybrid={"mode": "local"},
                capture={"enabled": True, "when": "feedback", "wifi_only": False},
            )
        fleet = make_fleet(4, ["wifi"], seed=3)
        report = run_fleet(
            live.url,
            app.device_key,
            fleet,
            inputs,
            tmp_path / "fleet",
            workers=2,
            labels=labels,
            feedback_labels=CLASSES,
            consent=0.5,
            flip_labels_for={"dev-003"},
        )
        store, registry = open_store(live)
        try:
            got = store.labelled(app.app_id, "digits")
        finally:
            registry.close()

    totals = report.totals()
    consenting = [d.device.name for d in report.devices if d.consented]
    assert consenting == ["dev-001", "dev-003"]
    assert (totals["consented"], totals["lying"], totals["samples_sent"]) == (2, 1, 8)
    by_device = {
        device: sorted(int(got.class_names[y]) for y in got.labels[got.device_id == device])
        for device in set(got.device_id)
    }
    assert by_device == {"sim-dev-001-4": [0, 1, 2, 3], "sim-dev-003-6": [1, 2, 3, 4]}
