"""Admin routes of staged rollouts, A/B experiments, channel targeting and the audit log.

- ``POST /v1/admin/rollouts`` start; ``GET /v1/admin/rollouts[/{id}]`` list / show with
  the latest guardrail numbers; ``POST /v1/admin/rollouts/{id}/{action}`` for advance,
  pause, resume, rollback, complete;
- ``GET|PUT /v1/admin/models/{name}/targeting``: the production channel's rules;
- ``POST /v1/admin/experiments`` start; ``GET /v1/admin/experiments[/{id}]`` results per
  arm (difference from the control, 95 % CI, sample sizes); ``POST .../{id}/stop``;
- ``GET /v1/admin/audit``: every rollout and experiment transition (who or what, when, why).

Thin: parse, call one ``RolloutService`` method, map the frozen dataclass.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from fastapi import APIRouter, Depends, Query

from pocketml.delivery import ExperimentResults, Rollout
from pocketml.errors import InvalidInput, ValidationFailed
from pocketml.registry import Principal
from pocketml.server._state import ServerState, server_state
from pocketml.server.auth import require_admin
from pocketml.server.routes._body import StrictJsonRoute
from pocketml.server.routes._docs import ERRORS_AUTH, errors
from pocketml.server.routes._params import AuditSubject, ExperimentId, ModelName, RolloutId
from pocketml.server.schemas_rollouts import (
    ArmResultPublic,
    AuditEntryPublic,
    AuditPage,
    ExperimentCreate,
    ExperimentList,
    ExperimentPublic,
    ExperimentStop,
    GuardrailPublic,
    RolloutAction,
    RolloutCreate,
    RolloutList,
    RolloutPublic,
    TargetingPublic,
    TargetingUpdate,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin", tags=["rollouts"], route_class=StrictJsonRoute)

Action = Literal["advance", "pause", "resume", "rollback", "complete"]


def _public(rollout: Rollout) -> RolloutPublic:
    data = asdict(rollout)
    evaluation = data.pop("last_evaluation") or {}
    for private in ("salt", "app_id", "model_id"):
        data.pop(private)
    data["metrics"] = [GuardrailPublic(**g) for g in evaluation.get("guardrails", [])]
    data["evaluated_at"] = evaluation.get("at")
    return RolloutPublic.model_validate(data)


@router.post(
    "/rollouts",
    status_code=201,
    response_model=RolloutPublic,
    summary="Start a staged rollout",
    responses=errors(*ERRORS_AUTH, 404, 409, 422),
)
def create_rollout(
    body: RolloutCreate,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> RolloutPublic:
    """Start a rollout of ``body.version`` at the schedule's first percent."""
    try:
        rollout = state.delivery.rollouts.create(
            principal.app_id,
            body.model,
            body.version,
            schedule=body.schedule,
            channel=body.channel,
            min_dwell_s=body.min_dwell_s,
            min_samples=body.min_samples,
            on_breach=body.on_breach,
            guardrails=body.guardrails,
            targeting=body.targeting,
            actor=f"admin:{principal.app_id}",
        )
    except InvalidInput as exc:
        raise ValidationFailed.of(exc) from exc
    return _public(rollout)


