"""The console under ``/ui``: server-rendered pages over the same services as the API.

- ``_common``: templates, the session (admin token in an HttpOnly cookie), CSRF, errors.
- ``_format``: numbers for people (Jinja2 filters).
- ``_auth``: login and logout.
- ``ship``: overview, models, versions, comparison, rollouts, experiments, audit, and the
  operator's actions (promote, rollout steps, stop an experiment).
- ``learn``: fleet, telemetry, drift, accuracy, alerts, loop jobs.
- ``federated``: federated tasks, their rounds and privacy spent, cancel.

Routes stay thin: they call the services (``state.registry``, rollouts, monitor, ...)
and hand plain values to the templates. No JavaScript is needed to read or act; charts
are SVG drawn on the server (docs/development.md says why).
"""

from __future__ import annotations

from fastapi import APIRouter

from pocketml.server.console import _auth, federated, learn, ship
from pocketml.server.console._common import html_error, install
from pocketml.server.routes import StrictJsonRoute

__all__ = ["html_error", "install", "router"]

router = APIRouter(include_in_schema=False, route_class=StrictJsonRoute)
for _pages in (_auth.router, ship.router, learn.router, federated.router):
    router.include_router(_pages, prefix="/ui")
