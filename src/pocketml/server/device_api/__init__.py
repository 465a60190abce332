"""The device handlers, once: check-in, cloud predict and telemetry, free of any web framework.

Two doors lead here. The raw-ASGI fast path (``server/_fast.py``) takes the fleet's hot
routes before Starlette's middleware and FastAPI's dependency solver; the FastAPI routes
(``server/routes/device.py``, ``predict.py``, ``telemetry.py``) describe the same routes
in the OpenAPI document and answer whatever the fast path does not take. Both are thin
adapters: they pick the headers a handler needs, read the body with ``read_body``,
authenticate with ``authenticate_device`` and send the handler's ``Answer``
(status, body bytes, headers). Everything else - validation, the 422 of the error
catalog's ``ValidationFailed`` row, ETags, the service calls - happens here, so the two
doors cannot drift apart.

Feedback has no fast path: its FastAPI route keeps its pydantic body model.
"""

from pocketml.server.device_api._answer import Answer, Headers, read_body
from pocketml.server.device_api._auth import authenticate_device, bearer_token
from pocketml.server.device_api._checkin import CheckinRejected, answer_checkin
from pocketml.server.device_api._predict import answer_predict, parse_predict_body
from pocketml.server.device_api._telemetry import (
    BatchRejected,
    answer_telemetry,
    validate_batch,
    validate_body,
)

__all__ = [
    "Answer",
    "BatchRejected",
    "CheckinRejected",
    "Headers",
    "answer_checkin",
    "answer_predict",
    "answer_telemetry",
    "authenticate_device",
    "bearer_token",
    "parse_predict_body",
    "read_body",
    "validate_batch",
    "validate_body",
]
