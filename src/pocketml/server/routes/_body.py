"""The FastAPI side of request and response bodies: strict JSON body models, device answers.

``StrictJsonRoute`` makes every FastAPI route with a body model parse through the one
strict parser (``server/_json.py``: orjson, no fallback). ``respond`` turns the
transport-neutral ``Answer`` of a device handler (``server/device_api``) into a Starlette
response, so a FastAPI device route is parse headers, read the body, call the handler,
``respond``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute

from pocketml.server._json import parse_json
from pocketml.server.device_api import Answer

__all__ = ["StrictJsonRoute", "parse_json", "respond"]


def respond(answer: Answer) -> Response:
    """The Starlette response of a device handler's answer (a 304 gets no body headers)."""
    media_type = None if answer.status == 304 else "application/json"
    response = Response(answer.body, status_code=answer.status, media_type=media_type)
    response.raw_headers.extend(answer.headers)
    return response


class _StrictJsonRequest(Request):
    """A request whose ``json()`` is orjson (FastAPI's default is ``json.loads``)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())  # JSONDecodeError: FastAPI's 400
        return self._json


class StrictJsonRoute(APIRoute):
    """An APIRoute whose JSON body goes through the same strict parser as ``parse_json``.

    FastAPI parses body models with ``json.loads``, which accepts lone surrogates, NaN and
    400-digit integers; every router of the server uses this route class instead.
    ``orjson.JSONDecodeError`` subclasses ``json.JSONDecodeError``, so FastAPI still answers
    a malformed body with its ``json_invalid`` error (400 ``malformed_json``).
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(_StrictJsonRequest(request.scope, request.receive))

        return strict_handler
