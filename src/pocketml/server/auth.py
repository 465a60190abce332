"""Bearer-token dependencies: who is calling, and may they call this route.

Three kinds of credentials exist:

- the **operator token** (settings, not the database) creates and lists apps;
- an app's **admin token** manages that app only;
- an app's **device key** downloads that app's packages and never reaches an admin route;
- **no credential** downloads a package of an app whose packages are public (the package
  id, a sha256 announced only at check-in, is the capability; docs/packages.md).

Objects are always looked up inside the caller's app, so another app's token gets 404 for
them, never 403: a caller learns nothing about objects it may not see.
"""

from __future__ import annotations

import hmac

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pocketml.errors import Forbidden, Unauthorized
from pocketml.registry import Principal
from pocketml.server._state import ServerState, server_state

__all__ = [
    "OPERATOR",
    "authenticate_token",
    "optional_app_member",
    "require_admin",
    "require_app_member",
    "require_operator",
]

OPERATOR = "operator"

_bearer = HTTPBearer(
    auto_error=False,
    description="The operator token, an app's admin token, or an app's device key.",
)


def authenticate_token(state: ServerState, token: str) -> Principal:
    """Resolve a bearer token to the principal it stands for.

    Args:
        state: the server state (operator token and registry).
        token: the raw bearer token.

    Returns:
        ``Principal(app_id="", role="operator")`` for the operator token, else the
        registry's principal for an admin token or device key.

    Raises:
        Unauthorized: the token matches nothing.
    """
    if hmac.compare_digest(token.encode(), state.operator_token.encode()):
        return Principal(app_id="", role="operator")
    return state.registry.authenticate(token)


async def current_principal(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    state: ServerState = Depends(server_state),
) -> Principal:
    """FastAPI dependency: the authenticated caller of any protected route.

    Raises:
        Unauthorized: no ``Authorization: Bearer`` header, or an unknown token.
    """
    if credentials is None or not credentials.credentials:
        raise Unauthorized(
            "this route needs a token; send 'Authorization: Bearer <token>' with the "
            "operator token, an app's admin token or its device key."
        )
    principal = await run_in_threadpool(authenticate_token, state, credentials.credentials)
    request.state.principal = principal
    return principal


def require_operator(principal: Principal = Depends(current_principal)) -> Principal:
    """FastAPI dependency: only the operator token passes.

    Raises:
        Forbidden: an app's admin token or device key.
    """
    if principal.role != OPERATOR:
        raise Forbidden(
            "only the operator token may create or list apps; an app token was given. "
            "Use the token in <home>/operator.token (or POCKETML_OPERATOR_TOKEN)."
        )
    return principal


def require_admin(principal: Principal = Depends(current_principal)) -> Principal:
    """FastAPI dependency: an app's admin token (routes act on that app only).

    Raises:
        Forbidden: a device key ("device keys cannot call admin routes") or the operator
            token (which manages apps, not their contents).
    """
    if principal.role == "device":
        raise Forbidden("device keys cannot call admin routes; use the app's admin token.")
    if principal.role == OPERATOR:
        raise Forbidden(
            "the operator token manages apps only; use the app's admin token (returned by "
            "POST /v1/admin/apps) for its models and versions."
        )
    return principal


def require_app_member(principal: Principal = Depends(current_principal)) -> Principal:
    """FastAPI dependency: an app's admin token or device key (package downloads).

    Raises:
        Forbidden: the operator token, which belongs to no app.
    """
    if principal.role == OPERATOR:
        raise Forbidden(
            "the operator token belongs to no app; download packages with the app's "
            "device key or admin token."
        )
    return principal


async def optional_app_member(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    state: ServerState = Depends(server_state),
) -> Principal | None:
    """FastAPI dependency of the package routes: the app member, or None for no token.

    A request without ``Authorization`` is anonymous (public packages only); one with a
    token is authenticated exactly like ``require_app_member``.

    Raises:
        Unauthorized: a token that matches nothing. Forbidden: the operator token.
    """
    if credentials is None or not credentials.credentials:
        return None
    principal = await current_principal(request, credentials, state)
    return require_app_member(principal)
