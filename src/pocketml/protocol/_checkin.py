"""Check-in: device classes, the per-model choice, the policies and the manifest entry.

One declaration per noun that the server sends and the device reads:

- **Device classes** are open: any name matching ``DEVICE_CLASS_PATTERN`` (lower case,
  1-32 characters, like a profile name in ``pocketml.bench``), so an app can report its own
  profiles. ``BUILTIN_DEVICE_CLASSES`` are the profiles pocketml ships. A class no variant
  was built for gets the general variant choice (format, runtime, precision), like a
  device that reports none; telemetry groups it under its own name.
- **The check-in choice** of a model for a device (``CheckinChoice``): nothing, the
  control (production), the rollout candidate, or an experiment arm serving version n.
- **Policies and the package reference** (``HybridPolicy``, ``DownloadPolicy``,
  ``MonitorPolicy``, ``PackageRef``): the same frozen dataclasses on the server (written
  into the manifest) and in the device SDK (parsed from it).
- **The manifest entry** (``MANIFEST_ENTRY_FIELDS`` and its nested objects): the server's
  builder, the OpenAPI model and the device parser are checked against it by tests.
- **One value, three names**: the sha256 of a package file is the package's identity.
  Its canonical name is ``package.sha256`` (``PACKAGE_DIGEST``); ``package.id`` and the
  check-in's ``models.<name>.package_id`` carry the same value under the names listed in
  ``PACKAGE_DIGEST_ALIASES``. Both stay on the wire: old clients read ``package.id`` and
  send ``package_id``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, get_args

from pocketml.protocol._fields import INT64_MAX, WireField

__all__ = [
    "BUILTIN_DEVICE_CLASSES",
    "DEFAULT_MAX_CELLULAR_BYTES",
    "DEVICE_CLASS_PATTERN",
    "DOWNLOAD_POLICY_FIELDS",
    "HYBRID_MODES",
    "HYBRID_POLICY_FIELDS",
    "MANIFEST_ENTRY_FIELDS",
    "MONITOR_POLICY_FIELDS",
    "PACKAGE_DIGEST",
    "PACKAGE_DIGEST_ALIASES",
    "PACKAGE_FIELDS",
    "PLATFORMS",
    "CheckinChoice",
    "DownloadPolicy",
    "HybridMode",
    "HybridPolicy",
    "MonitorPolicy",
    "PackageRef",
    "Platform",
    "arm_choice",
    "check_device_class",
    "choice_version",
    "cloud_route_of",
]

# ---------------------------------------------------------------- platforms

Platform = Literal["android", "ios", "linux", "web"]
"""What a device runs on: a phone OS, an edge Linux box, or a web page (the TypeScript
SDK in a browser: onnxruntime-web, which takes platform-neutral ONNX/ORT files)."""
PLATFORMS: tuple[str, ...] = get_args(Platform)

# ---------------------------------------------------------------- device classes

DEVICE_CLASS_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,31}$"
BUILTIN_DEVICE_CLASSES: tuple[str, ...] = (
    "android-low",
    "android-mid",
    "android-high",
    "iphone",
    "edge-linux",
)
_DEVICE_CLASS = re.compile(DEVICE_CLASS_PATTERN.removesuffix("$") + r"\Z")


def check_device_class(name: str) -> str:
    """Return ``name`` when it is a valid device class name.

    Args:
        name: a built-in profile name or an app's own.

    Returns:
        ``name``.

    Raises:
        ValueError: naming the rule (callers translate it to their error type).
    """
    if not isinstance(name, str) or not _DEVICE_CLASS.match(name):
        raise ValueError(
            f"a device class is 1-32 lower-case letters, digits, '_', '.' or '-' starting "
            f"with a letter or digit (e.g. {BUILTIN_DEVICE_CLASSES[1]!r}); got {name!r}"
        )
    return name


# ---------------------------------------------------------------- check-in choices


class CheckinChoice(StrEnum):
    """What check-in serves a device for one model (besides an arm, see ``arm_choice``).

    The values are short because they are part of the manifest cache key.
    """

    NOTHING = "-"
    """Channel targeting excludes the device: the model is listed without a version."""
    CONTROL = "c"
    """The production version."""
    CANDIDATE = "x"
    """The candidate version of the model's running rollout."""


def arm_choice(version: int) -> str:
    """The choice code of an experiment arm serving ``version`` (``"v<n>"``)."""
    return f"v{version}"


