"""Console pages of the learn half: fleet, telemetry, drift, accuracy, alerts (with the
acknowledge action) and the loop's retraining jobs.

Thin like the API routes: each page calls the service the matching API route calls
(``telemetry.model_metrics``, ``monitor.drift`` / ``accuracy``, ``alert_service``,
``loop_service``) for the session's app, so its numbers are the API's; the charts are
drawn by ``_svg`` from those same values. Federated tasks get no page yet: no federated
service is on the server.
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import AfterValidator

from pocketml.bounds import check_text
from pocketml.errors import InvalidInput, NotFound, PocketMLError, ValidationFailed
from pocketml.monitor import DriftReport, FeatureReport, GroupDrift, parse_window
from pocketml.server._state import ServerState, server_state
from pocketml.server.console._common import (
    CSRF_REFUSED,
    Console,
    Session,
    actor_of,
    check_csrf,
    error_page,
    page,
    pocketml_error_page,
)
from pocketml.server.console._learn_views import (
    accuracy_chart,
    blocks_of,
    bucket_width,
    drift_series_charts,
    feature_histogram,
    feature_score_chart,
    feature_spark,
    telemetry_view,
)
from pocketml.server.console._svg import bars
from pocketml.server.routes import ModelName, StrictJsonRoute

__all__ = ["router"]

router = APIRouter(route_class=StrictJsonRoute)

DAY = 86_400
_Checked = AfterValidator(check_text)
Days = Annotated[int, Query(ge=1, le=90, description="Days back from now.")]
Window = Annotated[str, Query(max_length=16), _Checked]
Until = Annotated[float | None, Query(ge=0, le=4_102_444_800)]
Version = Annotated[int | None, Query(ge=1, le=2_147_483_647)]
Feature = Annotated[str, PathParam(min_length=1, max_length=128), _Checked]
AlertId = Annotated[str, PathParam(min_length=1, max_length=40), _Checked]


@router.get("/fleet", response_class=HTMLResponse)
def fleet_page(
    request: Request,
    session: Console,
    days: Days = 7,
    state: ServerState = Depends(server_state),
) -> Response:
    """Devices per version, variant, device class and app version; sync and downloads."""
    until = state.telemetry.clock()
    try:
        summary = state.telemetry.fleet(session.app_id, until - days * DAY, until)
    except PocketMLError as exc:
        return pocketml_error_page(request, session, exc)
    charts = {}
    if summary.events:
        charts = {
            "device_classes": bars(
                "Devices per device class", [(k, d) for k, d, _ in summary.device_classes]
            ),
            "versions": bars("Devices per model version", [(k, d) for k, d, _ in summary.versions]),
        }
    return page(
        request,
        "fleet.html",
        session,
        days=days,
        summary=summary,
        charts=charts,
    )


@router.get("/telemetry", response_class=HTMLResponse)
def telemetry_page(
    request: Request,
    session: Console,
    model: Annotated[str | None, Query(max_length=64), _Checked] = None,
    days: Days = 7,
    state: ServerState = Depends(server_state),
) -> Response:
    """Latency, errors, cloud and fallback shares and accuracy over time for one model."""
    try:
        models = state.registry.list_models(session.app_id, limit=500).items
        if model:
            state.registry.get_model(session.app_id, model)
    except PocketMLError as exc:
        return pocketml_error_page(request, session, exc)
    names = [m.name for m in models]
    chosen = model or (names[0] if names else None)
    view = None
    if chosen is not None:
        window = days * DAY
        bucket = bucket_width(window)
        until = math.ceil(state.telemetry.clock() / bucket) * bucket
        view = telemetry_view(
            lambda since, end, step: state.telemetry.model_window(
                session.app_id, chosen, since, end, step
            ),
            until - window,
            until,
        )
    return page(
        request, "telemetry.html", session, models=names, model=chosen, days=days, view=view
    )


def _window(text: str) -> int:
    """The window in seconds, as the monitor API parses it (a bad one: the 422 page)."""
    try:
        return parse_window(text)
    except InvalidInput as exc:
        raise ValidationFailed(f"query parameter 'window': {exc}") from exc


def _nothing_yet(
    request: Request,
    session: Session,
    template: str,
    model: str,
    window: str,
    until: float | None,
    version: int | None,
    exc: NotFound,
) -> Response:
    """The model is the app's but the monitor has nothing to report: say why, status 200."""
    return page(
        request,
        template,
        session,
        model=model,
        report=None,
        empty=str(exc),
        query={"window": window, "until": until, "version": version},
    )


