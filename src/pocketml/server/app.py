"""The FastAPI application factory: ``create_app(settings)``.

Building the app does no work: the lifespan opens the artifact store and the registry
(database engine, migrations), loads the master key and the operator token, and closes the
registry on shutdown. Routers are thin: they parse, call one registry method, and map the
result (STYLE.md rule 3).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI

from pocketml._version import __version__
from pocketml.config import Settings, load_settings
from pocketml.errors import InvalidInput
from pocketml.server._fast import PocketMLApp
from pocketml.server._federated import open_federated
from pocketml.server._guard import Limits
from pocketml.server._loop import open_loop
from pocketml.server._metrics import ServerMetrics
from pocketml.server._openapi import install_openapi
from pocketml.server._state import PrincipalCache, ServerState
from pocketml.server.errors import RequestIdMiddleware, install_error_handlers
from pocketml.server.routes import (
    admin,
    alerts,
    device,
    device_admin,
    federated,
    loop,
    metrics,
    monitor,
    packages,
    predict,
    rollouts,
    samples,
    system,
    telemetry,
    ui,
)

if TYPE_CHECKING:
    from pocketml.delivery import DeliveryService
    from pocketml.loop import SampleStore
    from pocketml.monitor import MonitorService
    from pocketml.monitor.alerts import AlertService
    from pocketml.registry import ArtifactStore, Registry
    from pocketml.telemetry import TelemetryStore

__all__ = ["create_app", "create_app_from_env", "load_or_create_operator_token"]

logger = logging.getLogger(__name__)

_DESCRIPTION = """\
The pocketml control plane: apps, models, versions and their signed packages, and the
device protocol: check-in (manifest + ETag), package downloads, content keys, cloud
inference, telemetry and feedback (see docs/protocol.md).

Authenticate with `Authorization: Bearer <token>`:

* the **operator token** creates apps (`POST /v1/admin/apps`);
* an app's **admin token** manages that app's models and versions;
* an app's **device key** calls the device routes (check-in, packages, keys, predict,
  telemetry, feedback) of that app and can never call admin routes.

