"""DeliveryService: device check-in (manifest + ETag) and per-version policies.

Check-in is the hottest admin-free route of a fleet, so the service caches each app's
catalog (public keys, models, production versions, variants, policies) for
``cache_ttl_s`` seconds and memoises the manifest per set of targeting facts (platform,
class, formats, runtimes): 10,000 devices with a handful of distinct profiles cost a
handful of manifest builds. A promotion or key rotation reaches devices within the TTL;
a policy change made through this service is visible at once on this replica.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from pocketml.delivery._policy_store import PolicyStore
from pocketml.delivery._types import (
    DEFAULT_CHECKIN_INTERVAL_S,
    CheckinFacts,
    Manifest,
    VersionPolicy,
)
from pocketml.delivery.decide import choose_variant
from pocketml.delivery.experiments import ExperimentService
from pocketml.delivery.manifest import CatalogEntry, Chooser, build_manifest, default_policy
from pocketml.delivery.models import ModelAdmin
from pocketml.delivery.rollouts import CheckinPlan, RolloutService
from pocketml.errors import NotFound, Unavailable
from pocketml.protocol import CheckinChoice
from pocketml.registry import AppInfo, ModelInfo, Registry, VersionInfo
from pocketml.telemetry import TelemetryStore

# How long past its TTL a cached catalog may still answer while it is being reloaded.
_STALE_GRACE_S = 5.0

__all__ = ["DeliveryService"]

logger = logging.getLogger(__name__)

_MAX_MANIFESTS_PER_APP = 4096


@dataclass
class _Catalog:
    app: AppInfo
    entries: tuple[CatalogEntry, ...]
    loaded_at: float
    manifests: dict[tuple[Any, ...], Manifest] = field(default_factory=dict)
    plan: CheckinPlan = field(default_factory=lambda: CheckinPlan({}))
    offers: dict[tuple[str, str], CatalogEntry] = field(default_factory=dict)

    def key(self, device: CheckinFacts) -> tuple[Any, ...]:
        """The manifest cache key: variant facts plus the per-model rollout choice."""
        if not self.plan.models:
            return device.targeting_key()
        return (*device.targeting_key(), self.plan.select(device))

    def entries_for(self, choice: tuple[Any, ...]) -> tuple[CatalogEntry, ...]:
        """The catalog as one device sees it: no version, control or candidate per model."""
        if not self.plan.models:
            return self.entries
        chosen = dict(choice[-1])
        out = []
        for entry in self.entries:
            pick = chosen.get(entry.model.name, CheckinChoice.CONTROL)
            offer = self.offers.get((entry.model.name, pick))
            if offer is not None:
                out.append(offer)
            elif pick == CheckinChoice.NOTHING:
                out.append(replace(entry, version=None))
            else:
                out.append(entry)
        return tuple(out)


class DeliveryService:
    """Answers check-ins and stores policies. Construct with configuration, then ``open()``.

    Args:
        registry: the open registry (its engine also holds the policy table).
        checkin_interval_s: the interval sent to devices in every manifest.
        cache_ttl_s: how long an app's catalog is reused (0 disables the cache).
        chooser: the variant choice function; ``choose_variant`` by default.
        clock: monotonic clock in seconds (tests may inject one).
        telemetry: the telemetry store guardrails and experiments read (shares its
            decoded-chunk cache); a new one on the registry's engine by default.
        package_base_url: prefix of ``package.url`` in manifests (the server's
            ``public_url``); "" keeps the URLs relative.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        checkin_interval_s: int = DEFAULT_CHECKIN_INTERVAL_S,
        cache_ttl_s: float = 1.0,
        chooser: Chooser = choose_variant,
        clock: Callable[[], float] = time.monotonic,
        telemetry: TelemetryStore | None = None,
        package_base_url: str = "",
    ) -> None:
        self.registry = registry
        self.package_base_url = package_base_url
        self.telemetry = telemetry
        self.checkin_interval_s = checkin_interval_s
        self.cache_ttl_s = cache_ttl_s
        self.chooser = chooser
        self.clock = clock
        self._policies: PolicyStore | None = None
        self._rollouts: RolloutService | None = None
        self._experiments: ExperimentService | None = None
        self._models: ModelAdmin | None = None
        self._catalogs: dict[str, _Catalog] = {}
        self._generations: dict[str, int] = {}  # bumped by invalidate(): drops late loads
        self._lock = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}
        self._refreshing: set[str] = set()

    def open(self) -> None:
        """Attach to the registry's database (the registry must be open)."""
        self._policies = PolicyStore(self.registry.store.engine)
        self._rollouts = RolloutService(
            self.registry, on_change=self.invalidate, telemetry=self.telemetry
        )
        self._experiments = ExperimentService(self._rollouts)
        self._models = ModelAdmin(self._rollouts)

    @property
    def rollouts(self) -> RolloutService:
        """Targeting and staged rollouts. Raises Unavailable before ``open()``."""
        if self._rollouts is None:
            raise Unavailable("the delivery service is not open; call open() first.")
        return self._rollouts

    @property
    def policies(self) -> PolicyStore:
        """The policy store. Raises Unavailable before ``open()``."""
        if self._policies is None:
            raise Unavailable("the delivery service is not open; call open() first.")
        return self._policies

    @property
    def experiments(self) -> ExperimentService:
        """A/B experiments. Raises Unavailable before ``open()``."""
        if self._experiments is None:
            raise Unavailable("the delivery service is not open; call open() first.")
        return self._experiments

    @property
    def models(self) -> ModelAdmin:
        """Correcting and deleting models (audited). Raises Unavailable before ``open()``."""
        if self._models is None:
            raise Unavailable("the delivery service is not open; call open() first.")
        return self._models

    # -- check-in ----------------------------------------------------------------------

    def checkin(self, app_id: str, device: CheckinFacts) -> Manifest:
        """The manifest of ``device`` (canonical JSON bytes and ETag).

        Args:
            app_id: the device's app (from its device key).
            device: the validated device facts.

        Returns:
            The manifest; identical facts within the cache TTL share one object.

        Raises:
            NotFound: the app does not exist. Unavailable: the database is unreachable.
        """
        catalog = self._catalog(app_id)
        key = catalog.key(device)
        manifest = catalog.manifests.get(key)
        if manifest is None:
            manifest = build_manifest(
                catalog.app,
                catalog.entries_for(key),
                device,
                chooser=self.chooser,
                checkin_interval_s=self.checkin_interval_s,
                package_base_url=self.package_base_url,
            )
            if len(catalog.manifests) >= _MAX_MANIFESTS_PER_APP:
                catalog.manifests.clear()
            catalog.manifests[key] = manifest
        return manifest

    def cached_manifest(self, app_id: str, device: CheckinFacts) -> Manifest | None:
        """The manifest when it can be answered from memory alone (no database), else None.

        Lets the server answer most check-ins without a worker thread. A catalog past its
        TTL still answers, for at most ``_STALE_GRACE_S`` more, while one background
        thread reloads it (stale-while-revalidate): otherwise every check-in in flight at
        expiry would wait for, and each start, its own catalog read.
        """
        catalog = self._catalogs.get(app_id)
        if catalog is None:
            return None
        age = self.clock() - catalog.loaded_at
        if age >= self.cache_ttl_s:
            if age >= self.cache_ttl_s + _STALE_GRACE_S:
                return None
            self._refresh_in_background(app_id)
        return catalog.manifests.get(catalog.key(device))

    def invalidate(self, app_id: str | None = None) -> None:
        """Forget the cached catalog of one app (or of all apps)."""
        with self._lock:
            apps = list(self._catalogs) if app_id is None else [app_id]
            for app in apps:
                self._generations[app] = self._generations.get(app, 0) + 1
                self._catalogs.pop(app, None)

    def _store(self, app_id: str, catalog: _Catalog, generation: int) -> None:
        """Keep ``catalog`` unless ``invalidate`` ran since its load started."""
        with self._lock:
            if self._generations.get(app_id, 0) == generation:
                self._catalogs[app_id] = catalog

    def _refresh_in_background(self, app_id: str) -> None:
        with self._lock:
            if app_id in self._refreshing:
                return
            self._refreshing.add(app_id)
            generation = self._generations.get(app_id, 0)

        def reload() -> None:
            try:
                self._store(app_id, self._load_catalog(app_id, self.clock()), generation)
            except Exception as exc:  # the stale catalog keeps answering until its grace ends
                logger.warning("could not reload the delivery catalog of %s: %s", app_id, exc)
            finally:
                with self._lock:
                    self._refreshing.discard(app_id)

        threading.Thread(target=reload, name="pocketml-catalog", daemon=True).start()

    def _catalog(self, app_id: str) -> _Catalog:
        catalog = self._catalogs.get(app_id)
        if catalog is not None and self.clock() - catalog.loaded_at < self.cache_ttl_s:
            return catalog
        with self._lock:
            load_lock = self._load_locks.setdefault(app_id, threading.Lock())
        with load_lock:  # concurrent misses of one app read the database once
            catalog = self._catalogs.get(app_id)
            if catalog is not None and self.clock() - catalog.loaded_at < self.cache_ttl_s:
                return catalog
            generation = self._generations.get(app_id, 0)
            catalog = self._load_catalog(app_id, self.clock())
            if self.cache_ttl_s > 0:
                self._store(app_id, catalog, generation)
            return catalog

    def _load_catalog(self, app_id: str, now: float) -> _Catalog:
        app = self.registry.get_app(app_id)
        models: list[ModelInfo] = []
        offset = 0
        while True:
            page = self.registry.list_models(app_id, limit=1000, offset=offset)
            models.extend(page.items)
            offset += len(page.items)
            if not page.items or offset >= page.total:
                break
        versions: dict[str, VersionInfo | None] = {}
        for model in models:
            versions[model.name] = None
            if model.production_version is not None:
                try:
                    versions[model.name] = self.registry.get_version(
                        app_id, model.name, model.production_version
                    )
                except NotFound:  # demoted or deleted between the two reads
                    versions[model.name] = None
        plan = self.rollouts.plan(app_id)
        offered = [v for v in versions.values() if v is not None]
        offered += [v for p in plan.models.values() for v in p.offers().values()]
        overrides = self.policies.get_many([v.id for v in offered])

        def entry(model: ModelInfo, version: VersionInfo | None) -> CatalogEntry:
            policy = default_policy(model.name, version)
            if version is not None and version.id in overrides:
                policy = policy.with_overrides(*overrides[version.id])
            return CatalogEntry(model=model, version=version, policy=policy)

        entries = [entry(model, versions[model.name]) for model in models]
        offers = {
            (model.name, code): entry(model, version)
            for model in models
            if model.name in plan.models
            for code, version in plan.models[model.name].offers().items()
        }
        return _Catalog(
            app=app,
            entries=tuple(entries),
            loaded_at=now,
            plan=plan,
            offers=offers,
        )

    # -- policies ----------------------------------------------------------------------

    def get_policy(self, app_id: str, model: str, version: int) -> VersionPolicy:
        """The effective policy of one version (defaults + stored overrides).

        Raises:
            NotFound: no such model or version in the app.
        """
        info = self.registry.get_version(app_id, model, version)
        policy = default_policy(model, info)
        stored = self.policies.get_many([info.id]).get(info.id)
        return policy.with_overrides(*stored) if stored else policy

    def copy_policy(self, app_id: str, model: str, source: int, target: int) -> None:
        """Give version ``target`` the stored policy overrides of version ``source``.

        A retrained candidate answers, sketches and captures the way its champion was set
        to (the loop calls this right after its push, before any device can see it).

        Raises:
            NotFound: no such model or version in the app.
        """
        source_info = self.registry.get_version(app_id, model, source)
        target_info = self.registry.get_version(app_id, model, target)
        stored = self.policies.get_many([source_info.id]).get(source_info.id)
        if stored is None:
            return
        self.policies.upsert(app_id, target_info.id, *stored)
        self.invalidate(app_id)

    def set_policy(
        self,
        app_id: str,
        model: str,
        version: int,
        *,
        hybrid: dict[str, Any] | None = None,
        download: dict[str, Any] | None = None,
        monitor: dict[str, Any] | None = None,
        capture: dict[str, Any] | None = None,
    ) -> VersionPolicy:
        """Replace the stored hybrid, download, monitor and/or capture overrides of one version.

        A section that is given replaces that section's stored overrides; a section left
        out keeps them. Values must already be validated (the HTTP edge does it).

        Args:
            app_id: the caller's app.
            model: the model's name.
            version: the version number.
            hybrid: fields of ``HybridPolicy`` to override (mode, threshold, ...).
            download: fields of ``DownloadPolicy`` to override.
            monitor: fields of ``MonitorPolicy`` to override.
            capture: fields of ``CapturePolicy`` to override.

        Returns:
            The new effective policy.

        Raises:
            NotFound: no such model or version in the app.
        """
        info = self.registry.get_version(app_id, model, version)
        stored = self.policies.get_many([info.id]).get(info.id, ({}, {}, {}, {}))
        new_hybrid = dict(hybrid) if hybrid is not None else stored[0]
        new_download = dict(download) if download is not None else stored[1]
        new_monitor = dict(monitor) if monitor is not None else stored[2]
        new_capture = dict(capture) if capture is not None else stored[3]
        self.policies.upsert(app_id, info.id, new_hybrid, new_download, new_monitor, new_capture)
        self.invalidate(app_id)
        logger.info("set the policy of %s v%d in app %s", model, version, app_id)
        return default_policy(model, info).with_overrides(
            new_hybrid, new_download, new_monitor, new_capture
        )