@router.get("/models/{name}/drift", response_class=HTMLResponse)
def drift_page(
    request: Request,
    session: Console,
    name: ModelName,
    window: Window = "24h",
    until: Until = None,
    version: Version = None,
    over_time: Annotated[bool, Query(description="Also test every bucket (slower).")] = False,
    state: ServerState = Depends(server_state),
) -> Response:
    """Per feature: the decision, score and histograms; the fleet's drift over time on
    request (``over_time=1``): the series tests every block in each of up to 48 buckets,
    most of a report's cost (2.8 s instead of 0.6 s with 100 features)."""
    window_s = _window(window)
    try:
        state.registry.get_model(session.app_id, name)
    except PocketMLError as exc:  # another app's model, or none: a 404 page
        return pocketml_error_page(request, session, exc)
    try:
        report = state.monitor.drift(
            session.app_id,
            name,
            version=version,
            window_s=window_s,
            until=until,
            series=over_time,
        )
    except NotFound as exc:
        return _nothing_yet(request, session, "drift.html", name, window, until, version, exc)
    except PocketMLError as exc:
        return pocketml_error_page(request, session, exc)
    blocks = blocks_of(report.fleet)
    sparks = {
        b.name: feature_spark(b.name, b.histogram.reference, b.histogram.current) for b in blocks
    }
    return page(
        request,
        "drift.html",
        session,
        model=name,
        report=report,
        blocks=blocks,
        sparks=sparks,
        charts=drift_series_charts(report.series),
        over_time=over_time,
        query={"window": window, "until": until, "version": version},
    )


HISTORY_POINTS = 12
"""Sub-windows of a feature's score history (each is what a fleet-only drift report of
that sub-window says, from one read: ``MonitorService.fleet_series``)."""


