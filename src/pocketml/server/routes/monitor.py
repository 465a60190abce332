"""Monitor routes: ``GET /v1/admin/models/{name}/drift`` and ``.../accuracy``.

Thin: parse the query (a window as seconds or ``24h``, group dimensions as a comma list),
call ``MonitorService`` in a worker thread, validate its report into the response model.
A bad query value answers 422 naming the parameter; a model, version or profile that does
not exist answers 404.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import AfterValidator

from pocketml.bounds import check_text
from pocketml.errors import InvalidInput, ValidationFailed
from pocketml.monitor import check_group_by, parse_window
from pocketml.registry import Principal
from pocketml.server._state import ServerState, server_state
from pocketml.server.auth import require_admin
from pocketml.server.routes._body import StrictJsonRoute
from pocketml.server.routes._docs import ERRORS_AUTH, errors
from pocketml.server.routes._params import ModelName
from pocketml.server.schemas_monitor import AccuracyReportPublic, DriftReportPublic

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin/models/{name}", tags=["monitor"], route_class=StrictJsonRoute)

_Checked = AfterValidator(check_text)
Version = Annotated[
    int | None,
    Query(
        ge=1,
        le=2_147_483_647,
        description="The version (default: production, else the "
        "newest version with sketches in the window).",
    ),
]
Window = Annotated[
    str,
    Query(
        max_length=16,
        description="Seconds, or a number with a unit: 90m, 24h, 7d (1h..90d).",
        examples=["24h"],
    ),
    _Checked,
]
Until = Annotated[
    float | None,
    Query(ge=0, le=4_102_444_800, description="The window's end, unix seconds (default: now)."),
]
DeviceClass = Annotated[
    str | None, Query(max_length=64, description="Only this device class."), _Checked
]
AppVersion = Annotated[
    str | None, Query(max_length=64, description="Only this app version."), _Checked
]
GroupBy = Annotated[
    str,
    Query(
        max_length=64,
        description="Comma list of device_class, app_version; empty for the fleet only.",
    ),
    _Checked,
]


def _group_by(text: str) -> tuple[str, ...]:
    try:
        return check_group_by(part.strip() for part in text.split(",") if part.strip())
    except InvalidInput as exc:
        raise ValidationFailed(f"query parameter 'group_by': {exc}") from exc


def _window(text: str) -> int:
    try:
        return parse_window(text)
    except InvalidInput as exc:
        raise ValidationFailed(f"query parameter 'window': {exc}") from exc


@router.get(
    "/drift",
    response_model=DriftReportPublic,
    summary="Input drift of a model version",
    description=(
        "Drift of the version's inputs, predictions and confidence over the window, from "
        "the sketches devices sent: for the fleet and per group, every feature's reference "
        "and current histograms (counts, bin labels and edges), score, p-value, threshold "
        "and state (`drift`, `no_drift`, or `not_enough_data` below 50 rows), the dataset "
        "decision after Benjamini-Hochberg and the share of drifted features, and a series "
        "(at most 48 points) against the reference profile. `baseline=previous` tests each "
        "group against the window just before instead of the reference."
    ),
    responses=errors(*ERRORS_AUTH, 404, 422),
)
async def drift(
    name: ModelName,
    version: Version = None,
    window: Window = "24h",
    until: Until = None,
    device_class: DeviceClass = None,
    app_version: AppVersion = None,
    group_by: GroupBy = "device_class",
    baseline: Literal["reference", "previous"] = Query(
        "reference", description="Test against the reference profile or the previous window."
    ),
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> DriftReportPublic:
    """The drift report of one model version."""
    window_s, dims = _window(window), _group_by(group_by)
    report = await run_in_threadpool(
        lambda: state.monitor.drift(
            principal.app_id,
            name,
            version=version,
            window_s=window_s,
            until=until,
            device_class=device_class,
            app_version=app_version,
            group_by=dims,
            baseline=baseline,
        )
    )
    return DriftReportPublic.model_validate(report)


@router.get(
    "/accuracy",
    response_model=AccuracyReportPublic,
    summary="Estimated and realised accuracy of a model version",
    description=(
        "Label-free accuracy estimated from the confidence histograms devices sent and the "
        "version's calibration table, beside realised accuracy from feedback labels (95 % "
        "intervals), for the fleet and per group, with `concept_drift` when each value lies "
        "outside the other's interval, and a series over the window. Feedback carries no app "
        "version: grouped or filtered by it, realised accuracy is null with a reason."
    ),
    responses=errors(*ERRORS_AUTH, 404, 422),
)
async def accuracy(
    name: ModelName,
    version: Version = None,
    window: Window = "24h",
    until: Until = None,
    device_class: DeviceClass = None,
    app_version: AppVersion = None,
    group_by: GroupBy = "device_class",
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> AccuracyReportPublic:
    """The accuracy report of one model version."""
    window_s, dims = _window(window), _group_by(group_by)
    report = await run_in_threadpool(
        lambda: state.monitor.accuracy(
            principal.app_id,
            name,
            version=version,
            window_s=window_s,
            until=until,
            device_class=device_class,
            app_version=app_version,
            group_by=dims,
        )
    )
    return AccuracyReportPublic.model_validate(report)
