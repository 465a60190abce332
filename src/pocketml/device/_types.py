"""The device SDK's values: device facts and state, the parsed manifest, results and events.

Everything here is a frozen dataclass (no pydantic: the SDK installs with numpy,
onnxruntime, httpx and cryptography only). The manifest parser (``_entry``) checks every
field it uses and raises :class:`ProtocolError` naming the field, so a server speaking
another protocol version (or a network rewriting answers) fails loudly at check-in instead
of deep inside a download.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from pocketml.errors import IntegrityError, InvalidInput, PocketMLError
from pocketml.protocol import (
    BUILTIN_DEVICE_CLASSES,
    FORMAT_NAMES,
    PLATFORMS,
    CapturePolicy,
    DownloadPolicy,
    HybridPolicy,
    MonitorPolicy,
    PackageRef,
    Platform,
    check_device_class,
)

__all__ = [
    "DEVICE_CLASSES",
    "FORMATS",
    "CapturePolicy",
    "DeviceFacts",
    "DeviceState",
    "DownloadEvent",
    "DownloadPolicy",
    "HybridPolicy",
    "ModelEntry",
    "ModelSync",
    "MonitorPolicy",
    "PackageMismatch",
    "PackageRef",
    "Prediction",
    "ProtocolError",
    "SyncReport",
]

FORMATS = FORMAT_NAMES
DEVICE_CLASSES = BUILTIN_DEVICE_CLASSES  # the built-in profiles; apps may report their own
NetworkType = Literal["wifi", "cellular", "offline"]
Source = Literal["local", "cloud", "fallback"]


class ProtocolError(InvalidInput):
    """The server answered with JSON this SDK cannot read (another protocol version?)."""

    code = "protocol_error"


class PackageMismatch(IntegrityError):
    """A validly signed package that is not the one the check-in entry announced.

    Another model's, another version's (a downgrade), the cloud variant's, or one whose
    model sha256 differs from the entry's ``model_sha256``; also a cached package whose
    record names another model. It is never activated under the announced name.
    """

    code = "package_mismatch"


@dataclass(frozen=True)
class DeviceFacts:
    """What a device tells the server at check-in (``POST /v1/checkin``).

    Attributes:
        platform: one of ``pocketml.protocol.PLATFORMS`` (android, ios, linux, web).
        os_version: free text, at most 32 characters.
        app_version: free text, at most 32 characters.
        formats: runnable model formats in preference order (subset of ``FORMATS``).
        device_model: e.g. "Pixel 7" (optional).
        device_class: a device profile name, optional: a built-in one
            (``DEVICE_CLASSES``) or the app's own (1-32 lower-case letters, digits, ``_``,
            ``.``, ``-``; ``pocketml.protocol.DEVICE_CLASS_PATTERN``). A class no variant
            was built for gets the general variant choice.
        runtimes: runtime -> version, e.g. ``{"onnxruntime": "1.20.0"}``.
        country: ISO 3166-1 alpha-2 code, optional.
        device_id: a fixed device id; default a random id generated once per cache dir.
    """

    platform: Platform
    os_version: str
    app_version: str
    formats: tuple[str, ...] = ("onnx",)
    device_model: str | None = None
    device_class: str | None = None
    runtimes: Mapping[str, str] = field(default_factory=dict)
    country: str | None = None
    device_id: str | None = None

    def __post_init__(self) -> None:
        if self.platform not in PLATFORMS:
            raise InvalidInput(
                f"platform must be one of {', '.join(PLATFORMS)}; got {self.platform!r}"
            )
        bad = [f for f in self.formats if f not in FORMATS]
        if not self.formats or bad:
            raise InvalidInput(
                f"formats must be a non-empty subset of {', '.join(FORMATS)}; got "
                f"{list(self.formats)}. Pass e.g. formats=('tflite', 'onnx')."
            )
        if self.device_class is not None:
            try:
                check_device_class(self.device_class)
            except ValueError as exc:
                raise InvalidInput(f"device_class: {exc}. Pass a profile name or None.") from exc

    def checkin_body(self, device_id: str, models: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON body of ``POST /v1/checkin`` (optional fields left out when unset)."""
        body: dict[str, Any] = {
            "device_id": device_id,
            "platform": self.platform,
            "os_version": self.os_version,
            "app_version": self.app_version,
            "formats": list(self.formats),
            "models": dict(models),
        }
        optional = {
            "device_model": self.device_model,
            "device_class": self.device_class,
            "country": self.country,
            "runtimes": dict(self.runtimes) or None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body


def _default_network() -> NetworkType:
    return "wifi"


def _default_charging() -> bool:
    return True


def _default_idle() -> bool:
    return True


def _unknown_battery() -> float | None:
    return None


@dataclass(frozen=True)
class DeviceState:
    """Callbacks the SDK asks before downloading or training (an app wires them to the OS).

    Attributes:
        network_type: returns "wifi", "cellular" or "offline" (default: always "wifi").
        is_charging: returns True when plugged in (default: always True).
        free_disk_bytes: free bytes where the cache lives (default: ``shutil.disk_usage``
            of the cache directory, computed by the Device).
        is_idle: returns True when the user is not using the device (federated training;
            default: always True).
        battery_level: returns the charge in [0, 1], or None when unknown (federated
            training gives up below ``FEDERATED_MIN_BATTERY`` off the charger).
    """

    network_type: Callable[[], NetworkType] = _default_network
    is_charging: Callable[[], bool] = _default_charging
    free_disk_bytes: Callable[[], int] | None = None
    is_idle: Callable[[], bool] = _default_idle
    battery_level: Callable[[], float | None] = _unknown_battery


def disk_free(path: Path) -> int:
    """Free bytes on the file system holding ``path`` (its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return int(shutil.disk_usage(probe).free)


@dataclass(frozen=True)
class ModelEntry:
    """One model of a check-in manifest (``package`` is None for cloud-only models)."""

    name: str
    version: int | None
    variant: str | None
    format: str | None
    precision: str | None
    package: PackageRef | None
    model_sha256: str | None
    download: DownloadPolicy
    hybrid: HybridPolicy
    schema: Mapping[str, Any] | None = None
    monitor: MonitorPolicy | None = None  # None: a server from before profile events
    capture: CapturePolicy | None = None  # None: a server from before sample capture

    def to_json(self) -> dict[str, Any]:
        """The entry as JSON (what the SDK persists between runs)."""
        package = self.package
        return {
            "name": self.name,
            "version": self.version,
            "variant": self.variant,
            "format": self.format,
            "precision": self.precision,
            "package": None if package is None else package.__dict__.copy(),
            "model_sha256": self.model_sha256,
            "download_policy": self.download.__dict__.copy(),
            "hybrid": self.hybrid.__dict__.copy(),
            **({} if self.monitor is None else {"monitor": self.monitor.to_dict()}),
            **({} if self.capture is None else {"capture": self.capture.to_dict()}),
            "schema": None if self.schema is None else dict(self.schema),
        }


@dataclass(frozen=True)
class ModelSync:
    """What ``sync`` did for one model.

    ``status`` is one of "unchanged" (304), "current" (already active), "updated" (new
    package active), "blocked" (download policy), "failed" (``reason`` says the stage:
    protocol, disk, download, verify, key, load, internal) or "cloud-only" (no package for
    this device). A failed model keeps its previous package active; ``error`` is the typed
    error (a ``pocketml.errors.PocketMLError``) that stopped it.
    """

    model: str
    status: Literal["unchanged", "current", "updated", "blocked", "failed", "cloud-only"]
    version: int | None = None
    variant: str | None = None
    reason: str | None = None
    bytes_downloaded: int = 0
    resumed: bool = False
    from_cache: bool = False
    error: PocketMLError | None = field(default=None, compare=False)

    @property
    def summary(self) -> str:
        """``"failed: disk"``-style text for logs and tables."""
        return f"{self.status}: {self.reason}" if self.reason else self.status


@dataclass(frozen=True)
class SyncReport:
    """The result of ``Device.sync()``."""

    not_modified: bool
    models: Mapping[str, ModelSync]

    @property
    def is_ok(self) -> bool:
        """True when no model failed."""
        return all(m.status != "failed" for m in self.models.values())


@dataclass(frozen=True)
class DownloadEvent:
    """A progress callback's argument: ``kind`` is started, progress, done or failed."""

    kind: Literal["started", "progress", "done", "failed"]
    model: str
    version: int | None
    bytes: int
    total: int
    resumed: bool = False
    error: str | None = None


class Prediction(NamedTuple):
    """One prediction (an immutable named tuple: cheap to build on the hot path).

    Attributes:
        label: the predicted class label.
        probabilities: class probabilities.
        confidence: the top probability.
        source: "local", "cloud", or "fallback" (local answer after a failed cloud call).
        version: the model version that answered.
        latency_ms: wall time of the whole call.
        prediction_id: id to send feedback for.
        class_index: the index of ``label`` in the schema's labels.
    """

    label: str
    probabilities: np.ndarray
    confidence: float
    source: Source
    version: int | None
    latency_ms: float
    prediction_id: str
    class_index: int
