"""Pydantic models of the device protocol (check-in, keys, predict, telemetry, feedback).

Request bodies forbid unknown fields; responses document the JSON the routes send
(the hot routes serialise with orjson and skip response validation). Telemetry events
are TypedDicts discriminated on ``type`` so a validated batch is already a list of
plain dicts ready for a bulk insert. See ``docs/protocol.md``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, Literal, NotRequired, Union

from packaging.version import InvalidVersion, Version
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
    with_config,
)
from typing_extensions import TypedDict

from pocketml.bounds import Bounded, Count, FiniteFloat, Text, VersionNumber, check_text
from pocketml.protocol import (
    BUILTIN_DEVICE_CLASSES,
    DEVICE_CLASS_PATTERN,
    EVENT_KINDS,
    EVENT_TYPE_FIELD,
    EventKind,
    Platform,
    WireField,
)
from pocketml.schema import ModelSchema
from pocketml.server.schemas_keys import KeyringPublic

__all__ = [
    "CheckinRequest",
    "ContentKeyPublic",
    "DownloadPolicyInput",
    "FeedbackAccepted",
    "FeedbackRequest",
    "HybridPolicyInput",
    "ManifestPublic",
    "MetricsPublic",
    "PolicyPublic",
    "PolicyUpdate",
    "PredictRequest",
    "PredictResponse",
    "PredictionPublic",
    "TelemetryAccepted",
    "TelemetryRequest",
]

ID_PATTERN = r"^[A-Za-z0-9_.:-]{8,128}$"
SHA256 = r"^[0-9a-f]{64}$"
Format = Literal["onnx", "ort", "tflite", "coreml"]
_SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
DeviceClass = Annotated[
    str,
    Field(
        pattern=DEVICE_CLASS_PATTERN,
        description="A device profile: a built-in one ("
        + ", ".join(BUILTIN_DEVICE_CLASSES)
        + ") or the app's own (1-32 chars, lower case).",
    ),
]


@lru_cache(maxsize=4096)
def _is_version(text: str) -> bool:
    try:
        Version(text)
    except InvalidVersion:
        return False
    return True


class _Strict(Bounded):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- check-in


class HeldModel(_Strict):
    """What the device holds of one model."""

    version: VersionNumber | None = None
    variant: Annotated[Text, Field(max_length=64)] | None = None
    package_id: str | None = Field(
        None,
        pattern=SHA256,
        description="The sha256 of the package held: the manifest's `package.sha256` "
        "(`pocketml.protocol.PACKAGE_DIGEST`; `package_id` is its check-in alias).",
    )


class CheckinRequest(_Strict):
    """The facts a device reports at check-in."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "device_id": "a3f9c2d18e7b4f60",
                    "platform": "android",
                    "os_version": "14",
                    "app_version": "2.3.1",
                    "device_model": "Pixel 7",
                    "device_class": "android-mid",
                    "formats": ["tflite", "ort"],
                    "runtimes": {"onnxruntime": "1.20.0", "litert": "1.2.0"},
                    "country": "DE",
                    "models": {
                        "digits": {
                            "version": 3,
                            "variant": "cnn-small-tflite-fp32",
                            "package_id": _SHA,
                        }
                    },
                }
            ]
        },
    )

    device_id: str = Field(pattern=ID_PATTERN, description="Random per install, 8-128 chars.")
    platform: Platform
    os_version: Annotated[Text, Field(max_length=32)]
    app_version: Annotated[Text, Field(max_length=32)]
    device_model: Annotated[Text, Field(max_length=64)] | None = None
    device_class: DeviceClass | None = None
    formats: list[Format] = Field(
        min_length=1, max_length=4, description="Runnable formats, in preference order."
    )
    runtimes: dict[Text, Text] | None = Field(
        None, max_length=8, description="Runtime name -> version, e.g. onnxruntime: 1.20.0."
    )
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$")
    models: dict[Annotated[Text, Field(max_length=64)], HeldModel] | None = Field(
        None, max_length=200
    )

    @field_validator("formats")
    @classmethod
    def _unique_formats(cls, formats: list[str]) -> list[str]:
        if len(set(formats)) != len(formats):
            raise ValueError(f"formats must not repeat; got {formats}")
        return formats

    @field_validator("runtimes")
    @classmethod
    def _runtime_versions(cls, runtimes: dict[str, str] | None) -> dict[str, str] | None:
        for name, version in (runtimes or {}).items():
            if not 1 <= len(name) <= 32 or len(version) > 32:
                raise ValueError(f"runtime names and versions are 1-32 chars; got {name!r}")
            if not _is_version(version):
                raise ValueError(f"runtime {name!r} needs a version like '1.20.0'; got {version!r}")
        return runtimes


