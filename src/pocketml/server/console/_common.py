"""What every console page shares: templates, the session, CSRF, and error pages.

A session is the app's admin token in an HttpOnly, SameSite=Strict cookie scoped to
``/ui`` (set by the login form). Pages depend on :data:`Console`, which resolves the
session or raises :class:`LoginRequired` (answered with a redirect to the login page, by
the handler :func:`install` registers). Every form that changes something carries the
session's CSRF token (:func:`check_csrf`): an HMAC of the admin token, so it needs no
server-side state, cannot be computed by another site (which can read neither the cookie
nor the page), and changes when the token is rotated. A foreign ``Origin`` is refused too.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from pocketml.errors import PocketMLError, Unauthorized
from pocketml.registry import Principal
from pocketml.server._state import ServerState, server_state
from pocketml.server.auth import authenticate_token
from pocketml.server.console._format import FILTERS
from pocketml.server.errors import request_id_of, status_for

__all__ = [
    "COOKIE",
    "CSRF_REFUSED",
    "NAV",
    "Console",
    "LoginRequired",
    "Session",
    "actor_of",
    "check_csrf",
    "error_page",
    "html_error",
    "install",
    "page",
    "pocketml_error_page",
    "render_markdown",
]

COOKIE = "pocketml_admin"
_GZIP_MIN_BYTES = 1400

CSRF_REFUSED = (
    "This form was refused: its security (CSRF) token is missing, out of date, or it came from "
    "another site. Nothing was changed. Reload the page and try again."
)

# The navigation bar: (label, path). A page family adds its entry here.
NAV: list[tuple[str, str]] = [  # in the lifecycle's order: ship, run, learn, then the log
    ("Overview", "/ui/overview"),
    ("Models", "/ui/models"),
    ("Rollouts", "/ui/rollouts"),
    ("Experiments", "/ui/experiments"),
    ("Fleet", "/ui/fleet"),
    ("Telemetry", "/ui/telemetry"),  # drift and accuracy are per model: linked from here
    ("Alerts", "/ui/alerts"),
    ("Loop", "/ui/loop"),
    ("Federated", "/ui/federated"),
    ("Audit", "/ui/audit"),
]

_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
_env = Environment(
    loader=FileSystemLoader(_TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
_env.filters.update(FILTERS)
templates = Jinja2Templates(env=_env)


@dataclass(frozen=True)
class Session:
    """A logged-in admin of one app."""

    principal: Principal
    csrf: str

    @property
    def app_id(self) -> str:
        """The app whose console this is."""
        return self.principal.app_id


class LoginRequired(Exception):
    """No valid admin session: the browser is sent to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def actor_of(session: Session) -> str:
    """Who a console action is recorded as in the audit log: the admin API's actor."""
    return f"admin:{session.app_id}"


def csrf_token(admin_token: str) -> str:
    """The CSRF token of a session: HMAC-SHA256 keyed by the admin token."""
    return hmac.new(admin_token.encode(), b"pocketml-console-csrf", hashlib.sha256).hexdigest()


def session_of(request: Request, state: ServerState) -> Session | None:
    """The admin session of this request's cookie, or None."""
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 512:
        return None
    try:
        principal = authenticate_token(state, token)
    except Unauthorized:
        return None
    if principal.role != "admin":
        return None
    return Session(principal=principal, csrf=csrf_token(token))


def _require_session(request: Request, state: ServerState = Depends(server_state)) -> Session:
    session = session_of(request, state)
    if session is None:
        raise LoginRequired(request.url.path)
    return session


Console = Annotated[Session, Depends(_require_session)]
"""A page's dependency: the admin session, or a redirect to the login page."""


def check_csrf(request: Request, session: Session, submitted: str) -> bool:
    """Whether a form submission carries this session's CSRF token from this origin."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        host = request.headers.get("host", "")
        if urlsplit(origin).netloc != host:
            return False
    return hmac.compare_digest(submitted.encode(), session.csrf.encode())


def page(
    request: Request,
    template: str,
    session: Session | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render a console page with the navigation and the session's CSRF token.

    Gzipped when the browser accepts it and the page is over a packet (pages are tables of
    repeated markup: 66 KB of telemetry page is about 7 KB on the wire).
    """
    response = templates.TemplateResponse(
        request,
        template,
        {"session": session, "nav": NAV, "path": request.url.path, **context},
        status_code=status,
        headers={"Cache-Control": "no-store", "Vary": "Accept-Encoding"},
    )
    body = bytes(response.body)
    if len(body) > _GZIP_MIN_BYTES and "gzip" in request.headers.get("accept-encoding", ""):
        response.body = gzip.compress(body, compresslevel=6)
        response.headers["Content-Encoding"] = "gzip"
        response.headers["Content-Length"] = str(len(response.body))
    return response


def error_page(
    request: Request, session: Session | None, status: int, message: str
) -> HTMLResponse:
    """An error as an HTML page: what went wrong and where to go next."""
    return page(
        request,
        "error.html",
        session,
        status=status,
        status_code=status,
        message=message,
        request_id=request_id_of(request),
    )


async def html_error(request: Request, status: int, message: str) -> HTMLResponse:
    """The HTML error page for a failed /ui request (used by the app's error handlers)."""
    state = getattr(request.app.state, "pocketml", None)
    session = None
    if state is not None:
        session = await run_in_threadpool(session_of, request, state)
    return error_page(request, session, status, message)


def pocketml_error_page(request: Request, session: Session, exc: PocketMLError) -> HTMLResponse:
    """A service error (not found, conflict, ...) as the HTML error page."""
    return error_page(request, session, status_for(exc), str(exc))


def render_markdown(text: str) -> Markup:
    """Markdown (CommonMark + GFM tables) to HTML with raw HTML escaped.

    Args:
        text: the Markdown, e.g. a model card.

    Returns:
        Safe HTML for a template (a card cannot inject markup or scripts).
    """
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    return Markup(md.render(text))


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return RedirectResponse(f"/ui?next={quote(exc.next_path)}", status_code=303)


def install(app: FastAPI) -> None:
    """Register the console's router and its login redirect on ``app``."""
    from pocketml.server.console import router

    app.add_exception_handler(LoginRequired, _login_required)
    app.include_router(router)
