"""Bring one manifest entry onto the device: policy, disk, download, verify, decrypt, load, swap.

Each step that can fail names its stage ("disk", "download", "verify", "key", "load");
any failure leaves ``active.json`` untouched (the previous model keeps serving), emits an
``error`` telemetry event and reports ``failed``. The swap is the last step: the package
is extracted and loaded first, ``ready.json`` written, and only then ``active.json`` is
replaced atomically.
"""

from __future__ import annotations

import base64
import hashlib
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pocketml.device._download import download_package
from pocketml.device._net import Backoff, DeviceHttp
from pocketml.device._store import CacheDir
from pocketml.device._types import DeviceState, DownloadEvent, ModelEntry, ModelSync
from pocketml.errors import IntegrityError, PocketMLError
from pocketml.protect import extract_model, read_member, verify_package
from pocketml.runtime import open_runner

__all__ = ["SyncContext", "blocked_reason", "sync_model"]

DISK_FACTOR = 2.5
_EXTENSIONS = {"onnx": "model.onnx", "ort": "model.ort", "tflite": "model.tflite"}


@dataclass(frozen=True)
class SyncContext:
    """What syncing one model needs from its Device."""

    http: DeviceHttp
    cache: CacheDir
    state: DeviceState
    app_id: str
    trusted_keys: Mapping[str, bytes]
    free_disk: Callable[[], int]
    emit: Callable[[dict[str, Any]], None]
    on_download: Callable[[DownloadEvent], None] | None
    retries: int
    backoff: Backoff
    rng: random.Random
    sleep: Callable[[float], None]
    clock: Callable[[], float]


class _StageError(Exception):
    def __init__(self, stage: str, reason: str, cause: BaseException) -> None:
        super().__init__(f"{reason}: {cause}")
        self.stage, self.reason, self.cause = stage, reason, cause


def blocked_reason(entry: ModelEntry, state: DeviceState) -> str | None:
    """Why the download policy forbids fetching ``entry`` now, or None when allowed."""
    assert entry.package is not None
    network = state.network_type()
    if network == "offline":
        return "offline"
    if entry.download.wifi_only and network != "wifi":
        return "wifi_only"
    if entry.download.charging_only and not state.is_charging():
        return "charging_only"
    if network == "cellular" and entry.package.size > entry.download.max_cellular_bytes:
        return "max_cellular_bytes"
    return None


def sync_model(ctx: SyncContext, entry: ModelEntry) -> ModelSync:
    """Make ``entry``'s package the active model of its name (see the module docstring).

    Returns:
        What happened; never raises for a per-model failure.
    """
    base: dict[str, Any] = {"version": entry.version, "variant": entry.variant}
    package = entry.package
    if package is None:
        return ModelSync(model=entry.name, status="cloud-only", **base)
    active = ctx.cache.active().get(entry.name)
    if active is not None and active.get("package_id") == package.sha256:
        return ModelSync(model=entry.name, status="current", **base)
    from_cache = ctx.cache.ready_record(package.sha256) is not None
    fetched, resumed = 0, False
    if not from_cache:
        reason = blocked_reason(entry, ctx.state)
        if reason is not None:
            return ModelSync(model=entry.name, status="blocked", reason=reason, **base)
        try:
            fetched, resumed = _fetch_and_install(ctx, entry)
        except _StageError as exc:
            message = f"{entry.name} v{entry.version}: {exc.reason} failed: {exc.cause}"
            ctx.emit(_error_event(entry, exc.stage, message))
            return ModelSync(model=entry.name, status="failed", reason=exc.reason, **base)
    record = dict(ctx.cache.ready_record(package.sha256) or {})
    record["activated_at"] = time.time()
    ctx.cache.activate(entry.name, record)
    return ModelSync(
        model=entry.name,
        status="updated",
        bytes_downloaded=fetched,
        resumed=resumed,
        from_cache=from_cache,
        **base,
    )


