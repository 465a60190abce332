"""Admin routes of alerting: rules, alerts, acknowledgement, webhooks and their log.

- ``GET|POST /v1/admin/alerts/rules``, ``GET|DELETE /v1/admin/alerts/rules/{id}``,
  ``POST /v1/admin/alerts/rules/defaults`` (the default rules of one model);
- ``GET /v1/admin/alerts`` (``?state=firing&model=digits``), ``GET /v1/admin/alerts/{id}``,
  ``POST /v1/admin/alerts/{id}/ack``;
- ``GET|POST /v1/admin/alerts/webhooks``, ``DELETE /v1/admin/alerts/webhooks/{id}``,
  ``POST /v1/admin/alerts/webhooks/{id}/test``;
- ``GET /v1/admin/alerts/deliveries`` (``?status=dead``).

Thin: parse, call one ``AlertService`` method, map the frozen dataclass.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import AfterValidator

from pocketml.bounds import check_text
from pocketml.errors import InvalidInput, ValidationFailed
from pocketml.monitor.alerts import RuleSpec
from pocketml.registry import Principal
from pocketml.server._state import ServerState, server_state
from pocketml.server.auth import require_admin
from pocketml.server.routes._body import StrictJsonRoute
from pocketml.server.routes._docs import ERRORS_AUTH, errors
from pocketml.server.schemas_alerts import (
    AlertList,
    AlertPublic,
    DefaultRulesCreate,
    DeliveryList,
    DeliveryPublic,
    RuleCreate,
    RuleList,
    RulePublic,
    WebhookCreate,
    WebhookCreatedPublic,
    WebhookList,
    WebhookPublic,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin/alerts", tags=["alerts"], route_class=StrictJsonRoute)

_Id = Annotated[
    str,
    Path(min_length=1, max_length=40, description="The object's id."),
    AfterValidator(check_text),
]
_Model = Annotated[
    str | None, Query(max_length=64, description="Only this model."), AfterValidator(check_text)
]
_Limit = Annotated[int, Query(ge=1, le=1000)]


def _actor(principal: Principal) -> str:
    return f"admin:{principal.app_id}"


@router.get("/rules", response_model=RuleList, summary="List alert rules")
def list_rules(
    model: _Model = None,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> RuleList:
    """The app's rules by model and name."""
    rules = state.alert_service.list_rules(principal.app_id, model)
    return RuleList(items=[RulePublic.model_validate(r) for r in rules])


