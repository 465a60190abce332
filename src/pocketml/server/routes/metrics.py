"""``GET /metrics``: Prometheus metrics, behind the metrics token (off unless enabled).

Mounted only when ``POCKETML_SERVER__METRICS__ENABLED`` is true (otherwise 404), and
left out of the OpenAPI document: it answers the Prometheus text format, not JSON.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from pocketml.server._metrics import ServerMetrics
from pocketml.server.device_api import bearer_token

__all__ = ["router"]

router = APIRouter(tags=["system"])


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """The exposition text of this process (run in a worker thread: it may read the
    database for the model metrics)."""
    server_metrics: ServerMetrics = request.app.metrics
    token = bearer_token(request.headers.get("authorization"))
    return Response(server_metrics.render(token), media_type=CONTENT_TYPE_LATEST)
