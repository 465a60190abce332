"""Who a device request acts for: an app's device key (or its admin token), verified once.

Device routes are the fleet's hot path, so a verified credential is remembered for
``settings.server.devices.auth_ttl_s`` seconds (keyed by its sha256) instead of hitting the
database on every request. The operator token belongs to no app and is refused.
"""

from __future__ import annotations

from anyio import to_thread

from pocketml.errors import Forbidden, Unauthorized
from pocketml.registry import Principal
from pocketml.server._state import ServerState
from pocketml.server.auth import OPERATOR, authenticate_token

__all__ = ["authenticate_device", "bearer_token"]


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, else None.

    Same parsing as FastAPI's ``HTTPBearer``: the scheme is case-insensitive, the token
    is stripped, anything else (no header, another scheme, no token) gives None.
    """
    if not authorization:
        return None
    scheme, _, param = authorization.partition(" ")
    token = param.strip()
    if not scheme or not token or scheme.lower() != "bearer":
        return None
    return token


async def authenticate_device(state: ServerState, token: str | None) -> Principal:
    """The app a device request acts for, from its bearer token (cached verification).

    Args:
        state: the server state (principal cache, registry).
        token: the bearer token, or None when the request had none.

    Returns:
        The principal of the device key (or admin token).

    Raises:
        Unauthorized: no bearer token, or one that matches no app.
        Forbidden: the operator token (it belongs to no app).
    """
    if not token:
        raise Unauthorized(
            "device routes need the app's device key; send 'Authorization: Bearer pml_dev_...'."
        )
    principal = state.principals.get(token)
    if principal is None:
        principal = await state.principals.verify_once(
            token, lambda: to_thread.run_sync(authenticate_token, state, token)
        )
        if principal.role == OPERATOR:
            raise Forbidden(
                "the operator token belongs to no app; call device routes with the app's "
                "device key (or its admin token)."
            )
        state.principals.put(token, principal)
    return principal