@router.post(
    "/rules",
    status_code=201,
    response_model=RulePublic,
    summary="Create an alert rule",
    responses=errors(*ERRORS_AUTH, 404, 409, 422),
)
def create_rule(
    body: RuleCreate,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> RulePublic:
    """Store a rule of ``body.model`` (422 naming the field that is out of its contract)."""
    spec = RuleSpec(
        name=body.name,
        metric=body.metric,
        comparison=body.comparison,
        threshold=body.threshold,
        window_s=body.window_s,
        min_n=body.min_n,
        severity=body.severity,
        for_s=body.for_s,
        cooldown_s=body.cooldown_s,
        scope={str(k): str(v) for k, v in body.scope.items()},
    )
    try:
        rule = state.alert_service.create_rule(
            principal.app_id, body.model, spec, actor=_actor(principal)
        )
    except InvalidInput as exc:
        raise ValidationFailed.of(exc) from exc
    return RulePublic.model_validate(rule)


@router.post(
    "/rules/defaults",
    status_code=201,
    response_model=RuleList,
    summary="Create the default rules of a model",
    responses=errors(*ERRORS_AUTH, 404, 422),
)
def create_default_rules(
    body: DefaultRulesCreate,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> RuleList:
    """The default rules the model does not have yet (by name); the new ones are returned."""
    rules = state.alert_service.create_default_rules(
        principal.app_id, body.model, actor=_actor(principal)
    )
    return RuleList(items=[RulePublic.model_validate(r) for r in rules])


@router.get(
    "/rules/{rule_id}",
    response_model=RulePublic,
    summary="Show an alert rule",
    responses=errors(*ERRORS_AUTH, 404),
)
def show_rule(
    rule_id: _Id,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> RulePublic:
    """One rule."""
    return RulePublic.model_validate(state.alert_service.get_rule(principal.app_id, rule_id))


@router.delete(
    "/rules/{rule_id}",
    status_code=204,
    summary="Delete an alert rule and its alerts",
    responses=errors(*ERRORS_AUTH, 404),
)
def delete_rule(
    rule_id: _Id,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> Response:
    """Delete (audited)."""
    state.alert_service.delete_rule(principal.app_id, rule_id, actor=_actor(principal))
    return Response(status_code=204)


@router.get("/webhooks", response_model=WebhookList, summary="List webhook receivers")
def list_webhooks(
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> WebhookList:
    """The app's receivers (never their secrets)."""
    items = state.alert_service.list_webhooks(principal.app_id)
    return WebhookList(items=[WebhookPublic.model_validate(e) for e in items])


@router.post(
    "/webhooks",
    status_code=201,
    response_model=WebhookCreatedPublic,
    summary="Add a webhook receiver",
    responses=errors(*ERRORS_AUTH, 422),
)
def add_webhook(
    body: WebhookCreate,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> WebhookCreatedPublic:
    """Register a receiver; the answer holds its signing secret, shown this once only."""
    try:
        endpoint, secret = state.alert_service.add_webhook(
            principal.app_id, body.url, fmt=body.format, actor=_actor(principal)
        )
    except InvalidInput as exc:
        raise ValidationFailed.of(exc) from exc
    return WebhookCreatedPublic(**asdict(endpoint), secret=secret)


@router.delete(
    "/webhooks/{endpoint_id}",
    status_code=204,
    summary="Remove a webhook receiver",
    responses=errors(*ERRORS_AUTH, 404),
)
def delete_webhook(
    endpoint_id: _Id,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> Response:
    """Remove a receiver and its delivery log (audited)."""
    state.alert_service.delete_webhook(principal.app_id, endpoint_id, actor=_actor(principal))
    return Response(status_code=204)


@router.post(
    "/webhooks/{endpoint_id}/test",
    response_model=DeliveryPublic,
    summary="Send a test event to a webhook receiver",
    responses=errors(*ERRORS_AUTH, 404),
)
def send_test_event(
    endpoint_id: _Id,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> DeliveryPublic:
    """Send a signed event marked ``"test": true`` now; the answer is its first attempt."""
    delivery = state.alert_service.send_test(principal.app_id, endpoint_id)
    return DeliveryPublic.model_validate(delivery)


@router.get("/deliveries", response_model=DeliveryList, summary="The webhook delivery log")
def list_deliveries(
    status: Literal["pending", "delivered", "dead"] | None = None,
    limit: _Limit = 100,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> DeliveryList:
    """Newest first: each event to each receiver, its attempts and fate."""
    items = state.alert_service.list_deliveries(principal.app_id, status=status, limit=limit)
    return DeliveryList(items=[DeliveryPublic.model_validate(d) for d in items])


@router.get("", response_model=AlertList, summary="List alerts")
def list_alerts(
    state_: Annotated[
        list[Literal["pending", "firing", "resolved", "inactive"]] | None,
        Query(alias="state", description="Only these states (repeatable)."),
    ] = None,
    model: _Model = None,
    limit: _Limit = 100,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> AlertList:
    """The app's alert episodes, newest first."""
    items = state.alert_service.list_alerts(
        principal.app_id, states=list(state_) if state_ else None, model=model, limit=limit
    )
    return AlertList(items=[AlertPublic.model_validate(a) for a in items])


@router.get(
    "/{alert_id}",
    response_model=AlertPublic,
    summary="Show an alert",
    responses=errors(*ERRORS_AUTH, 404),
)
def show_alert(
    alert_id: _Id,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> AlertPublic:
    """One alert episode."""
    return AlertPublic.model_validate(state.alert_service.get_alert(principal.app_id, alert_id))


@router.post(
    "/{alert_id}/ack",
    response_model=AlertPublic,
    summary="Acknowledge an alert",
    responses=errors(*ERRORS_AUTH, 404),
)
def ack_alert(
    alert_id: _Id,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> AlertPublic:
    """Silence this episode's notifications; its state goes on (audited, idempotent)."""
    alert = state.alert_service.ack(principal.app_id, alert_id, actor=_actor(principal))
    return AlertPublic.model_validate(alert)
