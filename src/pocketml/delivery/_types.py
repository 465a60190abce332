"""Values of the delivery service: device facts, version policies, manifests.

``HybridPolicy`` and ``DownloadPolicy`` are the protocol's (``pocketml.protocol``): the
device SDK parses the manifest into the same classes. All frozen dataclasses; the server
builds ``CheckinFacts`` from its validated pydantic request body, and the service returns
``Manifest`` (the canonical JSON bytes and their ETag), so nothing here depends on the web
framework.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from pocketml.protocol import (
    HYBRID_MODES,
    CapturePolicy,
    DownloadPolicy,
    HybridPolicy,
    MonitorPolicy,
)

__all__ = [
    "DEFAULT_CHECKIN_INTERVAL_S",
    "HYBRID_MODES",
    "CheckinFacts",
    "DownloadPolicy",
    "HybridPolicy",
    "Manifest",
    "MonitorPolicy",
    "VersionPolicy",
]

DEFAULT_CHECKIN_INTERVAL_S = 3600


@dataclass(frozen=True)
class CheckinFacts:
    """What a device reported at check-in (already validated at the HTTP edge).

    The server's view of a check-in body (the device SDK's ``DeviceFacts`` is what an app
    passes in, before the SDK adds its id). ``device_class`` may be any valid class name
    (``pocketml.protocol.DEVICE_CLASS_PATTERN``): one no variant was built for gets the
    general variant choice.

    ``formats`` is in the device's order of preference; ``runtimes`` maps a runtime name
    ("onnxruntime", "litert") to its version string.
    """

    device_id: str
    platform: str
    formats: tuple[str, ...]
    os_version: str = ""
    app_version: str = ""
    device_model: str | None = None
    device_class: str | None = None
    runtimes: tuple[tuple[str, str], ...] = ()
    country: str | None = None

    @property
    def runtime_versions(self) -> dict[str, str]:
        """``runtimes`` as a dict (lower-case runtime name -> version)."""
        return {name.lower(): version for name, version in self.runtimes}

    def targeting_key(self) -> tuple[Any, ...]:
        """The facts variant choice depends on; devices sharing them get the same manifest."""
        return (self.platform, self.device_class, self.formats, self.runtimes)

    def profile_key(self) -> tuple[Any, ...]:
        """Every fact but the device id: what targeting rules can test."""
        return (
            self.platform,
            self.formats,
            self.os_version,
            self.app_version,
            self.device_model,
            self.device_class,
            self.runtimes,
            self.country,
        )


@dataclass(frozen=True)
class VersionPolicy:
    """The effective hybrid, download, monitor and capture policy of one model version."""

    model: str
    version: int | None
    hybrid: HybridPolicy = field(default_factory=HybridPolicy)
    download: DownloadPolicy = field(default_factory=DownloadPolicy)
    monitor: MonitorPolicy = field(default_factory=MonitorPolicy)
    capture: CapturePolicy = field(default_factory=CapturePolicy)

    def with_overrides(
        self,
        hybrid: dict[str, Any],
        download: dict[str, Any],
        monitor: dict[str, Any] | None = None,
        capture: dict[str, Any] | None = None,
    ) -> VersionPolicy:
        """This policy with stored overrides applied (unknown keys are ignored)."""
        monitor_fields = {
            k: v for k, v in (monitor or {}).items() if k in MonitorPolicy.__dataclass_fields__
        }
        hybrid_fields = {k: v for k, v in hybrid.items() if k in HybridPolicy.__dataclass_fields__}
        download_fields = {
            k: v for k, v in download.items() if k in DownloadPolicy.__dataclass_fields__
        }
        return replace(
            self,
            hybrid=replace(self.hybrid, **hybrid_fields),
            download=replace(self.download, **download_fields),
            monitor=replace(self.monitor, **monitor_fields),
            # Stored overrides were validated at the edge; from_dict fills the defaults.
            capture=CapturePolicy.from_dict(
                {
                    k: v
                    for k, v in (capture or {}).items()
                    if k in CapturePolicy.__dataclass_fields__
                }
            ),
        )


@dataclass(frozen=True)
class Manifest:
    """A device's manifest: canonical JSON bytes and their ETag (sha256 hex)."""

    body: bytes
    etag: str