class PackagePublic(BaseModel):
    """Where and what the package of the chosen variant is.

    ``sha256`` is the package's identity (``pocketml.protocol.PACKAGE_DIGEST``); ``id``
    carries the same value (an alias old clients read).
    """

    id: str
    url: str
    size: int
    sha256: str
    signing_key_id: str
    content_key_id: str | None


class DownloadPolicyPublic(BaseModel):
    """When the device may download."""

    wifi_only: bool
    charging_only: bool
    max_cellular_bytes: int


class HybridPolicyPublic(BaseModel):
    """How the app combines local and cloud inference."""

    mode: Literal["local", "cloud", "cascade"]
    threshold: float
    cloud_route: str
    cloud_variant: str | None
    timeout_ms: int
    max_retries: int


class MonitorPolicyPublic(BaseModel):
    """How the device sketches what the version scores (``profile`` events)."""

    enabled: bool
    window_s: int
    max_rows: int
    epsilon_per_day: float | None


class CapturePolicyPublic(BaseModel):
    """Consented sample capture of the version (``pocketml.protocol.CapturePolicy``)."""

    enabled: bool
    rate: float
    when: Literal["all", "low_confidence", "feedback", "drifted"]
    low_confidence_below: float
    drifted_bins: dict[str, list[int]]
    max_bytes_per_day: int
    wifi_only: bool
    retention_days: int
    max_hold: int


class ManifestModel(BaseModel):
    """One model of the manifest; ``variant``/``package`` null when nothing is loadable.

    Documentation of ``pocketml.protocol.MANIFEST_ENTRY_FIELDS`` (the route sends the
    builder's canonical JSON); tests/test_protocol.py checks the two agree.
    """

    name: str
    version: int | None
    variant: str | None
    format: str | None
    precision: str | None
    package: PackagePublic | None
    model_sha256: str | None
    download_policy: DownloadPolicyPublic
    hybrid: HybridPolicyPublic
    monitor: MonitorPolicyPublic | None = Field(
        None, description="Sketching of scored inputs; absent from servers before it."
    )
    capture: CapturePolicyPublic | None = Field(
        None, description="Consented sample capture; absent from servers before it."
    )
    schema_: ModelSchema | None = Field(
        alias="schema",
        serialization_alias="schema",
        description="The model's ModelSchema (inputs, normalization, labels): what a client "
        "applies to raw inputs, for its own model and for cloud calls alike.",
    )


class FederatedRequiresPublic(BaseModel):
    """What a device must meet to join a federated round (``FEDERATED_REQUIRES_FIELDS``)."""

    charging: bool
    wifi: bool
    idle: bool
    min_samples: int


class FederatedAnnouncementPublic(BaseModel):
    """An open federated task the device is targeted by (``FEDERATED_ANNOUNCEMENT_FIELDS``;
    docs/federated-protocol.md, §1). An announcement is no selection: the device joins."""

    task_id: str
    model: str
    base_version: int
    round: int
    kind: Literal["head"]
    requires: FederatedRequiresPublic
    join_url: str
    join_until: float


class ManifestPublic(BaseModel):
    """The check-in answer."""

    app_id: str
    checkin_interval_s: int
    keyring: KeyringPublic = Field(
        description="The app's signed keyring; devices follow it by the rule in "
        "docs/packages.md (Signing keys: rotation and revocation)."
    )
    keyring_chain: list[KeyringPublic] = Field(
        description="The keyrings before `keyring` (oldest first, at most 16): a device "
        "whose trusted keys were all revoked meanwhile accepts them one by one."
    )
    public_keys: dict[str, str] = Field(
        description="Deprecated (removed in the next release): a copy of keyring.keys for "
        "clients that predate keyrings. Never lists a revoked key.",
        json_schema_extra={"deprecated": True},
    )
    models: list[ManifestModel]
    federated: list[FederatedAnnouncementPublic] | None = Field(
        None,
        description="Open federated tasks this device is targeted by; absent when there "
        "are none (docs/federated-protocol.md).",
    )


class ContentKeyPublic(BaseModel):
    """An app's AES content key (for encrypted packages)."""

    key_id: str
    algorithm: Literal["AES-256-GCM"] = "AES-256-GCM"
    key: str = Field(description="Base64 of the raw 32-byte key.")


