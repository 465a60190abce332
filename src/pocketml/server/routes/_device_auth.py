"""FastAPI dependencies of the device routes: the server state and the authenticated app.

The verification itself (a cached check of the device key or admin token) is
``device_api.authenticate_device``, shared with the fast path; this module only declares
the ``DeviceKey`` bearer scheme for the OpenAPI document and hands FastAPI's credentials
to it.
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pocketml.registry import Principal
from pocketml.server._state import ServerState, server_state
from pocketml.server.device_api import authenticate_device

__all__ = ["device_principal", "device_state"]

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="DeviceKey",
    description="The app's device key (pml_dev_...); the app's admin token works too.",
)


async def device_state(request: Request) -> ServerState:
    """Async twin of ``server_state``: FastAPI runs sync dependencies in a worker thread,
    a hop the hot device routes cannot afford.

    Raises:
        Unavailable: the app is serving without its lifespan having run.
    """
    return server_state(request)


async def device_principal(
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    state: ServerState = Depends(device_state),
) -> Principal:
    """FastAPI dependency: the app a device route acts for.

    Raises:
        Unauthorized: no bearer token, or one that matches no app.
        Forbidden: the operator token (it belongs to no app).
    """
    token = credentials.credentials if credentials is not None else None
    return await authenticate_device(state, token)