@router.get("/rollouts", response_model=RolloutList, summary="List rollouts")
def list_rollouts(
    active: bool = Query(False, description="Only running and paused rollouts."),
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> RolloutList:
    """The app's rollouts, newest first, with their latest guardrail numbers."""
    items = state.delivery.rollouts.list_rollouts(principal.app_id, active_only=active)
    return RolloutList(items=[_public(r) for r in items])


@router.get(
    "/rollouts/{rollout_id}",
    response_model=RolloutPublic,
    summary="Show a rollout",
    responses=errors(*ERRORS_AUTH, 404),
)
def show_rollout(
    rollout_id: RolloutId,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> RolloutPublic:
    """One rollout with its latest guardrail numbers."""
    return _public(state.delivery.rollouts.get(principal.app_id, rollout_id))


@router.post(
    "/rollouts/{rollout_id}/{action}",
    response_model=RolloutPublic,
    summary="Advance, pause, resume, roll back or complete a rollout",
    responses=errors(*ERRORS_AUTH, 404, 409),
)
def move_rollout(
    action: Action,
    rollout_id: RolloutId,
    body: RolloutAction | None = None,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> RolloutPublic:
    """Apply one state-machine transition (409 naming the state when illegal)."""
    rollout = state.delivery.rollouts.transition(
        principal.app_id,
        rollout_id,
        action,
        actor=f"admin:{principal.app_id}",
        reason=body.reason if body is not None else "",
    )
    return _public(rollout)


@router.get(
    "/models/{name}/targeting",
    response_model=TargetingPublic,
    summary="Show a model's targeting",
    responses=errors(*ERRORS_AUTH, 404),
)
def show_targeting(
    name: ModelName,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> TargetingPublic:
    """The production channel's targeting rules (``[]``: every device)."""
    targeting = state.delivery.rollouts.get_targeting(principal.app_id, name)
    return TargetingPublic(model=name, channel="production", rules=targeting.to_list())


@router.put(
    "/models/{name}/targeting",
    response_model=TargetingPublic,
    summary="Replace a model's targeting",
    responses=errors(*ERRORS_AUTH, 404, 422),
)
def set_targeting(
    body: TargetingUpdate,
    name: ModelName,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> TargetingPublic:
    """Devices outside the rules get no version of the model at check-in."""
    try:
        targeting = state.delivery.rollouts.set_targeting(principal.app_id, name, body.rules)
    except InvalidInput as exc:
        raise ValidationFailed.of(exc) from exc
    return TargetingPublic(model=name, channel="production", rules=targeting.to_list())


@router.get("/audit", response_model=AuditPage, summary="The audit log of rollouts")
def list_audit(
    subject: AuditSubject = None,
    limit: int = Query(100, ge=1, le=1000),
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> AuditPage:
    """Newest transitions first: who or what, when, why, and the numbers."""
    entries = state.delivery.rollouts.audit(principal.app_id, subject=subject, limit=limit)
    return AuditPage(items=[AuditEntryPublic.model_validate(asdict(e)) for e in entries])


def _experiment_public(results: ExperimentResults) -> ExperimentPublic:
    experiment = results.experiment
    weights = {a.version: a.weight for a in experiment.arms}
    return ExperimentPublic(
        id=experiment.id,
        model=experiment.model,
        channel=experiment.channel,
        state=experiment.state,
        metric=experiment.metric,
        winner=experiment.winner,
        suggested_winner=results.winner(),
        created_by=experiment.created_by,
        created_at=experiment.created_at,
        updated_at=experiment.updated_at,
        arms=[ArmResultPublic(weight=weights[a.version], **asdict(a)) for a in results.arms],
    )


@router.post(
    "/experiments",
    status_code=201,
    response_model=ExperimentPublic,
    summary="Start an A/B experiment",
    responses=errors(*ERRORS_AUTH, 404, 409, 422),
)
def create_experiment(
    body: ExperimentCreate,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> ExperimentPublic:
    """Split the model's channel across the arms by weight (the first arm is the control)."""
    service = state.delivery.experiments
    try:
        experiment = service.start(
            principal.app_id,
            body.model,
            [arm.model_dump() for arm in body.arms],
            metric=body.metric,
            channel=body.channel,
            actor=f"admin:{principal.app_id}",
        )
    except InvalidInput as exc:
        raise ValidationFailed.of(exc) from exc
    return _experiment_public(service.results(principal.app_id, experiment.id))


@router.get("/experiments", response_model=ExperimentList, summary="List experiments")
def list_experiments(
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> ExperimentList:
    """The app's experiments with their results, newest first."""
    service = state.delivery.experiments
    items = service.list_experiments(principal.app_id)
    return ExperimentList(
        items=[_experiment_public(service.results(principal.app_id, e.id)) for e in items]
    )


@router.get(
    "/experiments/{experiment_id}",
    response_model=ExperimentPublic,
    summary="Show an experiment's results",
    responses=errors(*ERRORS_AUTH, 404),
)
def show_experiment(
    experiment_id: ExperimentId,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> ExperimentPublic:
    """Per arm: sample size, value, difference from the control and its 95 % CI."""
    return _experiment_public(state.delivery.experiments.results(principal.app_id, experiment_id))


@router.post(
    "/experiments/{experiment_id}/stop",
    response_model=ExperimentPublic,
    summary="Stop an experiment (optionally promote the winner)",
    responses=errors(*ERRORS_AUTH, 404, 409, 422),
)
def stop_experiment(
    body: ExperimentStop,
    experiment_id: ExperimentId,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> ExperimentPublic:
    """Stop; ``promote`` = ``"winner"`` or an arm's version moves it to production."""
    try:
        results = state.delivery.experiments.stop(
            principal.app_id,
            experiment_id,
            promote=body.promote,
            actor=f"admin:{principal.app_id}",
            reason=body.reason,
        )
    except InvalidInput as exc:
        raise ValidationFailed.of(exc) from exc
    return _experiment_public(results)
