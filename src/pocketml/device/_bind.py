"""Binding a package to the check-in entry that announced it.

A valid signature proves the app's key signed a package, not that it is the package this
entry asked for: a hostile network (or a buggy CDN) can answer with another model's
package, the cloud variant's, or an older version's, all validly signed. So before a
package becomes the active model of a name, its signed manifest must name exactly the
entry's app, model, version, variant, model format, plaintext model sha256 and content key
(:func:`check_binding`). A package already in the cache is bound again through its
``ready.json`` record (written from the signed manifest) and its model file is hashed
again (:func:`check_cached`), so a cached package is never activated under another name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pocketml.device._store import CacheDir
from pocketml.device._types import ModelEntry, PackageMismatch
from pocketml.protocol import FORMATS, file_sha256

__all__ = ["BOUND_FIELDS", "check_binding", "check_cached", "is_current", "ready_record"]

# manifest field -> what the check-in entry announced for it (the one list of both checks)
BOUND_FIELDS = ("app_id", "model", "version", "variant", "model_format", "model_sha256")
MODEL_FILES = {name: fmt.build_file for name, fmt in FORMATS.items() if fmt.is_runnable}


def _expected(entry: ModelEntry, app_id: str) -> dict[str, Any]:
    return {
        "app_id": app_id,
        "model": entry.name,
        "version": entry.version,
        "variant": entry.variant,
        "model_format": entry.format,
        "model_sha256": entry.model_sha256,
    }


def _compare(found: Mapping[str, Any], entry: ModelEntry, app_id: str, what: str) -> None:
    expected = _expected(entry, app_id)
    wrong = {k: found.get(k) for k in BOUND_FIELDS if found.get(k) != expected[k]}
    if entry.variant is not None and entry.variant == entry.hybrid.cloud_variant:
        wrong["variant"] = f"{entry.variant} (the cloud variant)"
    if wrong:
        announced = {k: expected[k] for k in wrong}
        raise PackageMismatch(
            f"{what} is not the package the check-in announced for {entry.name!r}: it has "
            f"{wrong}, the entry says {announced}. It was not activated; the previous model "
            "stays active. The server (or something between) sent the wrong package."
        )


def check_binding(manifest: Mapping[str, Any], entry: ModelEntry, app_id: str) -> None:
    """Check a verified package's signed manifest against its check-in entry.

    Args:
        manifest: the signed manifest (``VerifiedPackage.manifest``).
        entry: the check-in entry that announced the package.
        app_id: the app of the check-in.

    Raises:
        PackageMismatch: a bound field differs, the variant is the cloud variant, or the
            content key differs from the entry's ``package.content_key_id``.
    """
    _compare(manifest, entry, app_id, "the downloaded package")
    encryption = manifest.get("encryption")
    key_id = encryption.get("key_id") if isinstance(encryption, Mapping) else None
    announced = entry.package.content_key_id if entry.package is not None else None
    if key_id != announced:
        raise PackageMismatch(
            f"the downloaded package of {entry.name!r} is encrypted with key {key_id!r}; the "
            f"check-in entry announced {announced!r}. It was not activated."
        )


def ready_record(manifest: Mapping[str, Any], package_id: str, model_file: str) -> dict[str, Any]:
    """The ``ready.json`` record of an installed package: the signed manifest's bound fields."""
    record = {field: manifest[field] for field in BOUND_FIELDS}
    record.update(
        package_id=package_id,
        format=manifest["model_format"],
        model_file=model_file,
        signing_key_id=manifest["signing_key_id"],
    )
    return record


def is_current(
    active: Mapping[str, Any] | None,
    entry: ModelEntry,
    app_id: str,
    trusted_keys: Mapping[str, bytes],
) -> bool:
    """True when the model's active package is the entry's package (nothing to do).

    A package signed by a key the device no longer trusts (revoked since it was installed)
    is not current: the entry's package is fetched and verified again.

    Raises:
        PackageMismatch: it is the same package, but the entry announces another version,
            variant or model for it (a downgrade announced as an upgrade, say).
    """
    assert entry.package is not None
    if active is None or active.get("package_id") != entry.package.sha256:
        return False
    signer = active.get("signing_key_id")
    if signer is not None and signer not in trusted_keys:  # older records lack it
        return False
    if all(k in active for k in BOUND_FIELDS):  # records of older SDKs lack them
        _compare(active, entry, app_id, "the active package")
    return True


def check_cached(
    cache: CacheDir, entry: ModelEntry, app_id: str, trusted_keys: Mapping[str, bytes]
) -> dict[str, Any] | None:
    """The ready record of the entry's package when it is cached and bound to the entry.

    A record of an older SDK (without the bound fields), or of a package signed by a key
    the device no longer trusts (revoked since it was cached), is not used (None: download
    and verify again, which rewrites it or refuses it); a model file that no longer hashes
    to its sha256 is discarded (None as well).

    Raises:
        PackageMismatch: the cached package belongs to another app, model, version or
            variant than the entry names (never activated under this name).
    """
    assert entry.package is not None
    sha256 = entry.package.sha256
    record = cache.ready_record(sha256)
    if record is None:
        return None
    model_file = record.get("model_file")
    if any(k not in record for k in BOUND_FIELDS) or model_file not in MODEL_FILES.values():
        return None
    if record.get("signing_key_id") not in trusted_keys:
        return None
    _compare(record, entry, app_id, f"the cached package {sha256[:16]}")
    path = cache.confine(cache.package_dir(sha256) / str(model_file))
    if _file_sha256(path) != record["model_sha256"]:
        cache.discard_package(sha256)
        return None
    return record


def _file_sha256(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None
