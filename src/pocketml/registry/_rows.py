"""Plain records the store accepts and the row <-> dataclass conversions it uses.

Only the registry's store modules import this module: ORM rows are turned into the
frozen dataclasses of ``_types`` here and never travel further.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from pocketml.errors import NotFound
from pocketml.registry._orm import App, AppKey, AppKeyring, Model, ModelVersion, Variant
from pocketml.registry._types import AppInfo, ModelInfo, VariantInfo, VersionInfo

__all__ = [
    "KEYRING_CHAIN",
    "KeyRecord",
    "NewVariant",
    "NewVersion",
    "app_info",
    "key_record",
    "key_row",
    "model_info",
    "require_app",
    "variant_row",
    "version_info",
]


KEYRING_CHAIN = 16  # = pocketml.protect.keyring.MAX_CHAIN (a test checks they agree)


@dataclass(frozen=True)
class KeyRecord:
    """A stored app key: the secret wrapped by the master key (label = key id)."""

    key_id: str
    app_id: str
    kind: Literal["signing", "content"]
    wrapped_secret: bytes
    public_key: bytes | None


@dataclass(frozen=True)
class NewVariant:
    """The row of one variant about to be inserted with its version."""

    id: str
    name: str
    format: str
    precision: str
    role: str
    size: int
    sha256: str
    model_key: str
    package_id: str
    package_key: str
    package_size: int
    signing_key_id: str
    content_key_id: str | None
    compatibility: dict[str, Any]
    metrics: dict[str, Any]
    benchmarks: dict[str, Any]
    profiles: list[str]


@dataclass(frozen=True)
class NewVersion:
    """The row of a version about to be inserted, with its variants."""

    id: str
    version: int
    dataset_fingerprint: str | None
    parent_version: int | None
    source_framework: str | None
    params: dict[str, Any]
    metrics: dict[str, Any]
    run_record: dict[str, Any]
    card: str
    variants: tuple[NewVariant, ...]
    reference_profile: dict[str, Any] | None = None
    reference_profile_sha256: str | None = None


def key_row(key: KeyRecord, now: datetime) -> AppKey:
    return AppKey(
        key_id=key.key_id,
        app_id=key.app_id,
        kind=key.kind,
        wrapped_secret=key.wrapped_secret,
        public_key=key.public_key,
        created_at=now,
        retired_at=None,
        revoked_at=None,
    )


def key_record(row: AppKey) -> KeyRecord:
    kind: Literal["signing", "content"] = "signing" if row.kind == "signing" else "content"
    return KeyRecord(
        key_id=row.key_id,
        app_id=row.app_id,
        kind=kind,
        wrapped_secret=bytes(row.wrapped_secret),
        public_key=None if row.public_key is None else bytes(row.public_key),
    )


def app_info(s: Session, app: App) -> AppInfo:
    keys = s.scalars(
        sa.select(AppKey)
        .where(AppKey.app_id == app.id, AppKey.kind == "signing")
        .order_by(AppKey.created_at, AppKey.key_id)
    ).all()
    active = [key.key_id for key in keys if key.retired_at is None]
    # The newest keyring and the ones before it that a device may need to walk.
    bodies = s.scalars(
        sa.select(AppKeyring.body)
        .where(AppKeyring.app_id == app.id)
        .order_by(AppKeyring.sequence.desc())
        .limit(KEYRING_CHAIN + 1)
    ).all()
    rings = [json.loads(body) for body in reversed(bodies)]
    return AppInfo(
        id=app.id,
        name=app.name,
        created_at=app.created_at,
        signing_key_id=active[-1] if active else "",
        public_keys={
            key.key_id: base64.b64encode(bytes(key.public_key or b"")).decode("ascii")
            for key in keys
            if key.revoked_at is None
        },
        keyring=rings[-1] if rings else None,
        keyring_chain=tuple(rings[:-1]),
    )


def model_info(model: Model, latest: int | None, production: int | None) -> ModelInfo:
    return ModelInfo(
        id=model.id,
        app_id=model.app_id,
        name=model.name,
        description=model.description,
        schema=dict(model.schema),
        created_at=model.created_at,
        latest_version=latest,
        production_version=production,
    )


def variant_row(app_id: str, version_id: str, v: NewVariant, now: datetime) -> Variant:
    return Variant(
        id=v.id,
        version_id=version_id,
        app_id=app_id,
        name=v.name,
        format=v.format,
        precision=v.precision,
        role=v.role,
        size=v.size,
        sha256=v.sha256,
        model_key=v.model_key,
        package_id=v.package_id,
        package_key=v.package_key,
        package_size=v.package_size,
        signing_key_id=v.signing_key_id,
        content_key_id=v.content_key_id,
        compatibility=v.compatibility,
        metrics=v.metrics,
        benchmarks=v.benchmarks,
        profiles=v.profiles,
        created_at=now,
    )


def variant_info(row: Variant) -> VariantInfo:
    return VariantInfo(
        id=row.id,
        name=row.name,
        format=row.format,
        precision=row.precision,
        role=row.role,
        size=int(row.size),
        sha256=row.sha256,
        package_id=row.package_id,
        package_size=int(row.package_size),
        signing_key_id=row.signing_key_id,
        content_key_id=row.content_key_id,
        compatibility=dict(row.compatibility),
        metrics=dict(row.metrics),
        benchmarks=dict(row.benchmarks),
        profiles=list(row.profiles),
        created_at=row.created_at,
    )


def version_info(row: ModelVersion, model: str, variants: list[Variant]) -> VersionInfo:
    return VersionInfo(
        id=row.id,
        model=model,
        version=row.version,
        stage=row.stage,
        dataset_fingerprint=row.dataset_fingerprint,
        parent_version=row.parent_version,
        source_framework=row.source_framework,
        params=dict(row.params),
        metrics=dict(row.metrics),
        run_record=dict(row.run_record),
        card=row.card,
        created_at=row.created_at,
        variants=tuple(variant_info(v) for v in sorted(variants, key=lambda v: v.name)),
        reference_profile_sha256=row.reference_profile_sha256,
    )


def require_app(s: Session, app_id: str, *, lock: bool = False) -> None:
    """Raise ``NotFound`` unless the app exists; ``lock`` takes its row lock (``FOR UPDATE``)
    so key changes of one app run one at a time."""
    query = sa.select(App.id).where(App.id == app_id)
    if s.scalar(query.with_for_update() if lock else query) is None:
        raise NotFound(f"no app with id {app_id!r}.")
