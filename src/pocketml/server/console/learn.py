"""Console pages of the learn half: fleet, telemetry, drift, accuracy, alerts, the loop's
jobs and federated tasks."""

from __future__ import annotations

from fastapi import APIRouter

from pocketml.server.routes import StrictJsonRoute

__all__ = ["router"]

router = APIRouter(route_class=StrictJsonRoute)
