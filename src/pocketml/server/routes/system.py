"""``GET /healthz``: liveness without authentication."""

from __future__ import annotations

from fastapi import APIRouter

from pocketml._version import __version__
from pocketml.server.routes._body import StrictJsonRoute
from pocketml.server.schemas import HealthPublic

__all__ = ["router"]

router = APIRouter(tags=["system"], route_class=StrictJsonRoute)


@router.get(
    "/healthz",
    response_model=HealthPublic,
    summary="Liveness check",
    description="Answers 200 with the server version while the process serves requests. "
    "Needs no token; use it for load-balancer and container health checks.",
)
def healthz() -> HealthPublic:
    """Report that the server is up, and its version."""
    return HealthPublic(status="ok", version=__version__)
