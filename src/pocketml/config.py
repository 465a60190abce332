"""Settings: one typed tree read from ``POCKETML_*`` environment variables.

Only entry points (the CLI, ``pocketml server``, the ``Device`` constructor) build a
``Settings``; library functions take explicit parameters. Nested groups use a double
underscore, e.g. ``POCKETML_SERVER__PORT=8000``. Every field is documented in
``docs/configuration.md``.
"""

from __future__ import annotations

from pathlib import Path

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
        None, description="Base URL devices use to reach this server (package links)."
    )


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
