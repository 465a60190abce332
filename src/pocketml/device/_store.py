"""The on-device cache directory: layout, atomic JSON files and the package cache.

Layout under ``cache_dir``::

    device.json          the random device id of this install
    trust.json           the pinned keyring and its trusted keys (docs/packages.md)
    checkin.json         the last manifest and its ETag (the SDK works offline from it)
    active.json          model name -> the active package (the pointer swapped atomically)
    packages/<sha256>/   a verified, extracted package: model.<format>, schema.json, ready.json
    partial/<sha256>.part   a download in progress (resumed with HTTP Range)
    telemetry.db         the telemetry and feedback queue (SQLite, WAL)

Packages are keyed by the package sha256, so an app upgrade (same cache dir) or a model
rolled back to an earlier package never downloads it again. ``ready.json`` is written
last, so a directory without it is an unfinished extraction and is ignored.

Every path handed out is confined to ``cache_dir``: a package key must be 64 lower-case hex
digits (a ``../`` or an absolute path from the network is refused), and the resolved path
must still lie under the resolved cache directory (a symlink planted inside cannot lead
out).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from pocketml.device._entry import SHA256
from pocketml.errors import IntegrityError

__all__ = ["CacheDir", "write_json_atomic"]


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file and ``os.replace`` (all or nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(data, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class CacheDir:
    """Typed access to the files of a device cache directory.

    Args:
        root: the cache directory (created on first write).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- identity and trust ---------------------------------------------------------------

    def device_id(self) -> str:
        """This install's device id, generated and persisted on first call."""
        data = _read_json(self.root / "device.json")
        if isinstance(data, dict) and isinstance(data.get("device_id"), str):
            return str(data["device_id"])
        device_id = "dev-" + secrets.token_hex(16)
        write_json_atomic(self.root / "device.json", {"device_id": device_id})
        return device_id

    def pinned_keys(self) -> dict[str, Any] | None:
        """The pinned trusted keys (``{key_id: base64}``, unchecked), or None before a pin.

        Also what an SDK older than keyrings pinned; the caller checks every entry.
        """
        data = _read_json(self.root / "trust.json")
        if isinstance(data, dict) and isinstance(data.get("keys"), dict):
            return dict(data["keys"])
        return None

    def pinned_keyring(self) -> dict[str, Any] | None:
        """The pinned keyring's JSON form (unchecked), or None."""
        data = _read_json(self.root / "trust.json")
        keyring = data.get("keyring") if isinstance(data, dict) else None
        return keyring if isinstance(keyring, dict) else None

    def pin_keys(self, keys: dict[str, str], keyring: dict[str, Any] | None = None) -> None:
        """Atomically pin a keyring and its trusted keys (or bare keys, for old servers)."""
        write_json_atomic(self.root / "trust.json", {"keys": keys, "keyring": keyring})

    # -- check-in ---------------------------------------------------------------------------

    def last_checkin(self) -> tuple[str | None, dict[str, Any] | None]:
        """The ETag and manifest of the last successful check-in."""
        data = _read_json(self.root / "checkin.json")
        if not isinstance(data, dict):
            return None, None
        return data.get("etag"), data.get("manifest")

    def save_checkin(self, etag: str | None, manifest: dict[str, Any]) -> None:
        """Remember a manifest and its ETag."""
        write_json_atomic(self.root / "checkin.json", {"etag": etag, "manifest": manifest})

    # -- active models --------------------------------------------------------------------

    def active(self) -> dict[str, dict[str, Any]]:
        """model name -> its active package record (``package_id``, version, format, ...)."""
        data = _read_json(self.root / "active.json")
        if not isinstance(data, dict):
            return {}
        return {name: record for name, record in data.items() if isinstance(record, dict)}

    def activate(self, model: str, record: dict[str, Any]) -> None:
        """Atomically point ``model`` at a ready package (JSON written, then os.replace)."""
        active = self.active()
        active[model] = record
        write_json_atomic(self.root / "active.json", active)

    # -- packages ---------------------------------------------------------------------------

    def confine(self, path: Path) -> Path:
        """``path`` if it resolves inside the cache directory.

        Raises:
            IntegrityError: it resolves outside (``..``, an absolute part, a symlink).
        """
        root = self.root.resolve()
        resolved = path.resolve()
        if resolved != root and root not in resolved.parents:
            raise IntegrityError(
                f"refusing to write {str(path)!r}: it resolves to {str(resolved)!r}, outside "
                f"the cache directory {str(root)!r}. A check-in answer named a path-like key."
            )
        return path

    def _keyed(self, folder: str, sha256: str, suffix: str = "") -> Path:
        if not isinstance(sha256, str) or not SHA256.fullmatch(sha256):
            raise IntegrityError(
                f"a package key must be 64 lower-case hex digits (a sha256); got "
                f"{str(sha256)[:80]!r}. The check-in answer or active.json is corrupt."
            )
        return self.confine(self.root / folder / f"{sha256}{suffix}")

    def package_dir(self, sha256: str) -> Path:
        """The directory of an extracted package (``sha256`` checked, path confined)."""
        return self._keyed("packages", sha256)

    def ready_record(self, sha256: str) -> dict[str, Any] | None:
        """The ``ready.json`` of a fully extracted package, or None."""
        data = _read_json(self.package_dir(sha256) / "ready.json")
        return data if isinstance(data, dict) else None

    def mark_ready(self, sha256: str, record: dict[str, Any]) -> None:
        """Write ``ready.json`` last: the package is usable from now on."""
        write_json_atomic(self.package_dir(sha256) / "ready.json", record)

    def discard_package(self, sha256: str) -> None:
        """Delete an unfinished or bad extraction."""
        path = self.package_dir(sha256)
        if path.is_symlink():
            path.unlink()
        else:
            shutil.rmtree(path, ignore_errors=True)

    def partial_path(self, sha256: str) -> Path:
        """Where a download in progress lives (``sha256`` checked, path confined)."""
        return self._keyed("partial", sha256, ".part")
