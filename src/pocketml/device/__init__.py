"""pocketml.device: the device SDK, the reference client of the pocketml device protocol.

It checks in with the server, downloads, verifies (Ed25519 + every sha256), decrypts and
caches model packages (resuming cut downloads), runs them locally with ONNX Runtime or
LiteRT, escalates to the cloud model as the hybrid policy says (with timeouts, retries and
a circuit breaker), and reports telemetry through a restart-proof queue.

It installs with ``pip install 'pocketml[device]'`` (numpy, onnxruntime, httpx,
cryptography) and never imports torch, FastAPI or SQLAlchemy. Typical use::

    device = Device("https://ml.example.com", DEVICE_KEY,
                    DeviceFacts(platform="android", os_version="14", app_version="2.3.1",
                                formats=("tflite", "onnx"), device_class="android-mid"),
                    cache_dir=app_files / "pocketml")
    device.sync()
    prediction = device.model("digits").predict(pixels)
    device.feedback(prediction.prediction_id, label="7")
    device.flush()

Consented sample capture (docs/device-sdk.md, "Consent"): ``device.set_consent(True)``
when the user agrees, ``Device(..., redact=fn)`` for the PII hook, ``device.forget_me()``
to erase the device's data here and on the server.

Federated training (docs/federated-device.md): ``device.set_federated_consent(True)``,
``device.add_training_example(model, x, label)`` (kept on the device), and
``device.federated_step()`` from the app's background job.

``docs/device-sdk.md`` is the guide.
"""

from pocketml.device._capture import CaptureFlush, SampleCapture
from pocketml.device._cloud import CircuitOpen, CloudAnswer
from pocketml.device._device import Device, ForgetReport
from pocketml.device._download import OversizeDownload
from pocketml.device._federated import FEDERATED_MIN_BATTERY, FederatedReport
from pocketml.device._model import LocalModel
from pocketml.device._net import Backoff, CircuitBreaker, ServerError
from pocketml.device._queue import TelemetryQueue
from pocketml.device._telemetry import FlushReport
from pocketml.device._types import (
    DEVICE_CLASSES,
    FORMATS,
    CapturePolicy,
    DeviceFacts,
    DeviceState,
    DownloadEvent,
    DownloadPolicy,
    HybridPolicy,
    ModelEntry,
    ModelSync,
    MonitorPolicy,
    PackageMismatch,
    PackageRef,
    Prediction,
    ProtocolError,
    SyncReport,
)

__all__ = [
    "DEVICE_CLASSES",
    "FEDERATED_MIN_BATTERY",
    "FORMATS",
    "Backoff",
    "CaptureFlush",
    "CapturePolicy",
    "CircuitBreaker",
    "CircuitOpen",
    "CloudAnswer",
    "Device",
    "DeviceFacts",
    "DeviceState",
    "DownloadEvent",
    "DownloadPolicy",
    "FederatedReport",
    "FlushReport",
    "ForgetReport",
    "HybridPolicy",
    "LocalModel",
    "ModelEntry",
    "ModelSync",
    "MonitorPolicy",
    "OversizeDownload",
    "PackageMismatch",
    "PackageRef",
    "Prediction",
    "ProtocolError",
    "SampleCapture",
    "ServerError",
    "SyncReport",
    "TelemetryQueue",
]
