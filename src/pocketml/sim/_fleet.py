"""A fleet of virtual devices: each syncs and predicts through its own simulated network.

Every virtual device is a real :class:`pocketml.device.Device` with its own cache
directory, seeded fault RNG and simulated clock; only the network in between is simulated.
``run_fleet`` returns per-device results and fleet totals (what ``pocketml simulate``
prints).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pocketml.device import Device, DeviceFacts, DeviceState
from pocketml.errors import InvalidInput, PocketMLError, Unavailable
from pocketml.sim._network import PROFILES, SimClock, SimulatedTransport, profile

__all__ = ["DeviceResult", "FleetReport", "VirtualDevice", "make_fleet", "run_fleet"]

_CLASSES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("android-low", "android", ("tflite",)),
    ("android-mid", "android", ("tflite", "ort")),
    ("android-high", "android", ("tflite", "ort", "onnx")),
    # Core ML cannot execute on the simulation host: virtual iPhones run ONNX Runtime Mobile
    # (ORT format), which real iOS apps use too.
    ("iphone", "ios", ("ort", "onnx")),
    ("edge-linux", "linux", ("onnx",)),
)


@dataclass(frozen=True)
class VirtualDevice:
    """One simulated install: its class, platform, formats and network."""

    name: str
    device_class: str
    platform: str
    formats: tuple[str, ...]
    network: str
    seed: int


def make_fleet(count: int, networks: Sequence[str], *, seed: int = 0) -> list[VirtualDevice]:
    """``count`` devices cycling through the device classes and ``networks``.

    Raises:
        InvalidInput: ``count`` < 1 or an unknown network profile.
    """
    if count < 1:
        raise InvalidInput(f"a fleet needs at least 1 device; got {count}")
    for name in networks:
        profile(name)
    devices = []
    for i in range(count):
        device_class, platform, formats = _CLASSES[i % len(_CLASSES)]
        network = networks[i % len(networks)]
        devices.append(
            VirtualDevice(f"dev-{i:03d}", device_class, platform, formats, network, seed + i)
        )
    return devices


@dataclass
class DeviceResult:
    """What one virtual device saw."""

    device: VirtualDevice
    sync: str = "not run"
    resumed: bool = False
    variant: str | None = None
    sources: Counter[str] = field(default_factory=Counter)
    correct: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    telemetry_sent: int = 0
    telemetry_pending: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    consented: bool = False
    lies: bool = False  # its feedback labels were (y + 1) mod K
    samples_sent: int = 0
    samples_pending: int = 0


@dataclass(frozen=True)
class FleetReport:
    """Per-device results and fleet totals."""

    devices: list[DeviceResult]
    has_labels: bool = False

    def totals(self) -> dict[str, Any]:
        """Counts over the fleet: sync outcomes, resumes, sources, latency, telemetry."""
        latencies = [v for d in self.devices for v in d.latencies_ms]
        sources: Counter[str] = Counter()
        for d in self.devices:
            sources.update(d.sources)
        syncs = Counter(d.sync.split(":")[0] for d in self.devices)
        correct = sum(sum(d.correct.values()) for d in self.devices)
        answered = sum(n for k, n in sources.items() if k != "unavailable")
        return {
            "devices": len(self.devices),
            "synced": syncs["updated"] + syncs["current"] + syncs["unchanged"],
            "blocked": syncs["blocked"],
            "failed": syncs["failed"] + syncs["unreachable"],
            "downloads_resumed": sum(d.resumed for d in self.devices),
            "predictions": dict(sources),
            "latency_p50_ms": _percentile(latencies, 50),
            "latency_p95_ms": _percentile(latencies, 95),
            "telemetry_sent": sum(d.telemetry_sent for d in self.devices),
            "telemetry_pending": sum(d.telemetry_pending for d in self.devices),
            "accuracy": correct / answered if self.has_labels and answered else None,
            **self._sample_totals(),
        }

    def _sample_totals(self) -> dict[str, int]:
        """Sample counts, only for a fleet where some device consented (else nothing)."""
        if not any(d.consented for d in self.devices):
            return {}
        return {
            "consented": sum(d.consented for d in self.devices),
            "lying": sum(d.lies for d in self.devices),
            "samples_sent": sum(d.samples_sent for d in self.devices),
            "samples_pending": sum(d.samples_pending for d in self.devices),
        }


def _device_id(spec: VirtualDevice) -> str:
    return f"sim-{spec.name}-{spec.seed}"


def _consenting(
    devices: Sequence[VirtualDevice], consent: float | Collection[str] | None
) -> set[int]:
    """Indices of the devices that consent (a fraction spread evenly, or names/ids)."""
    if consent is None:
        return set()
    if isinstance(consent, int | float) and not isinstance(consent, bool):
        if not 0.0 <= consent <= 1.0:
            raise InvalidInput(f"consent must be a fraction in [0, 1]; got {consent}")
        return {i for i in range(len(devices)) if int((i + 1) * consent) > int(i * consent)}
    names = set(consent)  # type: ignore[arg-type]
    return {i for i, d in enumerate(devices) if {d.name, _device_id(d)} & names}


def _percentile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return float(np.percentile(np.asarray(values), q))


def _state_for(network: str) -> DeviceState:
    kind = "wifi" if network == "wifi" else "offline" if network == "offline" else "cellular"
    return DeviceState(network_type=lambda: kind, is_charging=lambda: True)  # type: ignore[arg-type,return-value]


def _run_one(
    spec: VirtualDevice,
    server_url: str,
    device_key: str,
    work_dir: Path,
    inputs: np.ndarray,
    labels: np.ndarray | None,
    model: str,
    sync_attempts: int,
    class_names: Sequence[str] | None = None,
    consents: bool = False,
    lies: bool = False,
) -> DeviceResult:
    clock = SimClock()
    transport = SimulatedTransport(spec.network, clock, seed=spec.seed)
    facts = DeviceFacts(
        platform=spec.platform,  # type: ignore[arg-type]
        os_version="14",
        app_version="1.0.0",
        formats=spec.formats,
        device_model=f"sim-{spec.device_class}",
        device_class=spec.device_class,
        device_id=_device_id(spec),
    )
    result = DeviceResult(spec, consented=consents, lies=lies)
    device = Device(
        server_url,
        device_key,
        facts,
        work_dir / spec.name,
        transport=transport,
        state=_state_for(spec.network),
        clock=clock.now,
        sleep=clock.sleep,
        seed=spec.seed,
    )
    with device:
        if consents:
            device.set_consent(True)
        for _ in range(sync_attempts):
            try:
                report = device.sync()
            except Unavailable:
                result.sync = "unreachable"
                continue
            entry = report.models.get(model)
            result.sync = entry.summary if entry is not None else "no such model"
            result.resumed = result.resumed or bool(entry and entry.resumed)
            result.variant = entry.variant if entry is not None else None
            if report.is_ok:
                break
        handle = device.model(model)
        for i, sample in enumerate(inputs):
            try:
                prediction = handle.predict(sample)
            except PocketMLError:
                result.sources["unavailable"] += 1
                continue
            result.sources[prediction.source] += 1
            if labels is not None and prediction.class_index == int(labels[i]):
                result.correct[prediction.source] += 1
            if labels is not None and class_names is not None:
                # the user tells the app the right answer (a lying device: the next class)
                told = (int(labels[i]) + 1) % len(class_names) if lies else int(labels[i])
                device.feedback(
                    prediction.prediction_id,
                    label=class_names[told],
                    model=model,
                    version=prediction.version,
                )
            result.latencies_ms.append(prediction.latency_ms)
        for _ in range(sync_attempts):
            flushed = device.flush()
            result.telemetry_sent += flushed.sent
            result.telemetry_pending = flushed.pending
            if flushed.samples is not None:
                result.samples_sent += flushed.samples.sent
                result.samples_pending = flushed.samples.pending
            if flushed.error is None and (flushed.samples is None or flushed.samples.error is None):
                break
    result.faults = {k: v for k, v in transport.stats.items() if v}
    return result


def run_fleet(
    server_url: str,
    device_key: str,
    devices: Sequence[VirtualDevice],
    inputs: np.ndarray,
    work_dir: Path | str,
    *,
    model: str = "digits",
    sync_attempts: int = 3,
    workers: int = 4,
    labels: np.ndarray | None = None,
    shard: bool = False,
    feedback_labels: Sequence[str] | None = None,
    consent: float | Collection[str] | None = None,
    flip_labels_for: Collection[str] = (),
) -> FleetReport:
    """Let every device sync, predict each input, and flush its telemetry.

    Args:
        server_url: the pocketml server.
        device_key: the app's device key.
        devices: the fleet (see :func:`make_fleet`).
        inputs: raw input samples, shape (N, *sample_shape).
        work_dir: parent of every device's cache directory.
        model: the model to sync and predict with.
        sync_attempts: check-in / flush attempts per device (bad networks need several).
        workers: devices simulated at once (threads; each device's faults stay seeded).
        labels: true classes of ``inputs``; with them the report has accuracy per source.
        shard: give device i the inputs ``i::len(devices)`` instead of all of them (one
            pass over a test set spread across the fleet).
        feedback_labels: class names; with ``labels``, every prediction is followed by the
            user's feedback with the true class, so the server measures each version's
            accuracy and a worse model shows worse numbers.
        consent: which devices consent to sample capture (what the server's capture
            policy then collects): a fraction in [0, 1] (spread evenly over the fleet's
            order), or a set of device names (``dev-003``) or device ids. None: nobody.
        flip_labels_for: devices (names or ids) whose feedback labels lie: the class
            after the true one, ``(y + 1) mod K`` (a poisoning minority for the loop).

    Returns:
        The FleetReport (devices in the given order).
    """
    for spec in devices:
        if spec.network not in PROFILES:
            raise InvalidInput(f"unknown network profile {spec.network!r}")
    if labels is not None and len(labels) != len(inputs):
        raise InvalidInput(f"labels ({len(labels)}) must match inputs ({len(inputs)})")
    root = Path(work_dir)
    n = len(devices)
    chosen = _consenting(devices, consent)
    liars = set(flip_labels_for)

    def part(values: np.ndarray | None, i: int) -> np.ndarray | None:
        return values[i::n] if values is not None and shard else values

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [
            pool.submit(
                _run_one,
                spec,
                server_url,
                device_key,
                root,
                inputs[i::n] if shard else inputs,
                part(labels, i),
                model,
                sync_attempts,
                feedback_labels,
                i in chosen,
                bool({spec.name, _device_id(spec)} & liars),
            )
            for i, spec in enumerate(devices)
        ]
        results = [f.result() for f in futures]
    return FleetReport(results, has_labels=labels is not None)
