"""Which model answers for a name: its policy, schema and loaded runtime, from the cache.

``LocalModel`` asks ``resolve(name)`` once per activated package, not per call: after a
sync the ``Device`` calls ``invalidate()``, which bumps ``generation``, and each
``LocalModel`` rebuilds its snapshot on its next call. Loaded runtimes are kept per
package sha256, so a model that did not change keeps its session across syncs. Problems
(an unusable schema, a model that does not load) are reported as ``error`` events and the
name falls back to the cloud; they never raise into a prediction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pocketml.device._entry import parse_manifest_models
from pocketml.device._store import CacheDir
from pocketml.device._types import CapturePolicy, HybridPolicy, ModelEntry, MonitorPolicy
from pocketml.errors import PocketMLError
from pocketml.protect import PROFILE_MEMBER
from pocketml.runtime import Runner, open_runner
from pocketml.schema import ModelSchema
from pocketml.sketch import ReferenceProfile

__all__ = ["Loaded", "ModelResolver", "Resolved"]


@dataclass(frozen=True)
class Loaded:
    """A loaded package, ready for the hot path.

    Attributes:
        runner: the model's runner.
        run: ``runner.fast_run()``: first output of a checked float32 batch.
        version: the model version of the package.
        variant: the variant name of the package.
    """

    runner: Runner
    run: Callable[[np.ndarray], np.ndarray]
    version: int | None
    variant: str | None


@dataclass(frozen=True)
class Resolved:
    """What a name resolves to now: the policy, the schema (if known), the local model,
    and the monitor policy and reference profile the local model is sketched with."""

    policy: HybridPolicy
    schema: ModelSchema | None
    local: Loaded | None
    monitor: MonitorPolicy = field(default_factory=MonitorPolicy)
    profile: ReferenceProfile | None = None
    capture: CapturePolicy | None = None  # None: capture nothing (no policy, or disabled)


class ModelResolver:
    """Resolves model names against the cache: the last manifest and the active packages.

    Args:
        cache: the device cache directory.
        schemas: model name -> ModelSchema, used when neither package nor manifest has one.
        threads: inference threads of the local runtime.
        report_error: ``(model, version, stage, message)`` for an ``error`` event.
    """

    def __init__(
        self,
        cache: CacheDir,
        schemas: Mapping[str, ModelSchema],
        threads: int,
        report_error: Callable[[str, int | None, str, str], None],
    ) -> None:
        self._cache = cache
        self._schemas = dict(schemas)
        self._threads = threads
        self._report_error = report_error
        self._runners: dict[str, Loaded] = {}
        self._profiles: dict[str, ReferenceProfile | None] = {}  # per package: read once
        self.generation = 0

    def invalidate(self) -> None:
        """Tell every LocalModel to resolve again on its next call (after a sync)."""
        self.generation += 1

    def entry(self, name: str) -> ModelEntry | None:
        """The entry of ``name`` in the last check-in answer kept on the device, or None."""
        _, manifest = self._cache.last_checkin()
        if manifest is None:
            return None
        return next((e for e in parse_manifest_models(manifest) if e.name == name), None)

    def resolve(self, name: str) -> Resolved:
        """The policy, schema and loaded local model of ``name`` (None parts when unknown)."""
        entry = self.entry(name)
        policy = (
            entry.hybrid
            if entry is not None
            else HybridPolicy(mode="cloud", cloud_route=f"/v1/models/{name}/predict")
        )
        schema = self._schemas.get(name)
        if entry is not None and entry.schema:
            try:
                schema = ModelSchema.from_dict(dict(entry.schema))
            except PocketMLError as exc:
                self._report_error(name, entry.version, "load", f"manifest schema unusable: {exc}")
        capture = entry.capture if entry is not None and entry.capture else None
        if capture is not None and not capture.enabled:
            capture = None
        record = self._cache.active().get(name)
        if not isinstance(record, dict):
            return Resolved(policy, schema, None, capture=capture)
        try:
            package_dir = self._cache.package_dir(record.get("package_id"))  # type: ignore[arg-type]
            schema = ModelSchema.from_json((package_dir / "schema.json").read_bytes())
        except (OSError, PocketMLError) as exc:
            self._report_error(name, record.get("version"), "load", f"schema unreadable: {exc}")
            return Resolved(policy, schema, None, capture=capture)
        local = self._load(name, record, package_dir)
        monitor = entry.monitor if entry is not None and entry.monitor else MonitorPolicy()
        profile = self._profile(name, record, package_dir) if local is not None else None
        return Resolved(policy, schema, local, monitor, profile, capture)

    def _profile(
        self, name: str, record: dict[str, Any], package_dir: Path
    ) -> ReferenceProfile | None:
        """The package's reference profile, None without one; a broken one is reported
        once (an ``error`` event) and the package is not sketched."""
        key = record["package_id"]
        if key not in self._profiles:
            path = package_dir / PROFILE_MEMBER  # written beside schema.json at install
            profile = None
            if path.exists():
                try:
                    profile = ReferenceProfile.from_dict(json.loads(path.read_bytes()))
                except Exception as exc:  # any shape of broken file: never raise
                    self._report_error(
                        name, record.get("version"), "load", f"profile unusable: {exc}"
                    )
            self._profiles[key] = profile
        return self._profiles[key]

    def _load(self, name: str, record: dict[str, Any], package_dir: Path) -> Loaded | None:
        key = record["package_id"]
        if key in self._runners:
            return self._runners[key]
        try:
            runner = open_runner(
                package_dir / record["model_file"], record["format"], threads=self._threads
            )
        except PocketMLError as exc:
            self._report_error(name, record.get("version"), "load", str(exc))
            return None
        loaded = Loaded(runner, runner.fast_run(), record.get("version"), record.get("variant"))
        self._runners[key] = loaded
        return loaded
