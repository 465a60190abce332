"""``when: drifted``: only inputs whose monitored feature lands in a drifted bin are kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pocketml.device import SampleCapture
from pocketml.protocol import CapturePolicy
from pocketml.sketch import build_profile


class _NoHttp:
    def request(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("no request expected")


def test_drifted_mode_keeps_only_inputs_in_the_drifted_bins(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    profile = build_profile({"a": rng.normal(size=500), "b": rng.normal(size=500)}, projections=0)
    top = profile.bins_of("a").size - 1  # the last bin of "a": values above every edge
    policy = CapturePolicy(
        enabled=True, when="drifted", drifted_bins={"a": (top,)}, max_bytes_per_day=10**9
    )
    capture = SampleCapture(tmp_path / "samples.db", _NoHttp(), lambda: "dev-12345678", "x")  # type: ignore[arg-type]
    capture.set_consent(True)
    tap = capture.tap("tabular", policy, profile, "NC")

    for i, row in enumerate(([0.0, 0.0], [50.0, 0.0], [0.0, 50.0], [60.0, 1.0])):
        x = np.asarray(row, dtype=np.float32)
        tap.offer(x, x.reshape(1, 2), f"p-{i}", "0", 0.9, 1)

    assert capture.pending() == 2  # the two rows with a = 50 and 60
    capture.close()
