"""OpenAPI helpers: the documented error responses every route shares.

Each response names the codes its status may carry, from ``pocketml.protocol``'s catalog.
"""

from __future__ import annotations

from typing import Any

from pocketml.protocol import codes_for
from pocketml.server.schemas import ErrorBody

__all__ = ["ERRORS_AUTH", "errors"]

_DESCRIPTIONS = {
    400: "Malformed request (bad JSON, not multipart, ...).",
    401: "No token, or a token that matches nothing.",
    403: "A valid token that may not call this route.",
    404: "No such object in the caller's app.",
    409: "The object exists already, or its state forbids the change.",
    413: "The upload is larger than the server accepts.",
    416: "The Range selects no byte of the package.",
    422: "A field has the wrong type or value, or an upload fails its sha256.",
    503: "A store the server needs cannot be reached.",
}

ERRORS_AUTH = (401, 403)


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries, in the one error shape, for ``statuses``.

    Args:
        statuses: HTTP status codes.

    Returns:
        A mapping suitable for a route's ``responses=``.
    """
    return {status: {"model": ErrorBody, "description": _describe(status)} for status in statuses}


def _describe(status: int) -> str:
    codes = ", ".join(f"`{code}`" for code in codes_for(status))
    return f"{_DESCRIPTIONS.get(status, 'Error.')} Codes: {codes}."
