"""Settings: one typed tree read from ``POCKETML_*`` environment variables.

Only entry points (the CLI, ``pocketml server``, the ``Device`` constructor) build a
``Settings``; library functions take explicit parameters. Nested groups use a double
underscore at every level, so a variable's name is its path in the tree:
``POCKETML_SERVER__PORT``, ``POCKETML_SERVER__PREDICT__MAX_BATCH_SIZE``. Every field is
documented in ``docs/configuration.md`` (generated from these classes).

The server's groups are the options of the service or concern they configure, handed
to it whole: ``limits`` to the request guard, ``devices`` to the device routes,
``predict`` to cloud inference (``ServingOptions.from_settings``), ``telemetry_export``
to the Parquet exporter, ``rollout_eval`` to the rollout evaluator, ``alerts`` to the
alert evaluator and webhook sender, and ``metrics`` to ``GET /metrics``.
``create_app(settings)`` is the only way in, so what a test sets is what an operator can set.

The flat names of pocketml 0.x (``POCKETML_SERVER__PREDICT_MAX_BATCH_SIZE``) still work
for now: each is read into its new place with a logged warning naming the new variable.
Any other unknown ``POCKETML_SERVER__*`` variable is refused at start-up, so a typo never
leaves a default silently in force.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from pocketml.errors import InvalidInput

__all__ = [
    "RENAMED_SERVER_SETTINGS",
    "AlertSettings",
    "DeviceRouteSettings",
    "LimitsSettings",
    "MetricsSettings",
    "PredictSettings",
    "RolloutEvalSettings",
    "ServerSettings",
    "Settings",
    "TelemetryExportSettings",
    "default_home",
    "load_settings",
]

logger = logging.getLogger(__name__)

_GROUP = ConfigDict(extra="forbid", frozen=True)  # a typo is an error, a group a value


def default_home() -> Path:
    """The default state directory, ``~/.pocketml``."""
    return Path.home() / ".pocketml"


class LimitsSettings(BaseModel):
    """Request limits (``POCKETML_SERVER__LIMITS__*``).

    Enforced by the guard in front of every route (``server/_guard.py``) before any body
    byte is read, any JSON is parsed or any token is looked up.
    """

    model_config = _GROUP

    max_upload_mb: float = Field(
        512.0, gt=0, description="Largest package upload accepted; larger ones get 413."
    )
    max_telemetry_events: int = Field(
        5000, gt=0, description="Most events accepted in one telemetry batch (413 above)."
    )
    max_header_count: int = Field(
        100, ge=16, le=1000, description="Most request headers accepted (431 above)."
    )
    max_header_value_bytes: int = Field(
        8192,
        ge=256,
        le=65_536,
        description="Longest single request header value accepted, in bytes (431 above).",
    )
    max_header_bytes: int = Field(
        16_384,
        ge=1024,
        le=262_144,
        description="Most bytes of all request header names and values together (431 "
        "above). `pocketml server` also stops reading a request head a little past this "
        "size (see docs/server.md, Limits), so an endless header is never buffered whole.",
    )
    max_admin_body_kb: int = Field(
        1024,
        ge=1,
        le=65_536,
        description="Largest body of an admin JSON route (/v1/admin/..., except the "
        "version push) and of every route outside /v1 (KiB; 413 above).",
    )
    max_device_body_kb: int = Field(
        256,
        ge=1,
        le=65_536,
        description="Largest body of the device JSON routes check-in, feedback and "
        "content keys (KiB; 413 above).",
    )
    max_predict_body_kb: int = Field(
        16_384,
        ge=1,
        le=1_048_576,
        description="Largest body of a cloud prediction, POST /v1/models/<name>/predict "
        "(KiB; 413 above).",
    )
    max_telemetry_body_kb: int | None = Field(
        None,
        ge=1,
        le=1_048_576,
        description="Largest body of a telemetry batch (KiB; 413 above). Unset: 1 KiB per "
        "event allowed by max_telemetry_events plus 64 KiB (5,064 KiB by default).",
    )

    max_samples_body_kb: int = Field(
        1024,
        ge=1,
        le=1_048_576,
        description="Largest body of a sample batch, POST /v1/samples (KiB; 413 above). "
        "A device packs at most 512 KiB of tensors into a batch (base64: about 700 KiB).",
    )

    @property
    def max_telemetry_bytes(self) -> int:
        """Largest telemetry body in bytes (``max_telemetry_body_kb`` or its default)."""
        if self.max_telemetry_body_kb is not None:
            return self.max_telemetry_body_kb * 1024
        return self.max_telemetry_events * 1024 + 65_536


class DeviceRouteSettings(BaseModel):
    """The device routes: check-in answers and credential caching
    (``POCKETML_SERVER__DEVICES__*``)."""

    model_config = _GROUP

    checkin_interval_s: int = Field(
        3600, ge=60, description="How often devices are told to check in (seconds)."
    )
    catalog_ttl_s: float = Field(
        1.0,
        ge=0,
        description="Seconds a server replica caches an app's delivery catalog for check-ins "
        "(0 = always read the database). Promotions on this replica clear it at once.",
    )
    auth_ttl_s: float = Field(
        5.0,
        ge=0,
        le=3600,
        description="Seconds a verified device key or admin token is remembered by the "
        "device routes (0 = check the database on every request). A rotated key stops "
        "working on the device routes within this time.",
    )


class PredictSettings(BaseModel):
    """Cloud inference, POST /v1/models/<name>/predict (``POCKETML_SERVER__PREDICT__*``).

    ``pocketml.serving.ServingOptions.from_settings`` turns it into the service's options.
    """

    model_config = _GROUP

    batching: bool = Field(
        True, description="Merge concurrent cloud predictions into one model run."
    )
    max_batch_size: int = Field(
        64, ge=1, le=4096, description="Most requests one micro-batch merges."
    )
    max_wait_ms: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="How long the first request of a batch waits for company (0 = only "
        "merge what is already queued; latency-neutral).",
    )
    max_rows: int = Field(
        1024,
        ge=1,
        le=1_000_000,
        description="Most samples one cloud prediction may carry (413 above).",
    )
    workers: int = Field(2, ge=1, le=64, description="Threads that run model sessions.")
    session_threads: int = Field(
        1, ge=1, le=64, description="Intra-op threads of each ONNX Runtime session."
    )
    inline_max_ms: float = Field(
        0.5,
        ge=0,
        le=100,
        description="A cloud model whose full micro-batch runs faster than this (timed "
        "when it is loaded) runs on the event loop instead of a worker thread, saving "
        "the thread hop (0 = always use the workers).",
    )
    cache_mb: float = Field(
        1024.0, gt=0, description="Memory budget of loaded cloud models (LRU beyond it)."
    )
    resolve_ttl_s: float = Field(
        1.0,
        ge=0,
        le=3600,
        description="Seconds the answer to 'which version of this model is in production' "
        "is reused before a background re-read (requests meanwhile keep the current "
        "version).",
    )
    stale_grace_s: float = Field(
        5.0,
        ge=0,
        le=3600,
        description="Seconds past resolve_ttl_s a served model may still answer while its "
        "re-read runs; later requests wait for the re-read (0 = every request after the "
        "TTL waits).",
    )


class TelemetryExportSettings(BaseModel):
    """The in-server Parquet exporter (``POCKETML_SERVER__TELEMETRY_EXPORT__*``)."""

    model_config = _GROUP

    interval_s: float = Field(
        10.0,
        description="How often the in-server exporter writes new telemetry from the database "
        "to day-partitioned Parquet files under <home>/telemetry (seconds; 0 or less turns "
        "it off, `pocketml telemetry export` then exports on demand). It also flushes on "
        "shutdown. Safe with several replicas: a database lease picks one exporter at a time.",
    )
    pending_events: int = Field(
        500_000,
        gt=0,
        description="Events stored on this replica since the last export that start an "
        "export before the interval is up.",
    )


class RolloutEvalSettings(BaseModel):
    """The in-server rollout evaluator (``POCKETML_SERVER__ROLLOUT_EVAL__*``)."""

    model_config = _GROUP

    interval_s: float = Field(
        30.0,
        description="How often the in-server evaluator checks running rollouts' guardrails "
        "(seconds; 0 or less turns it off). Safe with several replicas: a database lease "
        "picks one evaluator at a time.",
    )


class AlertSettings(BaseModel):
    """Alert evaluation and webhook delivery (``POCKETML_SERVER__ALERTS__*``, docs/alerts.md)."""

    model_config = _GROUP

    eval_interval_s: float = Field(
        30.0,
        description="How often the in-server evaluator checks every alert rule (seconds; 0 or "
        "less turns evaluation off). A database lease picks one evaluator among replicas.",
    )
    delivery_interval_s: float = Field(
        5.0,
        description="How often the webhook sender looks for due deliveries (seconds; 0 or less "
        "turns delivery off: events wait in the outbox). Its own loop and lease, so a slow "
        "receiver never delays evaluation.",
    )
    max_attempts: int = Field(
        8, ge=1, le=100, description="Attempts of one webhook delivery before it is dead."
    )
    backoff_base_s: float = Field(
        5.0,
        gt=0,
        description="Delay after a delivery's first failure (seconds); doubles per attempt, "
        "with jitter (a random half of it kept).",
    )
    backoff_max_s: float = Field(
        600.0, gt=0, description="Longest delay between two attempts of a delivery (seconds)."
    )
    timeout_s: float = Field(
        5.0, gt=0, le=120, description="Seconds one webhook POST may take (connect and read)."
    )


class LoopSettings(BaseModel):
    """Retraining jobs run by the server (``POCKETML_SERVER__LOOP__*``, docs/loop.md)."""

    model_config = _GROUP

    interval_s: float = Field(
        60.0,
        description="How often the loop checks its triggers and runs one queued job (seconds; "
        "0 or less: jobs are only queued, by hand or CI, never run by this server).",
    )
    lease_ttl_s: float = Field(
        900.0,
        gt=0,
        description="How long a running job's lease lasts between two of its steps; a job "
        "whose server died is failed once it expires.",
    )
    work_dir: Path | None = Field(
        None, description="Where jobs build (default: <home>/loop); one folder per job."
    )
    data_root: Path | None = Field(
        None,
        description="The folder a stored recipe's data files must be in (relative sources "
        "resolve against it); unset: only the bundled datasets (digits).",
    )


class MetricsSettings(BaseModel):
    """Prometheus metrics, ``GET /metrics`` (``POCKETML_SERVER__METRICS__*``).

    Off unless enabled, and then behind a bearer token of its own: Prometheus sends it
    with ``authorization: {credentials_file: ...}``. Not the operator token, which
    creates apps: a scrape configuration should hold no credential that can change the
    server. docs/operations.md "Prometheus" has the scrape configuration.
    """

    model_config = _GROUP

    enabled: bool = Field(False, description="Serve GET /metrics (off: the route answers 404).")
    token: SecretStr | None = Field(
        None,
        description="Bearer token a scraper must send to GET /metrics. Default: generated "
        "on the first start with metrics enabled into <home>/metrics.token (mode 0600).",
    )
    model_window_s: float = Field(
        300.0,
        ge=10,
        le=86_400,
        description="The model metrics (inferences, p95 latency, error rate, cloud share "
        "per model, version and device class) cover telemetry of the last this many "
        "seconds.",
    )
    cache_ttl_s: float = Field(
        15.0,
        ge=0,
        le=3600,
        description="Seconds the model metrics, read from the telemetry database, are "
        "reused by later scrapes (0 = every scrape reads them).",
    )
    max_model_series: int = Field(
        500,
        ge=1,
        le=100_000,
        description="Most (app, model, version, device class) groups the model metrics "
        "show, the busiest first; the rest are counted in "
        "pocketml_model_groups_dropped. Device classes come from devices, so this "
        "bounds what a fleet can add to Prometheus.",
    )


RENAMED_SERVER_SETTINGS: dict[str, tuple[str, str]] = {
    "max_upload_mb": ("limits", "max_upload_mb"),
    "max_telemetry_events": ("limits", "max_telemetry_events"),
    "max_header_count": ("limits", "max_header_count"),
    "max_header_value_bytes": ("limits", "max_header_value_bytes"),
    "max_header_bytes": ("limits", "max_header_bytes"),
    "max_admin_body_kb": ("limits", "max_admin_body_kb"),
    "max_device_body_kb": ("limits", "max_device_body_kb"),
    "max_predict_body_kb": ("limits", "max_predict_body_kb"),
    "max_telemetry_body_kb": ("limits", "max_telemetry_body_kb"),
    "checkin_interval_s": ("devices", "checkin_interval_s"),
    "checkin_cache_ttl_s": ("devices", "catalog_ttl_s"),
    "predict_batching": ("predict", "batching"),
    "predict_max_batch_size": ("predict", "max_batch_size"),
    "predict_max_wait_ms": ("predict", "max_wait_ms"),
    "predict_max_rows": ("predict", "max_rows"),
    "predict_workers": ("predict", "workers"),
    "predict_inline_max_ms": ("predict", "inline_max_ms"),
    "session_cache_mb": ("predict", "cache_mb"),
    "telemetry_export_interval_s": ("telemetry_export", "interval_s"),
    "telemetry_export_pending_events": ("telemetry_export", "pending_events"),
    "rollout_eval_interval_s": ("rollout_eval", "interval_s"),
}
"""The flat server settings of pocketml 0.x -> (group, field) they moved to."""


def _variable(*path: str) -> str:
    return "POCKETML_SERVER__" + "__".join(part.upper() for part in path)


def _move_renamed(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with each old flat key moved to its group; warns once per key."""
    moved = dict(data)
    for old in [key for key in data if key.lower() in RENAMED_SERVER_SETTINGS]:
        group, field = RENAMED_SERVER_SETTINGS[old.lower()]
        value = moved.pop(old)
        section = moved.get(group, {})
        if isinstance(section, BaseModel):
            section = section.model_dump(exclude_unset=True)
        if not isinstance(section, dict):
            return data  # not a mapping: let validation report the group itself
        section = dict(section)
        if field in section and str(section[field]) != str(value):
            raise ValueError(
                f"{_variable(old)} (deprecated) and {_variable(group, field)} are both set, "
                f"to {value!r} and {section[field]!r}; unset {_variable(old)}."
            )
        section[field] = value
        moved[group] = section
        logger.warning(
            "%s is deprecated and will be refused in a future release; it was read as %s. "
            "Rename the variable.",
            _variable(old),
            _variable(group, field),
        )
    return moved