Every error is JSON: `{"error": {"code", "message", "request_id"}}`.
"""


def load_or_create_operator_token(
    path: Path, *, what: str = "operator token", prefix: str = "pml_op_"
) -> str:
    """Read the operator token from ``path``, generating it (mode 0600) on first start.

    Args:
        path: the token file, normally ``<home>/operator.token``.
        what: the token's name in messages (the metrics token uses this function too).
        prefix: what a generated token starts with, so a leaked one says what it opens.

    Returns:
        The token. Its value is never logged, only the path.

    Raises:
        InvalidInput: the file exists but is empty or readable by group/others.
    """
    if path.exists():
        mode = path.stat().st_mode & 0o077
        if mode:
            raise InvalidInput(
                f"{what} file {path} is readable by group/others (mode "
                f"{oct(path.stat().st_mode & 0o777)}); expected 0600. Run: chmod 600 {path}"
            )
        token = path.read_text(encoding="utf-8").strip()
        if not token:
            raise InvalidInput(f"{what} file {path} is empty; delete it to regenerate.")
        return token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = prefix + secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    os.replace(tmp, path)
    logger.warning("generated the %s; read it from %s (mode 0600)", what, path)
    return token


def _open_alerts(
    settings: Settings,
    registry: Registry,
    telemetry: TelemetryStore,
    monitor: MonitorService,
    on_outcome: Callable[[str], None] | None,
) -> AlertService:
    """The alert service, its metric sources wired: the model-health readers (drift and
    accuracy from the sketches), then telemetry's, which win where both answer
    (``accuracy_realised``: telemetry's needs no reference profile)."""
    from pocketml.monitor.alerts import AlertService, Backoff, MetricSources, telemetry_sources

    sources = MetricSources({**monitor.health_readers(), **telemetry_sources(telemetry)})
    options = settings.server.alerts
    return AlertService(
        registry,
        sources,
        base_url=settings.server.public_url or "",
        backoff=Backoff(options.max_attempts, options.backoff_base_s, options.backoff_max_s),
        timeout_s=options.timeout_s,
        on_outcome=on_outcome,
    )


def _open_state(
    settings: Settings, on_delivery: Callable[[str], None] | None = None
) -> ServerState:
    from pocketml.delivery import DeliveryService
    from pocketml.monitor import MonitorService, ProfileIntake
    from pocketml.protect import MasterKey
    from pocketml.registry import Registry, open_artifact_store
    from pocketml.serving import ServingOptions, ServingService
    from pocketml.telemetry import TelemetryService

    settings.home.mkdir(parents=True, exist_ok=True)
    artifacts = open_artifact_store(
        settings.resolved_artifact_url, s3_endpoint_url=settings.s3_endpoint_url
    )
    if settings.master_key is not None:
        master_key = MasterKey.from_b64(settings.master_key.get_secret_value())
    else:
        master_key = MasterKey.load_or_create(settings.home / "master.key")
    if settings.operator_token is not None:
        operator_token = settings.operator_token.get_secret_value()
    else:
        operator_token = load_or_create_operator_token(settings.home / "operator.token")
    registry = Registry(settings.resolved_database_url, artifacts, master_key)
    registry.open()
    tmp_dir = settings.home / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    for stale in tmp_dir.glob("upload-*.part"):  # left by a server killed mid-upload
        stale.unlink(missing_ok=True)
    server = settings.server
    telemetry_service = TelemetryService(
        registry,
        settings.home / "telemetry",
        export_interval_s=server.telemetry_export.interval_s,
        export_pending_events=server.telemetry_export.pending_events,
    )
    telemetry_service.open()
    delivery = DeliveryService(
        registry,
        checkin_interval_s=server.devices.checkin_interval_s,
        cache_ttl_s=server.devices.catalog_ttl_s,
        telemetry=telemetry_service.store,
        package_base_url=server.public_url or "",
    )
    delivery.open()
    serving = ServingService(
        registry, settings.home / "models", ServingOptions.from_settings(server.predict)
    )
    monitor = MonitorService(registry, telemetry_service)
    alert_service = _open_alerts(settings, registry, telemetry_service.store, monitor, on_delivery)
    exporter = telemetry_service.exporter
    samples = _open_samples(registry, artifacts, delivery)
    loop_service = open_loop(
        settings,
        registry,
        delivery,
        alert_service,
        samples,
        exporter.owner if exporter is not None else None,
    )
    return ServerState(
        settings=settings,
        registry=registry,
        artifacts=artifacts,
        operator_token=operator_token,
        tmp_dir=tmp_dir,
        delivery=delivery,
        serving=serving,
        telemetry=telemetry_service,
        monitor=monitor,
        principals=PrincipalCache(server.devices.auth_ttl_s),
        alerts=alert_service,
        profiles=ProfileIntake(
            registry.get_reference_profile,
            lambda app_id, model, version: delivery.get_policy(app_id, model, version).monitor,
        ),
        samples=samples,
        loop=loop_service,
        federated=open_federated(
            registry,
            settings.home,
            exporter.owner if exporter is not None else None,
            delivery,
            max_update_bytes=server.limits.max_device_body_kb * 1024,
        ),
    )


def _open_samples(
    registry: Registry, artifacts: ArtifactStore, delivery: DeliveryService
) -> SampleStore:
    """The sample store; ``purge_expired`` reads each version's capture retention."""
    from pocketml.loop import SampleStore

    return SampleStore(
        registry,
        artifacts,
        retention_of=lambda app_id, model, version: (
            delivery.get_policy(app_id, model, version).capture
        ),
    )


def _start_rollout_evaluator(
    settings: Settings, state: ServerState
) -> tuple[asyncio.Task[None], asyncio.Event] | None:
    """Start the rollout evaluator loop (``server.rollout_eval.interval_s``; <= 0: off)."""
    from pocketml.delivery import RolloutEvaluator

    interval = settings.server.rollout_eval.interval_s
    if interval <= 0:
        return None
    stop = asyncio.Event()
    # The home's stable identity (the exporter's): a replica restarted after a crash is
    # the same lease owner and evaluates at once instead of waiting out its own lease.
    exporter = state.telemetry.exporter
    owner = exporter.owner if exporter is not None else None
    evaluator = RolloutEvaluator(state.delivery.rollouts, interval_s=interval, owner=owner)
    return asyncio.create_task(evaluator.run_forever(stop)), stop


def _start_alert_loops(
    settings: Settings, state: ServerState
) -> list[tuple[asyncio.Task[None], asyncio.Event] | None]:
    """Start the alert evaluator and the webhook sender, each its own loop and lease
    (``server.alerts.eval_interval_s`` / ``delivery_interval_s``; <= 0: off)."""
    from pocketml.monitor.alerts import AlertEvaluator, WebhookDeliverer

    options, service = settings.server.alerts, state.alert_service
    exporter = state.telemetry.exporter
    owner = exporter.owner if exporter is not None else None
    started: list[tuple[asyncio.Task[None], asyncio.Event] | None] = []
    jobs = (
        (options.eval_interval_s, AlertEvaluator),
        (options.delivery_interval_s, WebhookDeliverer),
    )
    for interval, job in jobs:
        if interval <= 0:
            continue
        stop = asyncio.Event()
        runner = job(service, interval_s=interval, owner=owner)
        started.append((asyncio.create_task(runner.run_forever(stop)), stop))
    return started


def _start_telemetry_exporter(
    settings: Settings, state: ServerState
) -> tuple[asyncio.Task[None], asyncio.Event] | None:
    """Start the Parquet exporter loop (``server.telemetry_export.interval_s``; <= 0: off)."""
    exporter = state.telemetry.exporter
    if settings.server.telemetry_export.interval_s <= 0 or exporter is None:
        return None
    stop = asyncio.Event()
    return asyncio.create_task(exporter.run_forever(stop)), stop


SAMPLE_PURGE_INTERVAL_S = 3600.0


def _start_sample_purge(state: ServerState) -> tuple[asyncio.Task[None], asyncio.Event]:
    """Purge samples past their retention every hour (docs/loop.md). No lease: a purge
    is idempotent, so replicas running it at once delete each row once between them."""
    import time

    from pocketml.db import run_periodically

    store = state.sample_store
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_periodically(
            lambda: store.purge_expired(time.time()),
            stop,
            interval_s=SAMPLE_PURGE_INTERVAL_S,
            name="sample purge",
        )
    )
    return task, stop


