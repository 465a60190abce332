"""Logging in and out of the console.

An admin pastes the app's admin token into the login form; it is kept in an HttpOnly,
SameSite=Strict cookie scoped to ``/ui`` (so other sites cannot make the browser use it,
and scripts cannot read it). Device keys and the operator token cannot log in.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pocketml.errors import Unauthorized
from pocketml.server._state import ServerState, server_state
from pocketml.server.auth import authenticate_token
from pocketml.server.console._common import COOKIE, page, session_of
from pocketml.server.routes import StrictJsonRoute

__all__ = ["router"]

router = APIRouter(route_class=StrictJsonRoute)

HOME = "/ui/overview"


def _safe_next(next_path: str | None) -> str:
    """Where to go after logging in: a console path, never another site."""
    if (
        next_path
        and next_path.startswith("/ui/")
        and "\\" not in next_path
        and len(next_path) <= 512
    ):
        return next_path
    return HOME


@router.get("", response_class=HTMLResponse)
async def login_form(
    request: Request,
    next_path: str | None = Query(None, alias="next", max_length=512),
    state: ServerState = Depends(server_state),
) -> Response:
    """Show the login form, or go on when already logged in."""
    if await run_in_threadpool(session_of, request, state) is not None:
        return RedirectResponse(_safe_next(next_path), status_code=303)
    return page(request, "login.html", None, error=None, next_path=_safe_next(next_path))


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    token: str = Form("", max_length=512),
    next_path: str = Form(HOME, alias="next", max_length=512),
    state: ServerState = Depends(server_state),
) -> Response:
    """Check the pasted admin token and keep it in an HttpOnly cookie."""
    try:
        principal = await run_in_threadpool(authenticate_token, state, token.strip())
    except Unauthorized:
        principal = None
    if principal is None or principal.role != "admin":
        return page(
            request,
            "login.html",
            None,
            status=401,
            next_path=_safe_next(next_path),
            error="That is not an admin token of any app. Paste the admin token "
            "(pml_adm_...) returned when the app was created.",
        )
    response = RedirectResponse(_safe_next(next_path), status_code=303)
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
    """Forget the admin token (no CSRF check: the worst a forged logout does is log out)."""
    response = RedirectResponse("/ui", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response
