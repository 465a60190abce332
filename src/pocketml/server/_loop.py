"""What the server hands the loop: the pusher and the opened ``LoopService``.

``pocketml.loop`` may not import the server, so the server gives it a ``pusher``: a
BUILD_DIR read by ``_build_dir.prepare_build`` (the same reader ``pocketml push`` uses)
and stored with ``Registry.push_version`` (atomic: a failure stores nothing). The job's
lineage (``parent_version``, its ``run_record["loop"]``) is merged into the build's
metadata; the model's schema stays the one stored with the model.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pocketml.server._build_dir import prepare_build

if TYPE_CHECKING:
    from pocketml.config import Settings
    from pocketml.loop import LoopService, SampleStore
    from pocketml.monitor.alerts import AlertService
    from pocketml.registry import Registry

__all__ = ["make_pusher", "open_loop"]


def make_pusher(registry: Registry) -> Any:
    """A ``pusher(app_id, model, build_dir, meta) -> version`` over ``registry``."""
    from pocketml.registry import VersionCreate

    def push(app_id: str, model: str, build_dir: Path, meta: Mapping[str, Any]) -> int:
        prepared = prepare_build(Path(build_dir), model=model)
        try:
            metadata = dict(prepared.metadata)
            run_record = {**metadata.get("run_record", {}), **meta.get("run_record", {})}
            metadata.update({k: v for k, v in meta.items() if k != "run_record"})
            metadata["run_record"] = run_record
            body = VersionCreate.model_validate(metadata)
            files = {v.name: v.path for v in prepared.variants}
            return registry.push_version(app_id, model, body, files).version
        finally:
            prepared.cleanup()

    return push


def open_loop(
    settings: Settings,
    registry: Registry,
    delivery: Any,
    alerts: AlertService | None,
    samples: SampleStore,
    owner: str | None,
) -> LoopService:
    """The server's ``LoopService``: the sample store, ``run_recipe`` and the pusher."""
    from pocketml.loop import LoopService, run_recipe

    options = settings.server.loop
    work_dir = options.work_dir or settings.home / "loop"
    return LoopService(
        registry.store.engine,
        registry,
        delivery,
        alerts,
        samples,
        functools.partial(run_recipe, data_root=options.data_root),
        make_pusher(registry),
        work_dir=Path(work_dir),
        owner=owner,
        lease_ttl_s=options.lease_ttl_s,
    )
