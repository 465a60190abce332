"""SQLAlchemy 2.0 ORM tables of the registry. Rows never leave ``store.py``.

They live on the shared ``pocketml.db.Base``; the Alembic migrations in
``pocketml/db/migrations`` create exactly these tables, and a test compares the two so
they cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pocketml.db import Base, JSONDict, UTCDateTime

__all__ = ["App", "AppDeviceKey", "AppKey", "AppKeyring", "Model", "ModelVersion", "Variant"]


class App(Base):
    """A tenant: one mobile app with its hashed admin token (device keys: AppDeviceKey).

    ``device_key_sha256`` mirrors the active device key (see migration 0006: SQLite cannot
    drop it safely); authentication never reads it.
    """

    __tablename__ = "apps"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    admin_token_sha256: Mapped[str] = mapped_column(sa.String(64), unique=True)
    device_key_sha256: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    packages_public: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.true())


class AppDeviceKey(Base):
    """One hashed device key of an app: active, in its overlap until ``expires_at``, or revoked."""

    __tablename__ = "app_device_keys"

    key_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    key_sha256: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AppKey(Base):
    """A signing (Ed25519) or content (AES) key of an app; the secret is master-key wrapped."""

    __tablename__ = "app_keys"
    __table_args__ = (sa.Index("ix_app_keys_app_id_kind", "app_id", "kind"),)

    key_id: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(16))  # "signing" | "content"
    wrapped_secret: Mapped[bytes] = mapped_column(sa.LargeBinary)
    public_key: Mapped[bytes | None] = mapped_column(sa.LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AppKeyring(Base):
    """One signed keyring of an app (canonical JSON); the highest sequence is current."""

    __tablename__ = "app_keyrings"

    app_id: Mapped[str] = mapped_column(
        sa.ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True
    )
    sequence: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    body: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Model(Base):
    """A named task inside an app, with its ModelSchema JSON."""

    __tablename__ = "models"
    __table_args__ = (sa.UniqueConstraint("app_id", "name"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(64))
    description: Mapped[str] = mapped_column(sa.Text)
    schema: Mapped[JSONDict] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ModelVersion(Base):
    """An immutable version of a model: lineage, card and stage."""

    __tablename__ = "model_versions"
    __table_args__ = (
        sa.UniqueConstraint("model_id", "version"),
        sa.Index("ix_model_versions_model_id_stage_version", "model_id", "stage", "version"),
        # At most one production version per model, enforced by the database itself.
        sa.Index(
            "uq_model_versions_one_production",
            "model_id",
            unique=True,
            sqlite_where=sa.text("stage = 'production'"),
            postgresql_where=sa.text("stage = 'production'"),
        ),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    model_id: Mapped[str] = mapped_column(sa.ForeignKey("models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(sa.Integer)
    stage: Mapped[str] = mapped_column(sa.String(16))
    dataset_fingerprint: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    parent_version: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    source_framework: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    params: Mapped[JSONDict] = mapped_column(sa.JSON)
    metrics: Mapped[JSONDict] = mapped_column(sa.JSON)
    run_record: Mapped[JSONDict] = mapped_column(sa.JSON)
    card: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The reference profile (migration 0008): deferred, so listing versions never loads it.
    reference_profile: Mapped[JSONDict | None] = mapped_column(
        sa.JSON(none_as_null=True), nullable=True, deferred=True
    )
    reference_profile_sha256: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)

    variants: Mapped[list[Variant]] = relationship(
        back_populates="model_version",
        cascade="all, delete-orphan",
        order_by="Variant.name",
        lazy="raise",
    )


class Variant(Base):
    """One built file of a version and its signed package (both content-addressed)."""

    __tablename__ = "variants"
    __table_args__ = (
        sa.UniqueConstraint("version_id", "name"),
        sa.Index("ix_variants_app_id_package_id", "app_id", "package_id"),
        sa.Index("ix_variants_package_id", "package_id"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    version_id: Mapped[str] = mapped_column(sa.ForeignKey("model_versions.id", ondelete="CASCADE"))
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(64))
    format: Mapped[str] = mapped_column(sa.String(16))
    precision: Mapped[str] = mapped_column(sa.String(16))
    role: Mapped[str] = mapped_column(sa.String(16))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    model_key: Mapped[str] = mapped_column(sa.String(100))
    package_id: Mapped[str] = mapped_column(sa.String(64))
    package_key: Mapped[str] = mapped_column(sa.String(100))
    package_size: Mapped[int] = mapped_column(sa.BigInteger)
    signing_key_id: Mapped[str] = mapped_column(sa.String(80))
    content_key_id: Mapped[str | None] = mapped_column(sa.String(80), nullable=True)
    compatibility: Mapped[JSONDict] = mapped_column(sa.JSON)
    metrics: Mapped[JSONDict] = mapped_column(sa.JSON)
    benchmarks: Mapped[JSONDict] = mapped_column(sa.JSON)
    profiles: Mapped[list[str]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    model_version: Mapped[ModelVersion] = relationship(back_populates="variants")