class ServerSettings(BaseModel):
    """Settings of ``pocketml server`` (``POCKETML_SERVER__*``), one group per concern."""

    model_config = _GROUP

    host: str = Field("127.0.0.1", description="Interface uvicorn binds to.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 picks a free one).")
    public_url: str | None = Field(
        None,
        description="Base URL devices use to reach this server (or a CDN in front of it), "
        "e.g. https://ml.example.com (http or https, no query or fragment); apps should "
        "check in at the same URL, the device key is sent to no other origin. "
        "When set, package.url in check-in answers is absolute (<public_url>/v1/packages/"
        "<id>); unset, it is relative to the server the device checked in with.",
    )
    gc_freeze: bool = Field(
        True,
        description="After startup, move every object into the garbage collector's "
        "permanent generation (gc.freeze) so full collections skip them: they otherwise "
        "pause a request for tens of milliseconds, which sets the p99 under load.",
    )
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    devices: DeviceRouteSettings = Field(default_factory=DeviceRouteSettings)
    predict: PredictSettings = Field(default_factory=PredictSettings)
    telemetry_export: TelemetryExportSettings = Field(default_factory=TelemetryExportSettings)
    rollout_eval: RolloutEvalSettings = Field(default_factory=RolloutEvalSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    loop: LoopSettings = Field(default_factory=LoopSettings)

    @model_validator(mode="before")
    @classmethod
    def _accept_renamed(cls, data: Any) -> Any:
        return _move_renamed(data) if isinstance(data, dict) else data

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(
                f"public_url must be an http:// or https:// URL with a host; got {value!r}. "
                "Set POCKETML_SERVER__PUBLIC_URL=https://models.example.com"
            )
        if parts.query or parts.fragment or "?" in value or "#" in value:
            raise ValueError(
                f"public_url may not have a query or fragment; got {value!r}. Give the base "
                "URL only, e.g. https://models.example.com/pocketml"
            )
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                f"public_url may not carry credentials; got {parts.scheme}://***@"
                f"{parts.hostname}. Devices send their device key in a header."
            )
        return value.rstrip("/")


