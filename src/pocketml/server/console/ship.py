"""Console pages of the ship half: overview, models, versions, comparison, rollouts,
experiments, the audit log, and the operator's actions on them.

Pages read through the same service calls as the admin API (``state.registry``,
``state.delivery.rollouts`` / ``.experiments``, ``state.telemetry``, the alert service),
so a page's numbers are the API's. Actions are POST forms behind a confirmation step
(a ``<details>`` block holding the confirm button) carrying the session's CSRF token;
they call the service method the API route calls, with the same actor
(``admin:<app id>``), so the audit log records them as it records the API's. A refused
CSRF token answers a 403 page and changes nothing; a refused action (a 409, a bad
promote) shows the page again with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pocketml.bounds import INT32_MAX
from pocketml.errors import InvalidInput, NotFound, PocketMLError
from pocketml.server._state import ServerState, server_state
from pocketml.server.console import _ship_views as views
from pocketml.server.console._common import (
    CSRF_REFUSED,
    Console,
    Session,
    actor_of,
    check_csrf,
    error_page,
    page,
    pocketml_error_page,
    render_markdown,
)
from pocketml.server.errors import status_for
from pocketml.server.routes import (
    AuditSubject,
    ExperimentId,
    ModelName,
    NamePrefix,
    RolloutId,
    StrictJsonRoute,
)
from pocketml.telemetry import MetricsRow, aggregate_events

__all__ = ["router"]

router = APIRouter(route_class=StrictJsonRoute)

VersionNumber = Annotated[int, PathParam(ge=1, le=INT32_MAX)]
VERSIONS_PER_PAGE = 50
MODELS_PER_PAGE = 50
AUDIT_LIMIT = 200
DAY_S = 86_400.0
Stage = Literal["candidate", "production", "archived"]
RolloutMove = Literal["advance", "pause", "resume", "rollback", "complete"]

# What a finished action says on the page it returns to (a fixed text per code, so a
# crafted link cannot make the console display words of its choosing).
NOTICES = {
    "staged": "The stage was changed.",
    "advance": "The rollout moved to its next step.",
    "pause": "The rollout is paused: devices keep what they have, no new step starts.",
    "resume": "The rollout is running again.",
    "rollback": "The rollout was rolled back: devices return to the control version.",
    "complete": "The rollout is complete: the candidate is in production.",
    "stopped": "The experiment was stopped.",
}


def _notice(code: str | None) -> str | None:
    return NOTICES.get(code or "")


def _model_path(name: str) -> str:
    return f"/ui/models/{quote(name, safe='')}"


# -- overview ------------------------------------------------------------------------------


@router.get("/overview", response_class=HTMLResponse)
def overview_page(
    request: Request,
    session: Console,
    offset: int = Query(0, ge=0, le=1_000_000),
    state: ServerState = Depends(server_state),
) -> Response:
    """Every model at a glance: what is in production, what is moving, how it runs."""
    app_id = session.app_id
    try:
        app = state.registry.get_app(app_id)
        listing = state.registry.list_models(app_id, limit=MODELS_PER_PAGE, offset=offset)
        rollouts = state.delivery.rollouts.list_rollouts(app_id, active_only=True)
        experiments = state.delivery.experiments.list_experiments(app_id, running_only=True)
        firing: dict[str, int] | None = None
        if state.alerts is not None:
            firing = {}
            for alert in state.alerts.list_alerts(app_id, states=["firing"], limit=1000):
                firing[alert.model] = firing.get(alert.model, 0) + 1
        now = state.telemetry.clock()
        since = now - DAY_S
        fleet = state.telemetry.fleet(app_id, since, now)
        on_version = {key: devices for key, devices, _ in fleet.versions}
        rows = [
            views.OverviewRow(
                name=m.name,
                production_version=m.production_version,
                latest_version=m.latest_version,
                rollouts=tuple(r for r in rollouts if r.model == m.name),
                experiments=tuple(e for e in experiments if e.model == m.name),
                firing_alerts=None if firing is None else firing.get(m.name, 0),
                traffic=views.traffic(state.telemetry.model_metrics(app_id, m.name, since=since)),
                production_devices=on_version.get(f"{m.name} v{m.production_version}"),
            )
            for m in listing.items
        ]
    except PocketMLError as exc:
        return pocketml_error_page(request, session, exc)
    return page(
        request,
        "overview.html",
        session,
        app=app,
        rows=rows,
        total=listing.total,
        offset=offset,
        per_page=MODELS_PER_PAGE,
        rollouts=rollouts,
        experiments=experiments,
        firing_total=None if firing is None else sum(firing.values()),
        fleet_devices=fleet.devices,
    )


# -- models and versions ----------------------------------------------------------------


@router.get("/models", response_class=HTMLResponse)
def models_page(
    request: Request,
    session: Console,
    prefix: NamePrefix = None,
    offset: int = Query(0, ge=0, le=1_000_000),
    state: ServerState = Depends(server_state),
) -> Response:
    """The app's models and its signing keys."""
    try:
        app = state.registry.get_app(session.app_id)
        listing = state.registry.list_models(
            session.app_id, limit=MODELS_PER_PAGE, offset=offset, prefix=prefix or None
        )
    except PocketMLError as exc:
        return pocketml_error_page(request, session, exc)
    return page(
        request,
        "models.html",
        session,
        app=app,
        models=listing.items,
        total=listing.total,
        offset=offset,
        per_page=MODELS_PER_PAGE,
        prefix=prefix or "",
    )


