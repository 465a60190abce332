"""The model registry: apps, models, versions, variants, their packages and keys.

``Registry`` is the service the server calls; it keeps its rows in SQLite or PostgreSQL
(SQLAlchemy 2.0, Alembic migrations run by ``Registry.open()``) and its files in an
``ArtifactStore`` (a local directory or S3-compatible storage)::

    from pocketml.protect import MasterKey
    from pocketml.registry import Registry, ModelCreate, open_artifact_store

    registry = Registry("sqlite:///registry.db", open_artifact_store("artifacts"),
                        MasterKey.load_or_create(Path("master.key")))
    registry.open()
    created = registry.create_app("my-app")
"""

from pocketml.db import migrate_database
from pocketml.registry._devicekeys import (
    DEFAULT_OVERLAP_DAYS,
    MAX_OVERLAP_DAYS,
    DeviceKeyRotation,
    DeviceKeyState,
)
from pocketml.registry._push import ModelFileRejected
from pocketml.registry._types import (
    AppCreated,
    AppInfo,
    KeyringChange,
    ModelCreate,
    ModelInfo,
    Page,
    Principal,
    StoredPackage,
    VariantInfo,
    VariantUpload,
    VersionCreate,
    VersionInfo,
)
from pocketml.registry.artifacts import (
    ArtifactHashMismatch,
    ArtifactRef,
    ArtifactStore,
    LocalArtifactStore,
    open_artifact_store,
)
from pocketml.registry.service import Registry
from pocketml.registry.store import DuplicateBuild

__all__ = [
    "DEFAULT_OVERLAP_DAYS",
    "MAX_OVERLAP_DAYS",
    "AppCreated",
    "AppInfo",
    "ArtifactHashMismatch",
    "ArtifactRef",
    "ArtifactStore",
    "DeviceKeyRotation",
    "DeviceKeyState",
    "DuplicateBuild",
    "KeyringChange",
    "LocalArtifactStore",
    "ModelCreate",
    "ModelFileRejected",
    "ModelInfo",
    "Page",
    "Principal",
    "Registry",
    "StoredPackage",
    "VariantInfo",
    "VariantUpload",
    "VersionCreate",
    "VersionInfo",
    "migrate_database",
    "open_artifact_store",
]
