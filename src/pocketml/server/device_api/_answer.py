"""What a device handler is given and gives back, without a web framework.

A handler's answer is ``Answer(status, body, headers)`` with ASGI-style header pairs:
the fast path sends it as it is, a FastAPI route wraps it in a Response. ``read_body``
reads a whole request body from an ASGI ``receive``, the one body reader of both doors
(the FastAPI routes pass ``request.receive``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pocketml.errors import InvalidInput, PayloadTooLarge

__all__ = ["Answer", "Headers", "read_body"]

Headers = tuple[tuple[bytes, bytes], ...]
"""Response headers as ASGI sends them: lower-case names and values, in bytes."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A device handler's answer: status, JSON body (empty for a 304) and extra headers;
    ``events``: telemetry events it stored (counted by ``GET /metrics``)."""

    status: int
    body: bytes
    headers: Headers = ()
    events: int = 0


async def read_body(receive: Callable[[], Awaitable[Any]], max_bytes: int) -> bytes:
    """The whole request body, at most ``max_bytes``.

    The request guard (``server/_guard.py``) has already refused a ``Content-Length``
    over the route's limit, cut a chunked body at it and inflated a gzip body within it;
    the count here keeps that promise for a caller without the guard.

    Args:
        receive: the ASGI receive callable of the request.
        max_bytes: the route's body limit.

    Raises:
        PayloadTooLarge: more than ``max_bytes`` bytes.
        InvalidInput: the client disconnected mid-body.
    """
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        body: bytes = message.get("body", b"")
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
        return body
    chunks: list[bytes] = []
    size = 0
    while True:
        if message["type"] == "http.disconnect":
            raise InvalidInput("the client disconnected before sending the whole body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
        message = await receive()


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the body may be at most {max_bytes} bytes; got more. Send smaller batches."
    )
