"""How ``pocketml server`` runs uvicorn: a bounded request head, whichever HTTP parser.

The request guard (``_guard.py``) sees a request only once uvicorn has parsed all of its
headers. uvicorn's h11 parser stops at ``h11_max_incomplete_event_size`` (16 KiB by
default), but its httptools parser (the default whenever httptools is installed, and
the faster one) has no bound at all: a 10 MB header value is buffered whole before the
app is called. ``BoundedHttpToolsProtocol`` counts the bytes of the head being read and,
past ``max_head_bytes``, answers 431 in the one error shape and closes the connection;
``uvicorn_options`` gives h11 the same bound. The server reads a head at most one read
buffer (64-256 KiB) past the bound before it refuses it.
"""

from __future__ import annotations

from typing import Any

import orjson
from uvicorn.protocols.http.h11_impl import H11Protocol

from pocketml.config import LimitsSettings
from pocketml.server.errors import new_request_id

__all__ = ["head_limit", "uvicorn_options"]

_REQUEST_LINE_BYTES = 8192  # method, target and version; the target carries the query

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is optional for uvicorn: h11 then parses
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


def head_limit(server: LimitsSettings) -> int:
    """The most bytes of one request head (request line + headers + separators)."""
    return server.max_header_bytes + 4 * server.max_header_count + _REQUEST_LINE_BYTES


def _refusal(limit: int) -> bytes:
    rid = new_request_id()
    body = orjson.dumps(
        {
            "error": {
                "code": "headers_too_large",
                "message": f"the request head may hold at most {limit} bytes; got more. "
                "Send fewer or shorter headers.",
                "request_id": rid,
            }
        }
    )
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"x-request-id: " + rid.encode() + b"\r\n"
        b"connection: close\r\n\r\n" + body
    )


def _bounded_httptools(limit: int) -> type[Any]:
    """A ``HttpToolsProtocol`` that refuses a request head longer than ``limit`` bytes."""
    assert HttpToolsProtocol is not None

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        max_head_bytes = limit
        _in_head = True  # the next bytes of a fresh connection start a head
        _head_bytes = 0

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                self._head_bytes += len(data)
            super().data_received(data)
            if self._in_head and self._head_bytes > self.max_head_bytes:
                self._in_head = False
                self.transport.write(_refusal(self.max_head_bytes))
                self.transport.close()

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head = True
            self._head_bytes = 0

    return BoundedHttpToolsProtocol


def uvicorn_options(server: LimitsSettings) -> dict[str, Any]:
    """The uvicorn options that bound a request head (``uvicorn.run(app, **options)``).

    Args:
        server: the request limits, ``settings.server.limits`` (``max_header_bytes``,
            ``max_header_count``).

    Returns:
        ``http`` (the bounded httptools protocol, or h11 without httptools) and
        ``h11_max_incomplete_event_size``.
    """
    limit = head_limit(server)
    http: Any = H11Protocol if HttpToolsProtocol is None else _bounded_httptools(limit)
    return {"http": http, "h11_max_incomplete_event_size": limit}