# ---------------------------------------------------------------- policies


class HybridPolicyInput(_Strict):
    """Overrides of a version's hybrid policy (fields left out keep their default)."""

    mode: Literal["local", "cloud", "cascade"] | None = None
    threshold: FiniteFloat | None = Field(None, ge=0.0, le=1.0)
    timeout_ms: int | None = Field(None, ge=50, le=60_000)
    max_retries: int | None = Field(None, ge=0, le=10)


class DownloadPolicyInput(_Strict):
    """Overrides of a version's download policy."""

    wifi_only: bool | None = None
    charging_only: bool | None = None
    max_cellular_bytes: Count | None = None


class MonitorPolicyInput(_Strict):
    """Overrides of a version's monitor policy (sketch windows, local DP budget)."""

    enabled: bool | None = None
    window_s: int | None = Field(None, ge=60, le=86_400)
    max_rows: int | None = Field(None, ge=1, le=10**9)
    epsilon_per_day: FiniteFloat | None = Field(
        None,
        ge=0.001,
        le=100.0,
        description="Local DP budget per device and UTC day; leave out for exact counts.",
    )


class CapturePolicyInput(_Strict):
    """Overrides of a version's capture policy (bounds: ``protocol.CAPTURE_POLICY_FIELDS``)."""

    enabled: bool | None = None
    rate: FiniteFloat | None = Field(None, ge=0.0, le=1.0)
    when: Literal["all", "low_confidence", "feedback", "drifted"] | None = None
    low_confidence_below: FiniteFloat | None = Field(None, ge=0.0, le=1.0)
    drifted_bins: dict[str, list[int]] | None = None
    max_bytes_per_day: int | None = Field(None, ge=0, le=10**10)
    wifi_only: bool | None = None
    retention_days: int | None = Field(None, ge=1, le=365)
    max_hold: int | None = Field(None, ge=1, le=10_000)


class PolicyUpdate(_Strict):
    """``PUT .../policy``: a section given replaces that section's stored overrides."""

    hybrid: HybridPolicyInput | None = None
    download: DownloadPolicyInput | None = None
    monitor: MonitorPolicyInput | None = None
    capture: CapturePolicyInput | None = None


class PolicyPublic(BaseModel):
    """The effective policy of one version."""

    model: str
    version: int | None
    hybrid: HybridPolicyPublic
    download: DownloadPolicyPublic
    monitor: MonitorPolicyPublic
    capture: CapturePolicyPublic


# ---------------------------------------------------------------- predict


class PredictRequest(_Strict):
    """Cloud inference input (documentation; the route parses the body itself)."""

    inputs: list[Any] = Field(description="One sample or a batch, already normalized.")
    device_id: str | None = Field(None, pattern=ID_PATTERN)
    prediction_id: Annotated[Text, Field(max_length=128)] | None = None


class PredictionPublic(BaseModel):
    """One sample's answer (the device SDK's ``Prediction`` is its own, richer value)."""

    label: str
    index: int
    confidence: float
    probabilities: list[float]


class PredictResponse(BaseModel):
    """Cloud inference output."""

    model: str
    version: int
    variant: str
    predictions: list[PredictionPublic]
    prediction_id: str | None
    server_latency_ms: float


# ---------------------------------------------------------------- telemetry
# The event models are generated from ``pocketml.protocol.EVENT_KINDS`` (the one
# declaration of every kind's fields); see ``_event_type``.


def _event_type(spec: WireField) -> Any:
    """The pydantic annotation of one declared event field (bounds as declared)."""
    base: Any
    if spec.choices:
        base = Literal[spec.choices]
    elif spec.type == "string":
        limits = Field(min_length=spec.min_length, max_length=spec.max_length)
        if spec.pattern is None:
            base = Annotated[Text, limits]
        else:  # a pattern after Text's validator would be checked but not documented
            base = Annotated[str, Field(pattern=spec.pattern), limits, AfterValidator(check_text)]
    elif spec.type == "integer":
        base = Annotated[int, Field(ge=spec.minimum, le=spec.maximum)]
    elif spec.type == "number":
        base = Annotated[float, Field(ge=spec.minimum, le=spec.maximum, allow_inf_nan=False)]
    elif spec.type == "boolean":
        base = bool
    else:  # pragma: no cover - events hold no objects
        raise TypeError(f"event field {spec.name!r}: no pydantic type for {spec.type!r}")
    if spec.nullable:
        base = base | None
    base = Annotated[base, Field(description=spec.description)]
    return base if spec.required else NotRequired[base]