def choice_version(choice: str) -> int | None:
    """The version an arm choice serves, or None for the other choices."""
    return int(choice[1:]) if choice.startswith("v") else None


# ---------------------------------------------------------------- policies

HybridMode = Literal["local", "cloud", "cascade"]
HYBRID_MODES: tuple[str, ...] = ("local", "cloud", "cascade")
DEFAULT_MAX_CELLULAR_BYTES = 50 * 1024 * 1024


def cloud_route_of(model: str) -> str:
    """The server's cloud inference route of ``model``."""
    return f"/v1/models/{model}/predict"


@dataclass(frozen=True)
class HybridPolicy:
    """How predictions of one model version are split between the device and the cloud.

    The server stores overrides per version and writes ``to_dict`` into the manifest's
    ``hybrid``; the device SDK parses that object back into this class.
    """

    mode: HybridMode = "local"
    threshold: float = 0.8
    cloud_route: str | None = None
    cloud_variant: str | None = None
    timeout_ms: int = 1500
    max_retries: int = 2

    def to_dict(self, model: str) -> dict[str, Any]:
        """The manifest's ``hybrid`` object for ``model`` (the route defaults to its own)."""
        return {
            "mode": self.mode,
            "threshold": self.threshold,
            "cloud_route": self.cloud_route or cloud_route_of(model),
            "cloud_variant": self.cloud_variant,
            "timeout_ms": self.timeout_ms,
            "max_retries": self.max_retries,
        }


@dataclass(frozen=True)
class DownloadPolicy:
    """When a device may download a package of one model version."""

    wifi_only: bool = False
    charging_only: bool = False
    max_cellular_bytes: int = DEFAULT_MAX_CELLULAR_BYTES

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``download_policy`` object."""
        return {
            "wifi_only": self.wifi_only,
            "charging_only": self.charging_only,
            "max_cellular_bytes": self.max_cellular_bytes,
        }


@dataclass(frozen=True)
class MonitorPolicy:
    """How a device sketches what one model version scores (``profile`` events).

    Only versions whose package carries a reference profile are sketched. A device keeps
    one open window per version, aligned to multiples of ``window_s`` in unix time, and
    sends its counts when the window is over, when it holds ``max_rows`` inputs, or at
    ``flush()``. With ``epsilon_per_day`` set, every count gets local differential
    privacy noise: a device spends at most ``epsilon_per_day`` per UTC day in equal
    shares of one window each (``epsilon_per_window``), closes windows only when they
    are over (an early close would spend a share), and the server refuses a day's events
    beyond the budget (docs/monitoring.md, "Privacy").
    """

    enabled: bool = True
    window_s: int = 3600
    max_rows: int = 10_000
    epsilon_per_day: float | None = None

    @property
    def epsilon_per_window(self) -> float | None:
        """The epsilon one window's sketch spends: the day's budget over its windows."""
        if self.epsilon_per_day is None:
            return None
        return self.epsilon_per_day / max(1, 86_400 // self.window_s)

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``monitor`` object."""
        return {
            "enabled": self.enabled,
            "window_s": self.window_s,
            "max_rows": self.max_rows,
            "epsilon_per_day": self.epsilon_per_day,
        }


# ---------------------------------------------------------------- the manifest entry


@dataclass(frozen=True)
class PackageRef:
    """Where and what a model's package is: the manifest's ``models[].package``.

    The server writes ``to_dict`` into the manifest; the device SDK parses it back.
    ``sha256`` is the package's identity (``PACKAGE_DIGEST``); ``id`` carries the same
    value under its older name.
    """

    id: str
    url: str
    size: int
    sha256: str
    signing_key_id: str
    content_key_id: str | None

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``package`` object."""
        return {
            "id": self.id,
            "url": self.url,
            "size": self.size,
            "sha256": self.sha256,
            "signing_key_id": self.signing_key_id,
            "content_key_id": self.content_key_id,
        }


_SHA256 = r"^[0-9a-f]{64}$"
_KEY_ID = r"^[A-Za-z0-9][A-Za-z0-9_:-]{0,127}$"

PACKAGE_DIGEST = "package.sha256"
"""The canonical name of a package's identity: the sha256 hex of the package file."""
PACKAGE_DIGEST_ALIASES: dict[str, str] = {
    "package.id": "the manifest's id of the package (the same value; its download path "
    "is /v1/packages/<id>)",
    "models.<name>.package_id": "the check-in request's report of the package a device "
    "holds (the same value)",
}
"""Other wire names of ``PACKAGE_DIGEST`` (kept: old clients read and send them)."""