class Settings(BaseSettings):
    """All pocketml settings. Built once by an entry point, then passed down."""

    model_config = SettingsConfigDict(
        env_prefix="POCKETML_", env_nested_delimiter="__", extra="ignore"
    )

    home: Path = Field(
        default_factory=default_home,
        description="State directory: SQLite database, artifacts, keys, caches.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the registry database; default SQLite under home.",
    )
    artifact_url: str | None = Field(
        None,
        description="Where packages live: a directory path or s3://bucket/prefix; "
        "default <home>/artifacts.",
    )
    s3_endpoint_url: str | None = Field(
        None, description="Endpoint of an S3-compatible store (MinIO, moto, R2...)."
    )
    master_key: SecretStr | None = Field(
        None,
        description="Base64 32-byte key that encrypts signing and content keys at rest; "
        "default: a generated key file <home>/master.key (mode 0600).",
    )
    operator_token: SecretStr | None = Field(
        None,
        description="Token of the server operator (creates apps). Default: generated on "
        "first start into <home>/operator.token (mode 0600).",
    )
    log_format: str = Field("text", description="'text' for people, 'json' for servers.")
    server: ServerSettings = Field(default_factory=ServerSettings)

    @field_validator("log_format")
    @classmethod
    def _check_log_format(cls, value: str) -> str:
        if value not in {"text", "json"}:
            raise ValueError(f"log_format must be 'text' or 'json'; got {value!r}")
        return value

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file under ``home``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'pocketml.db'}"

    @property
    def resolved_artifact_url(self) -> str:
        """The artifact location, defaulting to ``<home>/artifacts``."""
        return self.artifact_url or str(self.home / "artifacts")


def load_settings() -> Settings:
    """``Settings()`` from the ``POCKETML_*`` environment, for entry points.

    Returns:
        The validated settings (old flat server names moved, with a warning each).

    Raises:
        InvalidInput: a variable is malformed, out of bounds or unknown; the message
            names each variable and what it should be.
    """
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            variable = "POCKETML_" + "__".join(str(part).upper() for part in error["loc"])
            problems.append(f"{variable}: {error['msg']}")
        raise InvalidInput(
            "the pocketml settings in the environment are not valid: "
            + "; ".join(problems)
            + ". Fix or unset these variables (docs/configuration.md lists every setting)."
        ) from exc