def _start_loop(
    settings: Settings, state: ServerState
) -> tuple[asyncio.Task[None], asyncio.Event] | None:
    """Start the loop's pass (``server.loop.interval_s``; <= 0: off): recover dead jobs,
    check triggers, run one queued job. Each job holds its own lease row, so several
    replicas may tick at once and still run every job once."""
    from pocketml.db import run_periodically

    interval = settings.server.loop.interval_s
    if interval <= 0:
        return None
    stop = asyncio.Event()
    service = state.loop_service
    task = asyncio.create_task(
        run_periodically(service.tick, stop, interval_s=interval, name="loop", logger=logger)
    )
    return task, stop


def _metrics_token(settings: Settings) -> str:
    """The bearer token of ``GET /metrics``: the setting, else ``<home>/metrics.token``."""
    configured = settings.server.metrics.token
    if configured is not None:
        return configured.get_secret_value()
    return load_or_create_operator_token(
        settings.home / "metrics.token", what="metrics token", prefix="pml_metrics_"
    )


FEDERATED_TICK_S = 1.0


def _start_federated(state: ServerState) -> tuple[asyncio.Task[None], asyncio.Event] | None:
    """Close federated phases and rounds whose deadline passed, every second. Each task is
    advanced under its own lease, so replicas may tick at once and aggregate every round
    once (docs/federated.md, "Tasks")."""
    from pocketml.db import run_periodically

    service = state.federated
    if service is None:
        return None
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_periodically(
            service.tick, stop, interval_s=FEDERATED_TICK_S, name="federated", logger=logger
        )
    )
    return task, stop


