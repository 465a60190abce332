"""Building a device's manifest: one entry per model of the app, canonical JSON, ETag.

The manifest is a pure function of the app's catalog (its signed keyring; per model its
production version, that version's variants and policy) and the device's facts. Its
canonical JSON (sorted keys, no spaces) is hashed with sha256 into the ETag, so an
unchanged fleet costs a 304 and any change (new promotion, policy, key rotation) changes
the ETag of exactly the devices whose manifest changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from pocketml.delivery._types import CheckinFacts, HybridPolicy, Manifest, VersionPolicy
from pocketml.protocol import PackageRef
from pocketml.registry import AppInfo, ModelInfo, VariantInfo, VersionInfo

__all__ = ["CatalogEntry", "Chooser", "build_manifest", "default_policy", "manifest_model"]

Chooser = Callable[[CheckinFacts, VersionInfo], VariantInfo | None]


@dataclass(frozen=True)
class CatalogEntry:
    """One model of an app as check-in sees it: its production version and policy."""

    model: ModelInfo
    version: VersionInfo | None
    policy: VersionPolicy


def default_policy(model: str, version: VersionInfo | None) -> VersionPolicy:
    """The policy of a version with no stored overrides.

    Hybrid: ``cascade`` at threshold 0.8 towards the version's ``role == "cloud"``
    variant when it has one; ``local`` with no cloud variant otherwise.

    Args:
        model: the model's name.
        version: the version, or None (no production version).

    Returns:
        The default ``VersionPolicy``.
    """
    cloud = None
    if version is not None:
        cloud = next((v.name for v in version.variants if v.role == "cloud"), None)
    hybrid = HybridPolicy(mode="cascade" if cloud else "local", cloud_variant=cloud)
    return VersionPolicy(model=model, version=version.version if version else None, hybrid=hybrid)


def manifest_model(
    entry: CatalogEntry, device: CheckinFacts, chooser: Chooser, package_base_url: str = ""
) -> dict[str, Any]:
    """The manifest entry of one model for one device.

    Args:
        entry: the model, its production version (or None) and its policy.
        device: the device's facts.
        chooser: the variant choice function (``choose_variant`` or a wrapper).
        package_base_url: prefix of ``package.url`` (the server's ``public_url``; ""
            keeps it relative).

    Returns:
        The JSON-ready dict; ``variant``/``package`` are null when nothing is loadable.
    """
    name = entry.model.name
    variant = chooser(device, entry.version) if entry.version is not None else None
    item: dict[str, Any] = {
        "name": name,
        "version": entry.version.version if entry.version is not None else None,
        "variant": None,
        "format": None,
        "precision": None,
        "package": None,
        "model_sha256": None,
        "download_policy": entry.policy.download.to_dict(),
        "hybrid": entry.policy.hybrid.to_dict(name),
        "monitor": entry.policy.monitor.to_dict(),
        "capture": entry.policy.capture.to_dict(),
        # Clients normalize inputs for the cloud with it before any package is on the device.
        "schema": entry.model.schema,
    }
    if variant is not None:
        item.update(
            variant=variant.name,
            format=variant.format,
            precision=variant.precision,
            model_sha256=variant.sha256,
            package=PackageRef(
                id=variant.package_id,  # the alias of sha256 (protocol.PACKAGE_DIGEST)
                url=f"{package_base_url}/v1/packages/{variant.package_id}",
                size=variant.package_size,
                sha256=variant.package_id,
                signing_key_id=variant.signing_key_id,
                content_key_id=variant.content_key_id,
            ).to_dict(),
        )
    return item


def build_manifest(
    app: AppInfo,
    entries: Sequence[CatalogEntry],
    device: CheckinFacts,
    *,
    chooser: Chooser,
    checkin_interval_s: int,
    package_base_url: str = "",
) -> Manifest:
    """The manifest of one device as canonical JSON bytes with its ETag.

    Args:
        app: the app (id, keyring, trusted public keys).
        entries: every model of the app with its production version and policy.
        device: the device's facts.
        chooser: the variant choice function.
        checkin_interval_s: how long the device should wait before its next check-in.
        package_base_url: prefix of every ``package.url`` ("" keeps them relative).

    Returns:
        ``Manifest(body, etag)``; ``etag`` is the sha256 hex of ``body``.
    """
    document = {
        "app_id": app.id,
        "checkin_interval_s": checkin_interval_s,
        # The signed keyring devices follow (docs/packages.md, "Signing keys: rotation and
        # revocation"), the keyrings before it for devices pinned further back, and
        # public_keys, its deprecated unsigned mirror for older clients.
        "keyring": app.keyring,
        "keyring_chain": list(app.keyring_chain),
        "public_keys": dict(app.public_keys),
        "models": [
            manifest_model(e, device, chooser, package_base_url)
            for e in sorted(entries, key=lambda e: e.model.name)
        ],
    }
    body = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    return Manifest(body=body, etag=hashlib.sha256(body).hexdigest())
