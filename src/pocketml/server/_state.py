"""What the running server holds: settings, the open registry, the services, the tokens.

Built by the lifespan in ``app.py`` and stored on ``app.state.pocketml``; routes reach it
through the ``server_state`` dependency, never through module globals.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Request

from pocketml.config import Settings
from pocketml.errors import Unavailable

if TYPE_CHECKING:
    from pocketml.delivery import DeliveryService
    from pocketml.federated import FederatedService
    from pocketml.loop import LoopService, SampleStore
    from pocketml.monitor import MonitorService, ProfileIntake
    from pocketml.monitor.alerts import AlertService
    from pocketml.registry import ArtifactStore, Principal, Registry
    from pocketml.serving import ServingService
    from pocketml.telemetry import TelemetryService

__all__ = ["PrincipalCache", "ServerState", "server_state"]


class PrincipalCache:
    """A small TTL cache of verified bearer tokens (keyed by their sha256, not the token).

    Args:
        ttl_s: seconds an entry stays valid (``settings.server.devices.auth_ttl_s``); 0
            disables the cache.
        max_entries: entries kept before the cache is cleared.
    """

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()
        self._inflight: dict[str, asyncio.Future[Principal]] = {}

    async def verify_once(
        self, token: str, verify: Callable[[], Awaitable[Principal]]
    ) -> Principal:
        """``await verify()``, shared by every concurrent caller with the same token.

        When an entry expires under load, every in-flight request of that device key
        misses at once; without this they would all run the database lookup (dozens of
        worker threads contending for the GIL), a stall that showed in the p99. The
        verification runs once and every waiter gets its result or its exception.
        """
        key = self._key(token)
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(verify())
            self._inflight[key] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(pending)

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8")).hexdigest()

    def get(self, token: str) -> Principal | None:
        """The cached principal of ``token`` while it is fresh, else None."""
        if self.ttl_s <= 0:
            return None
        entry = self._entries.get(self._key(token))
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def forget_app(self, app_id: str) -> None:
        """Drop every cached principal of ``app_id`` (its keys or tokens just changed).

        A rotation or revocation on this replica takes effect on its next request; other
        replicas still answer from their cache for at most ``ttl_s``.
        """
        with self._lock:
            stale = [key for key, (seen, _) in self._entries.items() if seen.app_id == app_id]
            for key in stale:
                del self._entries[key]

    def put(self, token: str, principal: Principal) -> None:
        """Remember that ``token`` authenticates as ``principal`` for ``ttl_s``."""
        if self.ttl_s <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[self._key(token)] = (principal, time.monotonic() + self.ttl_s)


@dataclass(frozen=True)
class ServerState:
    """Everything a request handler needs, opened once per process."""

    settings: Settings
    registry: Registry
    artifacts: ArtifactStore
    operator_token: str
    tmp_dir: Path
    delivery: DeliveryService
    serving: ServingService
    telemetry: TelemetryService
    monitor: MonitorService
    principals: PrincipalCache = field(default_factory=lambda: PrincipalCache(0))
    alerts: AlertService | None = None

    @property
    def alert_service(self) -> AlertService:
        """The alert service (opened by the lifespan). Raises Unavailable before that."""
        if self.alerts is None:
            raise Unavailable("alerting is not open on this server; retry in a moment.")
        return self.alerts

    profiles: ProfileIntake | None = None  # profile events (None: refused as unconfigured)
    samples: SampleStore | None = None  # consented samples (opened by the lifespan)

    @property
    def sample_store(self) -> SampleStore:
        """The sample store (opened by the lifespan). Raises Unavailable before that."""
        if self.samples is None:
            raise Unavailable("the sample store is not open on this server; retry in a moment.")
        return self.samples

    federated: FederatedService | None = None  # federated tasks (opened by the lifespan)

    @property
    def federated_service(self) -> FederatedService:
        """The federated service (opened by the lifespan). Raises Unavailable before that."""
        if self.federated is None:
            raise Unavailable("federated learning is not open on this server; retry in a moment.")
        return self.federated

    @property
    def max_samples_bytes(self) -> int:
        """``settings.server.limits.max_samples_body_kb`` in bytes."""
        return self.settings.server.limits.max_samples_body_kb * 1024

    loop: LoopService | None = None

    @property
    def loop_service(self) -> LoopService:
        """The retraining jobs (opened by the lifespan). Raises Unavailable before that."""
        if self.loop is None:
            raise Unavailable("the loop is not open on this server; retry in a moment.")
        return self.loop

    @property
    def registry_label(self) -> str:
        """The database URL with any password masked, for logs."""
        return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", self.settings.resolved_database_url)

    @property
    def max_upload_bytes(self) -> int:
        """``settings.server.limits.max_upload_mb`` in bytes."""
        return int(self.settings.server.limits.max_upload_mb * 1024 * 1024)

    @property
    def max_telemetry_events(self) -> int:
        """``settings.server.limits.max_telemetry_events``."""
        return self.settings.server.limits.max_telemetry_events

    @property
    def max_device_body_bytes(self) -> int:
        """``settings.server.limits.max_device_body_kb`` in bytes (check-in, feedback, keys)."""
        return self.settings.server.limits.max_device_body_kb * 1024

    @property
    def max_predict_body_bytes(self) -> int:
        """``settings.server.limits.max_predict_body_kb`` in bytes."""
        return self.settings.server.limits.max_predict_body_kb * 1024

    @property
    def max_telemetry_bytes(self) -> int:
        """``settings.server.limits.max_telemetry_bytes`` (one home for the telemetry limit)."""
        return self.settings.server.limits.max_telemetry_bytes


def server_state(request: Request) -> ServerState:
    """FastAPI dependency: the state the lifespan opened.

    Raises:
        Unavailable: the app is serving without its lifespan having run.
    """
    state = getattr(request.app.state, "pocketml", None)
    if not isinstance(state, ServerState):
        raise Unavailable("the pocketml server is still starting; retry in a moment.")
    return state