PACKAGE_FIELDS: tuple[WireField, ...] = (
    WireField("id", "string", "Alias of `sha256` (the download path's id).", pattern=_SHA256),
    WireField(
        "url",
        "string",
        "Where to download it (a server path or an absolute URL).",
        max_length=2048,
    ),
    WireField("size", "integer", "Bytes of the package file.", minimum=1, maximum=0xFFFFFFFF),
    WireField("sha256", "string", "The package file's sha256: its identity.", pattern=_SHA256),
    WireField("signing_key_id", "string", "The key that signed it.", pattern=_KEY_ID),
    WireField(
        "content_key_id",
        "string",
        "The content key that decrypts its model, null when not encrypted.",
        nullable=True,
        pattern=_KEY_ID,
    ),
)

DOWNLOAD_POLICY_FIELDS: tuple[WireField, ...] = (
    WireField("wifi_only", "boolean", "Download only on Wi-Fi."),
    WireField("charging_only", "boolean", "Download only while charging."),
    WireField(
        "max_cellular_bytes",
        "integer",
        "The largest package downloaded over a cellular network.",
        minimum=0,
        maximum=INT64_MAX,
    ),
)

HYBRID_POLICY_FIELDS: tuple[WireField, ...] = (
    WireField("mode", "string", "Who answers a prediction.", choices=HYBRID_MODES),
    WireField(
        "threshold",
        "number",
        "In `cascade`, ask the cloud below this top probability.",
        minimum=0,
        maximum=1,
    ),
    WireField("cloud_route", "string", "The cloud inference path on the server.", max_length=260),
    WireField(
        "cloud_variant",
        "string",
        "The variant the cloud runs, null when the version has none.",
        nullable=True,
        max_length=64,
    ),
    WireField("timeout_ms", "integer", "Timeout of one cloud call.", minimum=1, maximum=600_000),
    WireField("max_retries", "integer", "Retries of a failed cloud call.", minimum=0, maximum=100),
)

MONITOR_POLICY_FIELDS: tuple[WireField, ...] = (
    WireField("enabled", "boolean", "Sketch what this version scores (when it has a profile)."),
    WireField(
        "window_s",
        "integer",
        "Width of a sketch window in seconds (windows start at multiples of it).",
        minimum=60,
        maximum=86_400,
    ),
    WireField(
        "max_rows",
        "integer",
        "Send a window early once it holds this many inputs (without DP).",
        minimum=1,
        maximum=10**9,
    ),
    WireField(
        "epsilon_per_day",
        "number",
        "Local differential privacy budget per device and UTC day; null: exact counts.",
        nullable=True,
        minimum=0.001,
        maximum=100,
    ),
)

MANIFEST_ENTRY_FIELDS: tuple[WireField, ...] = (
    WireField("name", "string", "The model's name.", min_length=1, max_length=64),
    WireField(
        "version",
        "integer",
        "The version served, null when the model has none for this device.",
        nullable=True,
        minimum=1,
        maximum=INT64_MAX,
    ),
    WireField(
        "variant",
        "string",
        "The device variant chosen, null when none is loadable here.",
        nullable=True,
        max_length=64,
    ),
    WireField("format", "string", "The variant's model format.", nullable=True, max_length=16),
    WireField(
        "precision",
        "string",
        "The variant's precision (fp32, fp16, int8).",
        nullable=True,
        max_length=16,
    ),
    WireField("package", "object", "Where and what the package is (`package.*`).", nullable=True),
    WireField(
        "model_sha256",
        "string",
        "The sha256 of the model file inside the package.",
        nullable=True,
        pattern=_SHA256,
    ),
    WireField("download_policy", "object", "When to download (`download_policy.*`)."),
    WireField("hybrid", "object", "Local or cloud inference (`hybrid.*`)."),
    WireField(
        "monitor",
        "object",
        "Sketching of scored inputs (`monitor.*`); absent from older servers.",
        required=False,
    ),
    WireField(
        "capture",
        "object",
        "Consented sample capture (`capture.*`); absent from older servers: capture nothing.",
        required=False,
    ),
    WireField(
        "schema",
        "object",
        "The model's ModelSchema: what a client applies to raw inputs.",
        nullable=True,
    ),
)
