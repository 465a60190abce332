"""Bring one manifest entry onto the device: policy, disk, download, verify, bind, load, swap.

Each step that can fail names its stage ("disk", "download", "verify", "key", "load").
Any failure, an unexpected one included, leaves ``active.json`` untouched (the previous
model keeps serving), emits an ``error`` telemetry event and reports ``failed`` with the
typed error, so one model's failure never stops the others from syncing. The swap is the
last step: the package is verified, bound to its check-in entry (``_bind``), extracted and
loaded first, ``ready.json`` written, and only then ``active.json`` is replaced atomically.
"""

from __future__ import annotations

import base64
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pocketml.device._bind import (
    MODEL_FILES,
    check_binding,
    check_cached,
    is_current,
    ready_record,
)
from pocketml.device._download import download_package
from pocketml.device._entry import KEY_ID, MODEL_NAME
from pocketml.device._net import Backoff, DeviceHttp
from pocketml.device._store import CacheDir
from pocketml.device._telemetry import error_event
from pocketml.device._types import DeviceState, DownloadEvent, ModelEntry, ModelSync
from pocketml.errors import IntegrityError, InvalidInput, PocketMLError, Unavailable
from pocketml.protect import PROFILE_MEMBER, ContentKey, install_package, read_member
from pocketml.runtime import open_runner

__all__ = ["SyncContext", "blocked_reason", "failed_sync", "sync_model"]

logger = logging.getLogger(__name__)

DISK_FACTOR = 2.5


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


# ModelSync.reason -> the stage of the error telemetry event (the server's vocabulary)
_EVENT_STAGE = {
    "protocol": "download",
    "disk": "download",
    "download": "download",
    "key": "download",
    "verify": "verify",
    "load": "load",
    "internal": "verify",
}


def sync_model(ctx: SyncContext, entry: ModelEntry) -> ModelSync:
    """Make ``entry``'s package the active model of its name (see the module docstring).

    Returns:
        What happened; never raises: any failure leaves the model's previous package
        active, queues an ``error`` event and reports ``failed`` with the typed error.
    """
    try:
        return _sync(ctx, entry)
    except _StageError as exc:
        return failed_sync(ctx, entry, exc.reason, exc.cause)
    except PocketMLError as exc:
        return failed_sync(ctx, entry, "verify", exc)
    except OSError as exc:
        error = Unavailable(f"the cache directory {ctx.cache.root} failed: {exc}")
        return failed_sync(ctx, entry, "disk", error)
    except Exception as exc:  # containment: one model's bug must not stop the others
        logger.exception("syncing %s failed unexpectedly", entry.name)
        return failed_sync(ctx, entry, "internal", PocketMLError(f"{type(exc).__name__}: {exc}"))


def failed_sync(
    ctx: SyncContext, entry: ModelEntry, reason: str, error: BaseException
) -> ModelSync:
    """Report a failed model: queue its ``error`` event; its previous package stays active."""
    typed = error if isinstance(error, PocketMLError) else PocketMLError(str(error))
    message = f"{entry.name} v{entry.version}: {reason} failed: {typed}"
    if MODEL_NAME.fullmatch(entry.name):  # an unreadable entry has no model to report on
        ctx.emit(error_event(entry.name, entry.version, _EVENT_STAGE[reason], message, typed.code))
    return ModelSync(
        model=entry.name,
        status="failed",
        version=entry.version,
        variant=entry.variant,
        reason=reason,
        error=typed,
    )


def _sync(ctx: SyncContext, entry: ModelEntry) -> ModelSync:
    base: dict[str, Any] = {"version": entry.version, "variant": entry.variant}
    package = entry.package
    if package is None:
        return ModelSync(model=entry.name, status="cloud-only", **base)
    if is_current(ctx.cache.active().get(entry.name), entry, ctx.app_id, ctx.trusted_keys):
        return ModelSync(model=entry.name, status="current", **base)
    record = check_cached(ctx.cache, entry, ctx.app_id, ctx.trusted_keys)
    from_cache = record is not None
    fetched, resumed = 0, False
    if record is None:
        reason = blocked_reason(entry, ctx.state)
        if reason is not None:
            return ModelSync(model=entry.name, status="blocked", reason=reason, **base)
        try:
            ctx.http.package_url(package.url)  # refused before a byte is fetched
        except PocketMLError as exc:
            raise _StageError("download", "download", exc) from exc
        fetched, resumed, record = _fetch_and_install(ctx, entry)
    ctx.cache.activate(entry.name, {**record, "activated_at": time.time()})
    return ModelSync(
        model=entry.name,
        status="updated",
        bytes_downloaded=fetched,
        resumed=resumed,
        from_cache=from_cache,
        **base,
    )


