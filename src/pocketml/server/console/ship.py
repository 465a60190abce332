"""Console pages of the build and ship half: overview, models, versions, comparison,
rollouts, experiments, the audit log, and the operator's actions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response

from pocketml.bounds import INT32_MAX
from pocketml.errors import PocketMLError
from pocketml.server._state import ServerState, server_state
from pocketml.server.console._common import (
    Console,
    page,
    pocketml_error_page,
    render_markdown,
)
from pocketml.server.routes import ModelName, NamePrefix, StrictJsonRoute

__all__ = ["router"]

router = APIRouter(route_class=StrictJsonRoute)


@router.get("/models", response_class=HTMLResponse)
def models_page(
    request: Request,
    session: Console,
    prefix: NamePrefix = None,
    state: ServerState = Depends(server_state),
) -> Response:
    """The app's models."""
    try:
        app = state.registry.get_app(session.app_id)
        listing = state.registry.list_models(session.app_id, limit=500, prefix=prefix or None)
    except PocketMLError as exc:
        return pocketml_error_page(request, session, exc)
    return page(request, "models.html", session, app=app, models=listing.items, total=listing.total)


@router.get("/models/{name}", response_class=HTMLResponse)
def model_page(
    request: Request, session: Console, name: ModelName, state: ServerState = Depends(server_state)
) -> Response:
    """One model and its versions."""
    try:
        model = state.registry.get_model(session.app_id, name)
        versions = state.registry.list_versions(session.app_id, name, limit=500)
    except PocketMLError as exc:
        return pocketml_error_page(request, session, exc)
    return page(
        request, "model.html", session, model=model, versions=versions.items, total=versions.total
    )


@router.get("/models/{name}/versions/{version}", response_class=HTMLResponse)
def version_page(
    request: Request,
    session: Console,
    name: ModelName,
    version: Annotated[int, PathParam(ge=1, le=INT32_MAX)],
    state: ServerState = Depends(server_state),
) -> Response:
    """One version: lineage, variants and the rendered model card."""
    try:
        info = state.registry.get_version(session.app_id, name, version)
    except PocketMLError as exc:
        return pocketml_error_page(request, session, exc)
    return page(
        request,
        "version.html",
        session,
        model=name,
        version=info,
        card=render_markdown(info.card),
    )
