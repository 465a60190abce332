"""Console pages of federated learning: the app's tasks, one task's rounds, and cancel.

They read ``FederatedService.list_tasks`` / ``get_task``, the calls behind
``GET /v1/admin/federated/tasks[/{id}]``, so the numbers are the API's; cancel calls
``cancel_task`` with the API's actor, behind a confirmation and the session's CSRF token.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from pocketml.errors import NotFound, PocketMLError
from pocketml.federated import TaskInfo
from pocketml.protocol import TASK_ID_PATTERN
from pocketml.server._state import ServerState, server_state
from pocketml.server.console._common import (
    CSRF_REFUSED,
    Console,
    actor_of,
    check_csrf,
    error_page,
    page,
    pocketml_error_page,
)
from pocketml.server.console._svg import Series, time_series
from pocketml.server.errors import status_for
from pocketml.server.routes import ModelName, StrictJsonRoute

__all__ = ["router"]

router = APIRouter(route_class=StrictJsonRoute)

TaskId = Annotated[str, PathParam(pattern=TASK_ID_PATTERN, description="The task's id.")]
TASKS_SHOWN = 100


def task_row(task: TaskInfo) -> dict[str, Any]:
    """What the tables show of a task (spec fields flattened, names for people)."""
    spec = task.spec
    privacy = "none"
    if float(spec.get("noise_multiplier") or 0) > 0:
        privacy = "DP" + (" + SecAgg" if spec.get("secagg") else "")
    elif spec.get("secagg"):
        privacy = "SecAgg"
    return {
        "task": task,
        "rounds_total": spec.get("rounds"),
        "cohort": spec.get("clients_per_round"),
        "aggregator": "fedbuff" if spec.get("fedbuff") else spec.get("aggregator", "fedavg"),
        "privacy": privacy,
    }


def epsilon_chart(task: TaskInfo) -> Markup | None:
    """ε after each aggregated round, over the rounds' close times (None without DP)."""
    points = [
        (float(r.closed_at), float(r.outcome["epsilon"]))
        for r in task.rounds
        if r.closed_at is not None and r.outcome and r.outcome.get("epsilon") is not None
    ]
    if not points:
        return None
    return time_series(f"Privacy spent (ε at δ = {task.delta:g})", [Series("ε", points)], y_min=0)


@router.get("/federated", response_class=HTMLResponse)
def tasks_page(
    request: Request,
    session: Console,
    model: ModelName | None = Query(None),
    state: ServerState = Depends(server_state),
) -> Response:
    """The app's federated tasks, newest first."""
    try:
        tasks = state.federated_service.list_tasks(session.app_id, model, limit=TASKS_SHOWN)
    except PocketMLError as exc:
        return pocketml_error_page(request, session, exc)
    return page(
        request,
        "federated.html",
        session,
        rows=[task_row(t) for t in tasks],
        model=model,
        limit=TASKS_SHOWN,
    )


def _task_page(
    request: Request,
    session: Any,
    state: ServerState,
    task_id: str,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    try:
        task = state.federated_service.get_task(session.app_id, task_id)
    except PocketMLError as exc:
        return pocketml_error_page(request, session, exc)
    return page(
        request,
        "federated_task.html",
        session,
        status=status,
        row=task_row(task),
        task=task,
        chart=epsilon_chart(task),
        notice=notice,
        error=error,
        at=lambda t: datetime.fromtimestamp(t, UTC) if t is not None else None,
    )


@router.get("/federated/{task_id}", response_class=HTMLResponse)
def task_page(
    request: Request,
    session: Console,
    task_id: TaskId,
    notice: str | None = Query(None, max_length=32),
    state: ServerState = Depends(server_state),
) -> Response:
    """One task: its settings, rounds (reports, clipping, ε), result and log."""
    text = "The task was cancelled." if notice == "cancelled" else None
    return _task_page(request, session, state, task_id, notice=text)


@router.post("/federated/{task_id}/cancel", response_class=HTMLResponse)
def cancel_task(
    request: Request,
    session: Console,
    task_id: TaskId,
    csrf: Annotated[str, Form(max_length=128)] = "",
    state: ServerState = Depends(server_state),
) -> Response:
    """Cancel a running task, as ``POST /v1/admin/federated/tasks/{id}/cancel`` does."""
    if not check_csrf(request, session, csrf):
        return error_page(request, session, 403, CSRF_REFUSED)
    try:
        state.federated_service.cancel_task(session.app_id, task_id, actor=actor_of(session))
    except NotFound as exc:
        return pocketml_error_page(request, session, exc)
    except PocketMLError as exc:
        return _task_page(request, session, state, task_id, error=str(exc), status=status_for(exc))
    return RedirectResponse(f"/ui/federated/{task_id}?notice=cancelled", status_code=303)
