"""Settings: one typed tree read from ``POCKETML_*`` environment variables.

Only entry points (the CLI, ``pocketml server``, the ``Device`` constructor) build a
``Settings``; library functions take explicit parameters. Nested groups use a double
underscore, e.g. ``POCKETML_SERVER__PORT=8000``. Every field is documented in
``docs/configuration.md``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServerSettings", "Settings", "default_home"]


def default_home() -> Path:
    """The default state directory, ``~/.pocketml``."""
    return Path.home() / ".pocketml"


class ServerSettings(BaseModel):
    """Settings of ``pocketml server`` (env prefix ``POCKETML_SERVER__``)."""

    host: str = Field("127.0.0.1", description="Interface uvicorn binds to.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 picks a free one).")
    max_upload_mb: float = Field(
        512.0, gt=0, description="Largest package upload accepted; larger ones get 413."
    )
    max_telemetry_events: int = Field(
        5000, gt=0, description="Most events accepted in one telemetry batch (413 above)."
    )
    checkin_interval_s: int = Field(
        3600, ge=60, description="How often devices are told to check in (seconds)."
    )
    predict_batching: bool = Field(
        True, description="Merge concurrent cloud predictions into one model run."
    )
    predict_max_batch_size: int = Field(
        64, ge=1, le=4096, description="Most requests one micro-batch merges."
    )
    predict_max_wait_ms: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="How long the first request of a batch waits for company (0 = only "
        "merge what is already queued; latency-neutral).",
    )
    predict_max_rows: int = Field(
        1024,
        ge=1,
        le=1_000_000,
        description="Most samples one cloud prediction may carry (413 above).",
    )
    predict_workers: int = Field(2, ge=1, le=64, description="Threads that run model sessions.")
    predict_inline_max_ms: float = Field(
        0.5,
        ge=0,
        le=100,
        description="A cloud model whose full micro-batch runs faster than this (timed "
        "when it is loaded) runs on the event loop instead of a worker thread, saving "
        "the thread hop (0 = always use the workers).",
    )
    gc_freeze: bool = Field(
        True,
        description="After startup, move every object into the garbage collector's "
        "permanent generation (gc.freeze) so full collections skip them: they otherwise "
        "pause a request for tens of milliseconds, which sets the p99 under load.",
    )
    session_cache_mb: float = Field(
        1024.0, gt=0, description="Memory budget of loaded cloud models (LRU beyond it)."
    )
    checkin_cache_ttl_s: float = Field(
        1.0,
        ge=0,
        description="Seconds a server replica caches an app's delivery catalog for check-ins "
        "(0 = always read the database). Promotions on this replica clear it at once.",
    )
    rollout_eval_interval_s: float = Field(
        30.0,
        description="How often the in-server evaluator checks running rollouts' guardrails "
        "(seconds; 0 or less turns it off). Safe with several replicas: a database lease "
        "picks one evaluator at a time.",
    )
    telemetry_export_interval_s: float = Field(
        10.0,
        description="How often the in-server exporter writes new telemetry from the database "
        "to day-partitioned Parquet files under <home>/telemetry (seconds; 0 or less turns "
        "it off, `pocketml telemetry export` then exports on demand). It also flushes on "
        "shutdown. Safe with several replicas: a database lease picks one exporter at a time.",
    )
    telemetry_export_pending_events: int = Field(
        500_000,
        gt=0,
        description="Events stored on this replica since the last export that start an "
        "export before the interval is up.",
    )
    public_url: str | None = Field(
        None,
        description="Base URL devices use to reach this server (or a CDN in front of it), "
        "e.g. https://ml.example.com (http or https, no query or fragment); apps should "
        "check in at the same URL, the device key is sent to no other origin. "
        "When set, package.url in check-in answers is absolute (<public_url>/v1/packages/"
        "<id>); unset, it is relative to the server the device checked in with.",
    )
    # Request limits: enforced by the guard in front of every route (server/_guard.py)
    # before any body byte is read, any JSON is parsed or any token is looked up.
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

    @property
    def max_telemetry_bytes(self) -> int:
        """Largest telemetry body in bytes (``max_telemetry_body_kb`` or its default)."""
        if self.max_telemetry_body_kb is not None:
            return self.max_telemetry_body_kb * 1024
        return self.max_telemetry_events * 1024 + 65_536


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
