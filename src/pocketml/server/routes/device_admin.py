"""Admin routes of the device side: version policies, model metrics, serving counters.

- ``GET|PUT /v1/admin/models/{name}/versions/{version}/policy``: hybrid and download
  policy of one version (defaults + stored overrides);
- ``GET /v1/admin/models/{name}/metrics``: aggregates per (version, device class);
- ``GET /v1/admin/serving/stats``: micro-batching counters of the app's served models.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.concurrency import run_in_threadpool

from pocketml.delivery import VersionPolicy
from pocketml.errors import InvalidInput
from pocketml.protocol import CapturePolicy
from pocketml.registry import Principal
from pocketml.server._state import ServerState, server_state
from pocketml.server.auth import require_admin
from pocketml.server.routes._body import StrictJsonRoute
from pocketml.server.routes._docs import ERRORS_AUTH, errors
from pocketml.server.routes._params import ModelName
from pocketml.server.schemas_device import MetricsGroup, MetricsPublic, PolicyPublic, PolicyUpdate

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin", tags=["device admin"], route_class=StrictJsonRoute)

VERSION = Path(ge=1, le=2_147_483_647, description="The version number.", examples=[1])


def _policy_public(policy: VersionPolicy) -> PolicyPublic:
    return PolicyPublic.model_validate(
        {
            "model": policy.model,
            "version": policy.version,
            "hybrid": policy.hybrid.to_dict(policy.model),
            "download": policy.download.to_dict(),
            "monitor": policy.monitor.to_dict(),
            "capture": policy.capture.to_dict(),
        }
    )


@router.get(
    "/models/{name}/versions/{version}/policy",
    response_model=PolicyPublic,
    summary="Show a version's policy",
    description="The effective hybrid and download policy (defaults + stored overrides).",
    responses=errors(*ERRORS_AUTH, 404, 422),
)
def get_policy(
    name: ModelName,
    version: int = VERSION,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> PolicyPublic:
    """Show one version's policy."""
    return _policy_public(state.delivery.get_policy(principal.app_id, name, version))


@router.put(
    "/models/{name}/versions/{version}/policy",
    response_model=PolicyPublic,
    summary="Set a version's policy",
    description=(
        "Overrides the hybrid policy (mode local|cloud|cascade, threshold in [0, 1], "
        "timeout_ms 50..60000, max_retries 0..10) and/or the download policy (wifi_only, "
        "charging_only, max_cellular_bytes >= 0) and/or the monitor policy (enabled, "
        "window_s 60..86400, max_rows, epsilon_per_day 0.001..100) and/or the capture "
        "policy (enabled, rate, when, budget, wifi_only, retention_days; docs/loop.md) of "
        "one version. A section given replaces that section's stored overrides; fields "
        "left out take the defaults. Devices see the change at their next check-in."
    ),
    responses=errors(*ERRORS_AUTH, 404, 422),
)
def put_policy(
    body: PolicyUpdate,
    name: ModelName,
    version: int = VERSION,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> PolicyPublic:
    """Store a version's policy overrides."""
    hybrid = body.hybrid.model_dump(exclude_none=True) if body.hybrid is not None else None
    download = body.download.model_dump(exclude_none=True) if body.download is not None else None
    monitor = body.monitor.model_dump(exclude_none=True) if body.monitor is not None else None
    capture = None
    if body.capture is not None:
        capture = body.capture.model_dump(exclude_none=True)
        CapturePolicy.from_dict(capture)  # the protocol's own check (bin lists, bounds)
    policy = state.delivery.set_policy(
        principal.app_id,
        name,
        version,
        hybrid=hybrid,
        download=download,
        monitor=monitor,
        capture=capture,
    )
    return _policy_public(policy)


@router.get(
    "/models/{name}/metrics",
    response_model=MetricsPublic,
    summary="Model metrics from telemetry",
    description=(
        "Per (version, device class) over events with since <= ts < until: inference "
        "count, latency p50/p95 (ms; from a mergeable log-bucket sketch, within 1 % "
        "relative of the exact linear-interpolated percentile), error rate "
        "(errors / (inferences + errors)), cloud "
        "and fallback shares of inferences, mean confidence, and accuracy from label "
        "feedback joined on prediction_id (null without feedback)."
    ),
    responses=errors(*ERRORS_AUTH, 404, 422),
)
async def model_metrics(
    name: ModelName,
    since: float | None = Query(None, ge=0, description="Unix seconds, inclusive."),
    until: float | None = Query(None, ge=0, description="Unix seconds, exclusive."),
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> MetricsPublic:
    """Aggregate one model's telemetry."""
    if since is not None and until is not None and since >= until:
        raise InvalidInput(f"since must be before until; got since={since}, until={until}.")
    await run_in_threadpool(state.registry.get_model, principal.app_id, name)
    rows = await run_in_threadpool(
        lambda: state.telemetry.model_metrics(principal.app_id, name, since=since, until=until)
    )
    return MetricsPublic(
        model=name,
        since=since,
        until=until,
        groups=[MetricsGroup.model_validate(row.to_dict()) for row in rows],
    )


@router.get(
    "/serving/stats",
    summary="Micro-batching counters",
    description=(
        "Per served model of the caller's app: requests, runtime calls (batches), batches "
        "that merged more than one request, and the largest batch seen, since start; "
        "`inline` says whether the model runs on the event loop (a model whose full batch "
        "takes under `predict_inline_max_ms`) or in the worker threads."
    ),
    responses=errors(*ERRORS_AUTH),
)
def serving_stats(
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> dict[str, Any]:
    """Batcher counters of this process."""
    return {name: asdict(stats) for name, stats in state.serving.stats(principal.app_id).items()}