def _feature_history(
    state: ServerState, app_id: str, report: DriftReport, feature: str
) -> list[tuple[float, FeatureReport | None]]:
    """The feature's test in each of up to ``HISTORY_POINTS`` equal sub-windows (>= 1 h)
    of the report's window: what ``GET .../drift?window=<step>&until=<end>&group_by=``
    answers for each."""
    span = report.until - report.since
    step = max(3600, span // HISTORY_POINTS // 3600 * 3600)
    window = (span // step) * step
    buckets = state.monitor.fleet_series(
        app_id,
        report.model,
        version=report.version,
        window_s=window,
        until=report.until,
        step_s=step,
    )
    points: list[tuple[float, FeatureReport | None]] = []
    for _, end, fleet in buckets:
        block = next((b for b in blocks_of(fleet) if b.name == feature), None)
        points.append((end - step / 2, block))
    return points


@router.get("/models/{name}/drift/{feature}", response_class=HTMLResponse)
def drift_feature_page(
    request: Request,
    session: Console,
    name: ModelName,
    feature: Feature,
    window: Window = "24h",
    until: Until = None,
    version: Version = None,
    over_time: Annotated[bool, Query(description="Also the score per sub-window.")] = False,
    state: ServerState = Depends(server_state),
) -> Response:
    """One feature: reference vs current histograms for the fleet and each group, and on
    request (``over_time=1``) its score in each of 12 sub-windows (12 more reports)."""
    window_s = _window(window)
    try:
        report = state.monitor.drift(
            session.app_id, name, version=version, window_s=window_s, until=until, series=False
        )
        groups = []
        for group in (report.fleet, *report.groups):
            block = next((b for b in blocks_of(group) if b.name == feature), None)
            if block is None:
                continue
            label = "fleet" if group is report.fleet else _group_label(group)
            chart = feature_histogram(
                f"{feature} ({label})",
                block.histogram.labels,
                block.histogram.reference,
                block.histogram.current,
            )
            groups.append((label, group, block, chart))
        if not groups:
            raise NotFound(f"model {name!r} v{report.version} has no feature {feature!r}.")
        history = _feature_history(state, session.app_id, report, feature) if over_time else []
    except PocketMLError as exc:
        return pocketml_error_page(request, session, exc)
    return page(
        request,
        "drift_feature.html",
        session,
        model=name,
        feature=feature,
        report=report,
        groups=groups,
        over_time=over_time,
        history=history,
        history_chart=feature_score_chart(feature, history) if history else None,
        query={"window": window, "until": until, "version": version},
    )


def _group_label(group: GroupDrift) -> str:
    return " ".join(value or "(none)" for value in group.labels.values()) or "fleet"


@router.get("/models/{name}/accuracy", response_class=HTMLResponse)
def accuracy_page(
    request: Request,
    session: Console,
    name: ModelName,
    window: Window = "24h",
    until: Until = None,
    version: Version = None,
    state: ServerState = Depends(server_state),
) -> Response:
    """Estimated (label-free) vs realised (feedback) accuracy, per group and over time."""
    window_s = _window(window)
    try:
        state.registry.get_model(session.app_id, name)
    except PocketMLError as exc:  # another app's model, or none: a 404 page
        return pocketml_error_page(request, session, exc)
    try:
        report = state.monitor.accuracy(
            session.app_id, name, version=version, window_s=window_s, until=until
        )
    except NotFound as exc:
        return _nothing_yet(request, session, "accuracy.html", name, window, until, version, exc)
    except PocketMLError as exc:
        return pocketml_error_page(request, session, exc)
    return page(
        request,
        "accuracy.html",
        session,
        model=name,
        report=report,
        chart=accuracy_chart(report.series, report.reference_accuracy),
        query={"window": window, "until": until, "version": version},
    )


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request,
    session: Console,
    acked: Annotated[str | None, Query(max_length=40), _Checked] = None,
    state: ServerState = Depends(server_state),
) -> Response:
    """Firing, acknowledged and resolved alerts (newest first), with the ack action."""
    alerts = state.alert_service.list_alerts(session.app_id, limit=200)
    firing = [a for a in alerts if a.state in ("firing", "pending") and a.acked_at is None]
    acknowledged = [a for a in alerts if a.state in ("firing", "pending") and a.acked_at]
    resolved = [a for a in alerts if a.state not in ("firing", "pending")]
    return page(
        request,
        "alerts.html",
        session,
        firing=firing,
        acknowledged=acknowledged,
        resolved=resolved,
        notice=f"Alert {acked} acknowledged: its notifications are silenced." if acked else None,
    )


@router.post("/alerts/{alert_id}/ack", response_class=HTMLResponse)
def ack_alert(
    request: Request,
    session: Console,
    alert_id: AlertId,
    csrf: Annotated[str, Form(max_length=128)] = "",
    state: ServerState = Depends(server_state),
) -> Response:
    """Acknowledge one alert: the API's ``AlertService.ack`` with the API's actor (audited)."""
    if not check_csrf(request, session, csrf):
        return error_page(request, session, 403, CSRF_REFUSED)
    try:
        state.alert_service.ack(session.app_id, alert_id, actor=actor_of(session))
    except PocketMLError as exc:
        return pocketml_error_page(request, session, exc)
    return RedirectResponse(f"/ui/alerts?acked={alert_id}", status_code=303)


@router.get("/loop", response_class=HTMLResponse)
def loop_page(
    request: Request,
    session: Console,
    state: ServerState = Depends(server_state),
) -> Response:
    """Retraining jobs, newest first: state, step, gate verdict and candidate version."""
    jobs = state.loop_service.list_jobs(session.app_id, limit=50)
    return page(request, "loop.html", session, jobs=jobs)