def _fetch_and_install(ctx: SyncContext, entry: ModelEntry) -> tuple[int, bool]:
    package = entry.package
    assert package is not None
    need = int(package.size * DISK_FACTOR)
    free = ctx.free_disk()
    if free < need:
        raise _StageError(
            "download",
            "disk",
            PocketMLError(f"needs {need} free bytes (2.5x the package), has {free}"),
        )
    part = ctx.cache.partial_path(package.sha256)
    started = ctx.clock()

    def progress(kind: str, have: int, resumed: bool, error: str | None) -> None:
        if ctx.on_download is not None:
            event = DownloadEvent(kind, entry.name, entry.version, have, package.size, resumed)  # type: ignore[arg-type]
            ctx.on_download(event)

    try:
        result = download_package(
            ctx.http,
            package,
            part,
            retries=ctx.retries,
            backoff=ctx.backoff,
            rng=ctx.rng,
            sleep=ctx.sleep,
            progress=progress,
        )
    except PocketMLError as exc:
        have = part.stat().st_size if part.exists() else 0
        _notify(ctx, "failed", entry, have, False, str(exc))
        ctx.emit(_download_event(entry, have, ctx.clock() - started, "failed"))
        raise _StageError("download", "download", exc) from exc
    outcome = "resumed" if result.resumed else "done"
    ctx.emit(_download_event(entry, result.bytes_fetched, ctx.clock() - started, outcome))
    try:
        _install(ctx, entry, part)
    except _StageError:
        _notify(ctx, "failed", entry, package.size, result.resumed, "verification failed")
        raise
    _notify(ctx, "done", entry, package.size, result.resumed, None)
    return result.bytes_fetched, result.resumed


def _install(ctx: SyncContext, entry: ModelEntry, part: Any) -> None:
    """Verify, decrypt, extract and load a downloaded package; then write ready.json."""
    package = entry.package
    assert package is not None
    target = ctx.cache.package_dir(package.sha256)
    try:
        digest = hashlib.sha256()
        with part.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != package.sha256:
            raise IntegrityError(
                f"downloaded package has sha256 {digest.hexdigest()[:16]}..., the manifest "
                f"says {package.sha256[:16]}...; it was corrupted in transit or on disk. "
                "It was deleted; the next sync downloads it again."
            )
        verified = verify_package(part, trusted_keys=ctx.trusted_keys, app_id=ctx.app_id)
    except PocketMLError as exc:
        part.unlink(missing_ok=True)
        raise _StageError("verify", "verify", exc) from exc
    content_key = None
    if verified.content_key_id is not None:
        try:
            content_key = _fetch_content_key(ctx, verified.content_key_id)
        except PocketMLError as exc:
            raise _StageError("download", "key", exc) from exc
    model_format = str(verified.manifest.get("model_format") or entry.format)
    model_path = target / _EXTENSIONS.get(model_format, f"model.{model_format}")
    try:
        extract_model(verified, model_path, content_key=content_key)
        schema_bytes = read_member(verified, "schema.json")
        (target / "schema.json").write_bytes(schema_bytes)
    except PocketMLError as exc:
        ctx.cache.discard_package(package.sha256)
        raise _StageError("verify", "verify", exc) from exc
    try:
        open_runner(model_path, model_format)
    except PocketMLError as exc:
        ctx.cache.discard_package(package.sha256)
        raise _StageError("load", "load", exc) from exc
    ctx.cache.mark_ready(
        package.sha256,
        {
            "package_id": package.sha256,
            "model": entry.name,
            "version": entry.version,
            "variant": entry.variant,
            "format": model_format,
            "model_file": model_path.name,
            "model_sha256": verified.manifest.get("model_sha256"),
        },
    )
    part.unlink(missing_ok=True)


def _fetch_content_key(ctx: SyncContext, key_id: str) -> bytes:
    response = ctx.http.request("GET", f"/v1/keys/{key_id}")
    try:
        return base64.b64decode(response.json()["key"], validate=True)
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"the server's answer for content key {key_id} is malformed") from exc


def _notify(
    ctx: SyncContext, kind: str, entry: ModelEntry, have: int, resumed: bool, error: str | None
) -> None:
    if ctx.on_download is not None and entry.package is not None:
        ctx.on_download(
            DownloadEvent(kind, entry.name, entry.version, have, entry.package.size, resumed, error)  # type: ignore[arg-type]
        )


def _error_event(entry: ModelEntry, stage: str, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "ts": time.time(),
        "model": entry.name,
        "version": entry.version,
        "stage": stage,
        "message": message[:500],
    }


def _download_event(
    entry: ModelEntry, nbytes: int, duration_s: float, outcome: str
) -> dict[str, Any]:
    return {
        "type": "download",
        "ts": time.time(),
        "model": entry.name,
        "version": entry.version,
        "variant": entry.variant or "",
        "bytes": int(nbytes),
        "duration_ms": max(0.0, duration_s * 1000.0),
        "outcome": outcome,
    }
