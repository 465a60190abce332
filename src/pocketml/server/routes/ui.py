"""The dashboard under ``/ui``: server-rendered Jinja2 pages, no build step.

An admin pastes the app's admin token into the login form; it is kept in an HttpOnly,
SameSite=Strict cookie scoped to ``/ui`` (so other sites cannot make the browser use it).
Pages: the app's models, a model with its versions, a version with its variants and its
rendered model card (markdown-it-py with raw HTML disabled, so a card cannot inject HTML).
Device keys and the operator token cannot log in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from pocketml.bounds import INT32_MAX
from pocketml.errors import PocketMLError, Unauthorized
from pocketml.registry import Principal
from pocketml.server._state import ServerState, server_state
from pocketml.server.auth import authenticate_token
from pocketml.server.errors import request_id_of, status_for
from pocketml.server.routes._body import StrictJsonRoute
from pocketml.server.routes._params import ModelName, NamePrefix

__all__ = ["router"]

COOKIE = "pocketml_admin"
router = APIRouter(prefix="/ui", include_in_schema=False, route_class=StrictJsonRoute)

_templates = Jinja2Templates(
    env=Environment(
        loader=FileSystemLoader(Path(__file__).resolve().parent.parent / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
)


def render_card(card: str) -> Markup:
    """Render a Markdown model card to HTML with raw HTML escaped.

    Args:
        card: CommonMark text.

    Returns:
        Safe HTML for the template.
    """
    from markdown_it import MarkdownIt

    return Markup(MarkdownIt("commonmark", {"html": False}).render(card))


def _admin_from_cookie(request: Request, state: ServerState) -> Principal | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        principal = authenticate_token(state, token)
    except Unauthorized:
        return None
    return principal if principal.role == "admin" else None


def _page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    return _templates.TemplateResponse(request, template, context, status_code=status)


def _error_page(request: Request, exc: PocketMLError) -> HTMLResponse:
    return _page(
        request,
        "error.html",
        status=status_for(exc),
        message=str(exc),
        request_id=request_id_of(request),
    )


@router.get("", response_class=HTMLResponse)
async def login_form(request: Request, state: ServerState = Depends(server_state)) -> Response:
    """Show the login form, or go to the models when already logged in."""
    if await run_in_threadpool(_admin_from_cookie, request, state) is not None:
        return RedirectResponse("/ui/models", status_code=303)
    return _page(request, "login.html", error=None)


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    token: str = Form(""),
    state: ServerState = Depends(server_state),
) -> Response:
    """Check the pasted admin token and keep it in an HttpOnly cookie."""
    try:
        principal = await run_in_threadpool(authenticate_token, state, token.strip())
    except Unauthorized:
        principal = None
    if principal is None or principal.role != "admin":
        return _page(
            request,
            "login.html",
            status=401,
            error="That is not an admin token of any app. Paste the admin token "
            "(pml_adm_...) returned when the app was created.",
        )
    response = RedirectResponse("/ui/models", status_code=303)
    response.set_cookie(
        COOKIE,
        token.strip(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/ui",
    )
    return response


@router.post("/logout")
async def logout() -> Response:
    """Forget the admin token."""
    response = RedirectResponse("/ui", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


@router.get("/models", response_class=HTMLResponse)
def models_page(
    request: Request, prefix: NamePrefix = None, state: ServerState = Depends(server_state)
) -> Response:
    """The app's models."""
    principal = _admin_from_cookie(request, state)
    if principal is None:
        return RedirectResponse("/ui", status_code=303)
    try:
        app = state.registry.get_app(principal.app_id)
        page = state.registry.list_models(principal.app_id, limit=500, prefix=prefix or None)
    except PocketMLError as exc:
        return _error_page(request, exc)
    return _page(request, "models.html", app=app, models=page.items, total=page.total)


@router.get("/models/{name}", response_class=HTMLResponse)
def model_page(
    request: Request, name: ModelName, state: ServerState = Depends(server_state)
) -> Response:
    """One model and its versions."""
    principal = _admin_from_cookie(request, state)
    if principal is None:
        return RedirectResponse("/ui", status_code=303)
    try:
        model = state.registry.get_model(principal.app_id, name)
        versions = state.registry.list_versions(principal.app_id, name, limit=500)
    except PocketMLError as exc:
        return _error_page(request, exc)
    return _page(request, "model.html", model=model, versions=versions.items, total=versions.total)


@router.get("/models/{name}/versions/{version}", response_class=HTMLResponse)
def version_page(
    request: Request,
    name: ModelName,
    version: Annotated[int, PathParam(ge=1, le=INT32_MAX)],
    state: ServerState = Depends(server_state),
) -> Response:
    """One version: lineage, variants and the rendered model card."""
    principal = _admin_from_cookie(request, state)
    if principal is None:
        return RedirectResponse("/ui", status_code=303)
    try:
        info = state.registry.get_version(principal.app_id, name, version)
    except PocketMLError as exc:
        return _error_page(request, exc)
    return _page(request, "version.html", model=name, version=info, card=render_card(info.card))