def _event_model(kind: EventKind) -> Any:
    """A strict TypedDict of one event kind: a validated event is already a plain dict."""
    fields = {EVENT_TYPE_FIELD: Literal[kind.name]}
    fields.update({spec.name: _event_type(spec) for spec in kind.all_fields})
    name = kind.name.title() + "EventCreate"
    model = TypedDict(name, fields)  # type: ignore[misc]
    model.__doc__ = kind.description
    model.__module__ = __name__
    return with_config(ConfigDict(extra="forbid"))(model)


EVENT_MODELS: dict[str, Any] = {name: _event_model(kind) for name, kind in EVENT_KINDS.items()}
"""Event kind -> its TypedDict (``InferenceEventCreate``, ``ErrorEventCreate``, ...)."""

if TYPE_CHECKING:
    Event = dict[str, Any]
else:
    Event = Annotated[
        Union[tuple(EVENT_MODELS.values())],  # noqa: UP007 - a Union built from a tuple
        Field(discriminator=EVENT_TYPE_FIELD),
    ]


class DeviceContext(_Strict):
    """Optional context shared by every event of a batch."""

    platform: Platform | None = None
    device_class: DeviceClass | None = None
    app_version: Annotated[Text, Field(max_length=32)] | None = None


class TelemetryRequest(_Strict):
    """A batch of events; the count limit is the server's ``max_telemetry_events``."""

    batch_id: str = Field(pattern=ID_PATTERN, description="Unique per batch; retries reuse it.")
    device_id: str = Field(pattern=ID_PATTERN)
    device: DeviceContext | None = None
    events: list[Event] = Field(min_length=1)


class RejectedEvents(BaseModel):
    """Events of a batch that were not stored, per model, and why."""

    model: str
    events: int = Field(description="How many events of the batch named this model.")
    code: Literal["not_found"] = Field(
        description="`not_found`: the app has no model of this name. The events will never "
        "be accepted; the device drops them (the answer is still 2xx)."
    )


class TelemetryAccepted(BaseModel):
    """What intake did with a batch.

    202 when at least one event was stored; 200 for a duplicate ``batch_id`` (nothing
    stored again) and for a batch whose every event named an unknown model (nothing
    stored; a retry gets the same answer). Either way the device drops the batch.
    """

    accepted: int = Field(description="Events stored (0 for a duplicate).")
    duplicate: bool = Field(description="This app stored this `batch_id` before.")
    rejected: list[RejectedEvents] = Field(
        default_factory=list,
        description="Events not stored, per model the app does not have (the rest of the "
        "batch is stored).",
    )
    clock_offset_s: float = Field(
        0.0,
        description="Seconds the server added to the event timestamps: the request's `Date` "
        "header was more than 60 s off the server's clock (0 when the clock was trusted).",
    )
    clamped: int = Field(
        0,
        description="Events stamped in the future (after correction), stored at the receive time.",
    )
    stale: int = Field(
        0,
        description="Events older than the server's stale horizon (30 days by default): "
        "stored all the same, counted here.",
    )


class FeedbackRequest(_Strict):
    """A label or a thumbs up/down for one prediction (exactly one of the two)."""

    prediction_id: Annotated[Text, Field(min_length=1, max_length=128)]
    device_id: str = Field(pattern=ID_PATTERN)
    model: Annotated[Text, Field(min_length=1, max_length=64)]
    version: VersionNumber | None = None
    label: Annotated[Text, Field(max_length=128)] | None = None
    thumbs: Literal["up", "down"] | None = None
    ts: float = Field(ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _exactly_one(self) -> FeedbackRequest:
        if (self.label is None) == (self.thumbs is None):
            raise ValueError("give exactly one of 'label' and 'thumbs'")
        return self


class FeedbackAccepted(BaseModel):
    """Feedback was stored, keyed by (device id, prediction id).

    Feedback naming a model the app does not have is not stored: 404 ``not_found``.
    """

    accepted: bool = True


# ---------------------------------------------------------------- metrics


class MetricsGroup(BaseModel):
    """Aggregates of one (version, device class)."""

    version: int | None
    device_class: str | None
    count: int
    errors: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    error_rate: float | None
    cloud_share: float | None
    fallback_share: float | None
    mean_confidence: float | None
    feedback_count: int
    accuracy: float | None


class MetricsPublic(BaseModel):
    """``GET /v1/admin/models/{name}/metrics``."""

    model: str
    since: float | None
    until: float | None
    groups: list[MetricsGroup]