async def _stop_background(
    running: tuple[asyncio.Task[None], asyncio.Event] | None,
) -> None:
    if running is not None:
        task, stop = running
        stop.set()
        await task


def create_app(settings: Settings) -> FastAPI:
    """Build the pocketml server application.

    Args:
        settings: the server's settings, the only way in: home, database, artifacts and
            keys, and ``settings.server``'s groups, each handed to what it configures
            (``limits`` to the request guard, ``devices`` to check-in and the device
            credential cache, ``predict`` to cloud inference, ``telemetry_export`` and
            ``rollout_eval`` and ``alerts`` to the background loops, ``metrics`` to
            ``GET /metrics``).

    Returns:
        A FastAPI app; the registry opens in its lifespan, not here.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = _open_state(
            settings, server_metrics.count_delivery if server_metrics is not None else None
        )
        app.state.pocketml = state
        if server_metrics is not None:
            server_metrics.watch(state, _metrics_token(settings))
        logger.info(
            "pocketml server %s ready (home %s, database %s)",
            __version__,
            settings.home,
            state.registry_label,
        )
        evaluator = _start_rollout_evaluator(settings, state)
        exporter = _start_telemetry_exporter(settings, state)
        alert_loops = _start_alert_loops(settings, state)
        sample_purge = _start_sample_purge(state)
        loop_pass = _start_loop(settings, state)
        federated_pass = _start_federated(state)
        if settings.server.gc_freeze:
            # Startup leaves ~10^5 long-lived objects (routes, schemas, engines, modules);
            # every full collection would walk them all, a 20-60 ms pause that becomes
            # the p99 of predict. Frozen objects are still freed by reference counting.
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            if state.loop is not None:
                state.loop.request_stop()  # a running job ends at its next step
            await _stop_background(loop_pass)
            await _stop_background(evaluator)
            for loop in alert_loops:
                await _stop_background(loop)
            await _stop_background(exporter)  # its last pass flushes to Parquet
            await _stop_background(sample_purge)
            await _stop_background(federated_pass)
            if server_metrics is not None:
                server_metrics.unwatch()
            await state.serving.close()
            state.registry.close()

    app = PocketMLApp(  # a FastAPI that answers predict and telemetry before its stack
        limits=Limits.from_settings(settings.server.limits),
        title="pocketml",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
        responses={},
    )
    server_metrics = (
        ServerMetrics(settings.server.metrics) if settings.server.metrics.enabled else None
    )
    app.metrics = server_metrics  # counted in PocketMLApp.__call__, served by GET /metrics
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    app.include_router(system.router)
    app.include_router(admin.router)
    app.include_router(packages.router)
    app.include_router(device.router)
    app.include_router(predict.router)
    app.include_router(telemetry.router)
    app.include_router(device_admin.router)
    app.include_router(rollouts.router)
    app.include_router(monitor.router)
    app.include_router(alerts.router)
    app.include_router(loop.router)
    app.include_router(ui.router)
    app.include_router(samples.router)
    app.include_router(federated.router)
    if server_metrics is not None:
        app.include_router(metrics.router)
    install_openapi(app)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory``: settings from ``POCKETML_*`` variables.

    Returns:
        ``create_app(load_settings())``.

    Raises:
        InvalidInput: a ``POCKETML_*`` variable is not valid (named in the message).
    """
    return create_app(load_settings())
