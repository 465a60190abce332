"""Values of the delivery service: device facts, hybrid and download policies, manifests.

All frozen dataclasses; the server builds ``DeviceFacts`` from its validated pydantic
request body, and the service returns ``Manifest`` (the canonical JSON bytes and their
ETag), so nothing here depends on the web framework.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = [
    "DEFAULT_CHECKIN_INTERVAL_S",
    "HYBRID_MODES",
    "DeviceFacts",
    "DownloadPolicy",
    "HybridPolicy",
    "Manifest",
    "VersionPolicy",
]

DEFAULT_CHECKIN_INTERVAL_S = 3600
HYBRID_MODES: tuple[str, ...] = ("local", "cloud", "cascade")

HybridMode = Literal["local", "cloud", "cascade"]


@dataclass(frozen=True)
class DeviceFacts:
    """What a device reported at check-in (already validated at the HTTP edge).

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
class HybridPolicy:
    """How an app combines its local model and the cloud model of one version."""

    mode: HybridMode = "cascade"
    threshold: float = 0.8
    timeout_ms: int = 1500
    max_retries: int = 2
    cloud_variant: str | None = None

    def to_dict(self, model: str) -> dict[str, Any]:
        """The manifest's ``hybrid`` object for ``model``."""
        return {
            "mode": self.mode,
            "threshold": self.threshold,
            "cloud_route": f"/v1/models/{model}/predict",
            "cloud_variant": self.cloud_variant,
            "timeout_ms": self.timeout_ms,
            "max_retries": self.max_retries,
        }


@dataclass(frozen=True)
class DownloadPolicy:
    """When a device may download a package."""

    wifi_only: bool = False
    charging_only: bool = False
    max_cellular_bytes: int = 50 * 1024 * 1024

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``download_policy`` object."""
        return {
            "wifi_only": self.wifi_only,
            "charging_only": self.charging_only,
            "max_cellular_bytes": self.max_cellular_bytes,
        }


@dataclass(frozen=True)
class VersionPolicy:
    """The effective hybrid and download policy of one model version."""

    model: str
    version: int | None
    hybrid: HybridPolicy = field(default_factory=HybridPolicy)
    download: DownloadPolicy = field(default_factory=DownloadPolicy)

    def with_overrides(self, hybrid: dict[str, Any], download: dict[str, Any]) -> VersionPolicy:
        """This policy with stored overrides applied (unknown keys are ignored)."""
        hybrid_fields = {k: v for k, v in hybrid.items() if k in HybridPolicy.__dataclass_fields__}
        download_fields = {
            k: v for k, v in download.items() if k in DownloadPolicy.__dataclass_fields__
        }
        return replace(
            self,
            hybrid=replace(self.hybrid, **hybrid_fields),
            download=replace(self.download, **download_fields),
        )


@dataclass(frozen=True)
class Manifest:
    """A device's manifest: canonical JSON bytes and their ETag (sha256 hex)."""

    body: bytes
    etag: str