def _fetch_and_install(ctx: SyncContext, entry: ModelEntry) -> tuple[int, bool, dict[str, Any]]:
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
        record = _install(ctx, entry, part)
    except _StageError:
        _notify(ctx, "failed", entry, package.size, result.resumed, "verification failed")
        raise
    _notify(ctx, "done", entry, package.size, result.resumed, None)
    return result.bytes_fetched, result.resumed, record


def _install(ctx: SyncContext, entry: ModelEntry, part: Path) -> dict[str, Any]:
    """Verify, bind, decrypt, extract and load a downloaded package; write ready.json.

    Returns:
        The ready record (what ``active.json`` will point at).
    """
    package = entry.package
    assert package is not None
    target = ctx.cache.package_dir(package.sha256)

    def content_key(key_id: str) -> ContentKey:
        try:
            return _fetch_content_key(ctx, key_id)
        except PocketMLError as exc:
            raise _StageError("download", "key", exc) from exc

    try:
        installed = install_package(
            part,
            target / "model.tmp",
            trusted_keys=ctx.trusted_keys,
            app_id=ctx.app_id,
            content_key=content_key,
            package_sha256=package.sha256,
            check=lambda manifest: check_binding(manifest, entry, ctx.app_id),
        )
        model_format = str(installed.verified.manifest["model_format"])
        model_path = target / MODEL_FILES.get(model_format, f"model.{model_format}")
        installed.model_path.replace(model_path)
        (target / "schema.json").write_bytes(read_member(installed.verified, "schema.json"))
        if installed.verified.has_profile:  # the version's reference profile: sketching
            (target / PROFILE_MEMBER).write_bytes(read_member(installed.verified, PROFILE_MEMBER))
    except PocketMLError as exc:
        ctx.cache.discard_package(package.sha256)
        raise _StageError("verify", "verify", exc) from exc
    except OSError as exc:
        ctx.cache.discard_package(package.sha256)
        error = Unavailable(f"cannot write the model into {target}: {exc}")
        raise _StageError("download", "disk", error) from exc
    try:
        open_runner(model_path, model_format)
    except PocketMLError as exc:
        ctx.cache.discard_package(package.sha256)
        raise _StageError("load", "load", exc) from exc
    record = ready_record(installed.verified.manifest, package.sha256, model_path.name)
    ctx.cache.mark_ready(package.sha256, record)
    part.unlink(missing_ok=True)
    return record


def _fetch_content_key(ctx: SyncContext, key_id: str) -> ContentKey:
    """The content key from ``GET /v1/keys/{key_id}``, its answer checked."""
    if not KEY_ID.fullmatch(key_id):
        raise IntegrityError(f"content key id {key_id[:80]!r} is not a key id.")
    response = ctx.http.request("GET", f"/v1/keys/{key_id}")
    try:
        body = response.json()
        key = base64.b64decode(body["key"], validate=True)
        answered_id = body.get("key_id", key_id)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise IntegrityError(
            f"the server's answer for content key {key_id} is malformed ({type(exc).__name__}); "
            'expected {"key_id": ..., "key": <base64 of 32 bytes>}. Retried next sync.'
        ) from exc
    if answered_id != key_id:
        raise IntegrityError(
            f"the server answered content key {key_id} with key id {str(answered_id)[:80]!r}."
        )
    try:
        return ContentKey(key_id, key)
    except InvalidInput as exc:
        raise IntegrityError(f"the server's content key {key_id} is unusable: {exc}") from exc


def _notify(
    ctx: SyncContext, kind: str, entry: ModelEntry, have: int, resumed: bool, error: str | None
) -> None:
    if ctx.on_download is not None and entry.package is not None:
        ctx.on_download(
            DownloadEvent(kind, entry.name, entry.version, have, entry.package.size, resumed, error)  # type: ignore[arg-type]
        )


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