@router.get("/models/{name}", response_class=HTMLResponse)
def model_page(
    request: Request,
    session: Console,
    name: ModelName,
    offset: int = Query(0, ge=0, le=10_000_000),
    notice: str | None = Query(None, max_length=32),
    state: ServerState = Depends(server_state),
) -> Response:
    """One model: versions (stage, rollout share), variants, lineage, schema."""
    return _model_view(request, session, state, name, offset, _notice(notice))


def _model_view(
    request: Request,
    session: Session,
    state: ServerState,
    name: str,
    offset: int = 0,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    app_id = session.app_id
    try:
        model = state.registry.get_model(app_id, name)
        versions = state.registry.list_versions(
            app_id, name, limit=VERSIONS_PER_PAGE, offset=offset
        )
        rollouts = [r for r in state.delivery.rollouts.list_rollouts(app_id) if r.model == name]
        experiments = [
            e for e in state.delivery.experiments.list_experiments(app_id) if e.model == name
        ]
        shown = model.production_version or model.latest_version
        featured = state.registry.get_version(app_id, name, shown) if shown else None
    except PocketMLError as exc:
        return pocketml_error_page(request, session, exc)
    return page(
        request,
        "model.html",
        session,
        status=status,
        model=model,
        versions=versions.items,
        total=versions.total,
        offset=offset,
        per_page=VERSIONS_PER_PAGE,
        shares=views.rollout_share(rollouts, name),
        rollouts=rollouts[:20],
        experiments=experiments[:20],
        featured=featured,
        grid=views.variant_grid(featured.variants) if featured else None,
        schema=views.schema_tables(model.schema),
        notice=notice,
        error=error,
    )


@router.get("/models/{name}/versions/{version}", response_class=HTMLResponse)
def version_page(
    request: Request,
    session: Console,
    name: ModelName,
    version: VersionNumber,
    notice: str | None = Query(None, max_length=32),
    state: ServerState = Depends(server_state),
) -> Response:
    """One version: lineage, variants, metrics, the rendered model card, stage actions."""
    return _version_view(request, session, state, name, version, notice=_notice(notice))


def _version_view(
    request: Request,
    session: Session,
    state: ServerState,
    name: str,
    version: int,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    try:
        info = state.registry.get_version(session.app_id, name, version)
        model = state.registry.get_model(session.app_id, name)
        rollouts = [
            r for r in state.delivery.rollouts.list_rollouts(session.app_id) if r.model == name
        ]
    except PocketMLError as exc:
        return pocketml_error_page(request, session, exc)
    return page(
        request,
        "version.html",
        session,
        status=status,
        model=model,
        version=info,
        shares=views.rollout_share(rollouts, name).get(version, []),
        rollouts=[r for r in rollouts if version in (r.candidate_version, r.control_version)][:20],
        lineage=views.lineage(info),
        metrics=views.flatten(info.metrics),
        params=views.flatten(info.params),
        grid=views.variant_grid(info.variants),
        card=render_markdown(info.card),
        notice=notice,
        error=error,
    )


@router.post("/models/{name}/versions/{version}/stage", response_class=HTMLResponse)
def change_stage(
    request: Request,
    session: Console,
    name: ModelName,
    version: VersionNumber,
    stage: Stage = Form(...),
    csrf: str = Form("", max_length=128),
    state: ServerState = Depends(server_state),
) -> Response:
    """Promote, demote or archive a version: the API's audited ``ModelAdmin.set_stage``."""
    if not check_csrf(request, session, csrf):
        return error_page(request, session, 403, CSRF_REFUSED)
    try:
        state.delivery.models.set_stage(
            session.app_id, name, version, stage, actor=actor_of(session)
        )
    except NotFound as exc:
        return pocketml_error_page(request, session, exc)
    except PocketMLError as exc:
        return _version_view(
            request, session, state, name, version, error=str(exc), status=status_for(exc)
        )
    return RedirectResponse(f"{_model_path(name)}/versions/{version}?notice=staged", 303)


def _metrics_of(
    state: ServerState, app_id: str, model: str, versions: tuple[int, int], since: float
) -> list[MetricsRow]:
    """The metrics API's groups (``TelemetryService.model_metrics``) of two versions only.

    The same aggregation over the same events, read for the two versions alone: each
    (version, device class) group is computed on its own, so its numbers are the API's,
    and the feedback join (most of the cost) is not paid for the other versions' events.
    """
    return aggregate_events(state.telemetry.store.events(app_id, model, since, None, versions))


@router.get("/models/{name}/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    session: Console,
    name: ModelName,
    a: int = Query(..., ge=1, le=INT32_MAX),
    b: int = Query(..., ge=1, le=INT32_MAX),
    days: int = Query(7, ge=1, le=90),
    state: ServerState = Depends(server_state),
) -> Response:
    """Two versions side by side: metrics, sizes, telemetry and variants per device class."""
    app_id = session.app_id
    try:
        left = state.registry.get_version(app_id, name, a)
        right = state.registry.get_version(app_id, name, b)
        rows = _metrics_of(state, app_id, name, (a, b), state.telemetry.clock() - days * DAY_S)
    except PocketMLError as exc:
        return pocketml_error_page(request, session, exc)
    by_class: dict[str, dict[int, MetricsRow]] = {}
    for row in rows:
        if row.version in (a, b):
            by_class.setdefault(row.device_class or "unknown", {})[row.version] = row
    chosen: dict[str, dict[int, list[str]]] = {}
    for info in (left, right):
        for variant in info.variants:
            for profile in variant.profiles:
                chosen.setdefault(profile, {}).setdefault(info.version, []).append(variant.name)
    return page(
        request,
        "compare.html",
        session,
        model=name,
        a=left,
        b=right,
        days=days,
        metrics=views.compare_metrics(left, right),
        sizes=views.compare_sizes(left, right),
        by_class=dict(sorted(by_class.items())),
        chosen=dict(sorted(chosen.items())),
    )


# -- rollouts ------------------------------------------------------------------------------


@router.get("/rollouts", response_class=HTMLResponse)
def rollouts_page(
    request: Request, session: Console, state: ServerState = Depends(server_state)
) -> Response:
    """The app's rollouts, newest first."""
    try:
        rollouts = state.delivery.rollouts.list_rollouts(session.app_id)
    except PocketMLError as exc:
        return pocketml_error_page(request, session, exc)
    return page(request, "rollouts.html", session, rollouts=rollouts)


@router.get("/rollouts/{rollout_id}", response_class=HTMLResponse)
def rollout_page(
    request: Request,
    session: Console,
    rollout_id: RolloutId,
    notice: str | None = Query(None, max_length=32),
    state: ServerState = Depends(server_state),
) -> Response:
    """One rollout: its steps, guardrails with their tests, its audit trail, actions."""
    return _rollout_view(request, session, state, rollout_id, notice=_notice(notice))


def _rollout_view(
    request: Request,
    session: Session,
    state: ServerState,
    rollout_id: str,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    from pocketml.delivery import TRANSITIONS

    service = state.delivery.rollouts
    try:
        rollout = service.get(session.app_id, rollout_id)
        trail = service.audit(session.app_id, subject=rollout_id, limit=AUDIT_LIMIT)
    except PocketMLError as exc:
        return pocketml_error_page(request, session, exc)
    evaluation = rollout.last_evaluation or {}
    actions = [a for a, (sources, _) in TRANSITIONS.items() if rollout.state in sources]
    if rollout.step >= len(rollout.schedule) - 1 and "advance" in actions:
        actions.remove("advance")
    return page(
        request,
        "rollout.html",
        session,
        status=status,
        rollout=rollout,
        guardrails=evaluation.get("guardrails") or [],
        evaluated_at=evaluation.get("at"),
        trail=list(reversed(trail)),
        reached=views.step_times(rollout, trail),
        actions=actions,
        notice=notice,
        error=error,
    )


@router.post("/rollouts/{rollout_id}/{action}", response_class=HTMLResponse)
def move_rollout(
    request: Request,
    session: Console,
    rollout_id: RolloutId,
    action: RolloutMove,
    csrf: str = Form("", max_length=128),
    reason: str = Form("", max_length=500),
    state: ServerState = Depends(server_state),
) -> Response:
    """Advance, pause, resume, roll back or complete: the API's ``transition``."""
    if not check_csrf(request, session, csrf):
        return error_page(request, session, 403, CSRF_REFUSED)
    try:
        state.delivery.rollouts.transition(
            session.app_id, rollout_id, action, actor=actor_of(session), reason=reason.strip()
        )
    except NotFound as exc:
        return pocketml_error_page(request, session, exc)
    except PocketMLError as exc:
        return _rollout_view(
            request, session, state, rollout_id, error=str(exc), status=status_for(exc)
        )
    return RedirectResponse(f"/ui/rollouts/{quote(rollout_id, safe='')}?notice={action}", 303)


# -- experiments ---------------------------------------------------------------------------


@router.get("/experiments", response_class=HTMLResponse)
def experiments_page(
    request: Request, session: Console, state: ServerState = Depends(server_state)
) -> Response:
    """The app's experiments with their results, newest first."""
    service = state.delivery.experiments
    try:
        results = [
            service.results(session.app_id, e.id)
            for e in service.list_experiments(session.app_id)[:50]
        ]
    except PocketMLError as exc:
        return pocketml_error_page(request, session, exc)
    return page(request, "experiments.html", session, results=results)


@router.get("/experiments/{experiment_id}", response_class=HTMLResponse)
def experiment_page(
    request: Request,
    session: Console,
    experiment_id: ExperimentId,
    notice: str | None = Query(None, max_length=32),
    state: ServerState = Depends(server_state),
) -> Response:
    """One experiment: per arm the sample, the value, the difference and its 95 % CI."""
    return _experiment_view(request, session, state, experiment_id, notice=_notice(notice))


def _experiment_view(
    request: Request,
    session: Session,
    state: ServerState,
    experiment_id: str,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    try:
        results = state.delivery.experiments.results(session.app_id, experiment_id)
        trail = state.delivery.rollouts.audit(
            session.app_id, subject=experiment_id, limit=AUDIT_LIMIT
        )
    except PocketMLError as exc:
        return pocketml_error_page(request, session, exc)
    weights = {a.version: a.weight for a in results.experiment.arms}
    return page(
        request,
        "experiment.html",
        session,
        status=status,
        results=results,
        experiment=results.experiment,
        suggested=results.winner(),
        weights=weights,
        total_weight=sum(weights.values()),
        trail=list(reversed(trail)),
        notice=notice,
        error=error,
    )


def _promote_choice(text: str) -> int | str | None:
    text = text.strip()
    if not text:
        return None
    if text == "winner":
        return text
    if text.isdigit() and len(text) <= 10:
        return int(text)
    raise InvalidInput(f"promote must be empty, 'winner' or an arm's version; got {text!r}.")


@router.post("/experiments/{experiment_id}/stop", response_class=HTMLResponse)
def stop_experiment(
    request: Request,
    session: Console,
    experiment_id: ExperimentId,
    csrf: str = Form("", max_length=128),
    promote: str = Form("", max_length=16),
    reason: str = Form("", max_length=500),
    state: ServerState = Depends(server_state),
) -> Response:
    """Stop an experiment, optionally promoting an arm: the API's ``stop``."""
    if not check_csrf(request, session, csrf):
        return error_page(request, session, 403, CSRF_REFUSED)
    try:
        state.delivery.experiments.stop(
            session.app_id,
            experiment_id,
            promote=_promote_choice(promote),
            actor=actor_of(session),
            reason=reason.strip(),
        )
    except InvalidInput as exc:  # 422, as the API answers a bad promote
        return _experiment_view(request, session, state, experiment_id, error=str(exc), status=422)
    except NotFound as exc:
        return pocketml_error_page(request, session, exc)
    except PocketMLError as exc:
        return _experiment_view(
            request, session, state, experiment_id, error=str(exc), status=status_for(exc)
        )
    return RedirectResponse(f"/ui/experiments/{quote(experiment_id, safe='')}?notice=stopped", 303)


# -- audit ---------------------------------------------------------------------------------


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    session: Console,
    subject: AuditSubject = None,
    state: ServerState = Depends(server_state),
) -> Response:
    """The app's audit log, newest first, optionally of one subject."""
    try:
        entries = state.delivery.rollouts.audit(
            session.app_id, subject=subject or None, limit=AUDIT_LIMIT
        )
    except PocketMLError as exc:
        return pocketml_error_page(request, session, exc)
    link: Callable[[str, str], str | None] = views.audit_link
    return page(
        request,
        "audit.html",
        session,
        entries=entries,
        subject=subject or "",
        limit=AUDIT_LIMIT,
        link=link,
    )
