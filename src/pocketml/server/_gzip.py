"""Gzip request bodies (``Content-Encoding: gzip``), inflated within the route's limit.

Telemetry batches and check-in facts are repetitive JSON that shrinks 5-10x, and a
device on a metered link pays for every byte. The request guard accepts a gzip body on
the routes that take one (``RouteClass.inflates``: check-in, feedback, predict,
telemetry) and hands the app the inflated bytes, so no handler knows about compression.
The route's byte limit holds twice: on the compressed bytes as they arrive (and on a
``Content-Length`` before any is read), and on the inflated bytes while they are
produced: ``Inflater`` never asks zlib for more than one byte past the limit, so a zip
bomb costs at most ``limit + 1`` bytes of output before it is refused (413), never a full
inflate. Bytes that are not gzip answer 400 ``malformed_gzip``; any other encoding 415.
"""

from __future__ import annotations

import zlib

from pocketml.errors import MalformedGzip, PayloadTooLarge

__all__ = ["GZIP", "IDENTITY", "Inflater", "MalformedGzip", "encoding_of"]

GZIP = b"gzip"
IDENTITY = b"identity"
_ALIASES = {b"gzip": GZIP, b"x-gzip": GZIP, b"identity": IDENTITY, b"": IDENTITY}
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer, not raw deflate or zlib


def encoding_of(value: bytes) -> bytes | None:
    """``GZIP`` or ``IDENTITY`` for a ``Content-Encoding`` value, None for anything else.

    Case and surrounding spaces do not matter; ``x-gzip`` is gzip (RFC 9110 8.4.1.3).
    A list of encodings ("gzip, gzip") is not accepted.
    """
    return _ALIASES.get(value.strip().lower())


class Inflater:
    """Inflates one gzip body chunk by chunk, refusing more than ``limit`` inflated bytes.

    Concatenated gzip members (RFC 1952 2.2) inflate one after the other.

    Args:
        limit: the most inflated bytes the body may have.
        too_large: the error to raise past ``limit``.
    """

    def __init__(self, limit: int, too_large: PayloadTooLarge) -> None:
        self.limit = limit
        self.too_large = too_large
        self.inflated = 0
        self._zlib = zlib.decompressobj(_GZIP_WBITS)
        self._started = False

    def feed(self, chunk: bytes) -> bytes:
        """The inflated bytes of the next compressed ``chunk``.

        Raises:
            PayloadTooLarge: the inflated body grew past ``limit``.
            MalformedGzip: the bytes are not gzip.
        """
        out = []
        data = chunk
        while data:
            self._started = True
            room = self.limit - self.inflated
            try:
                part = self._zlib.decompress(data, room + 1)
            except zlib.error as exc:
                raise _malformed(str(exc)) from exc
            self.inflated += len(part)
            if self.inflated > self.limit:
                raise self.too_large
            out.append(part)
            if self._zlib.eof:  # another member may follow
                data = self._zlib.unused_data
                if data:
                    self._zlib = zlib.decompressobj(_GZIP_WBITS)
            else:
                data = self._zlib.unconsumed_tail  # empty unless the output was capped
        return b"".join(out)

    def finish(self) -> None:
        """Check that the body ended with a whole gzip member.

        Raises:
            MalformedGzip: no gzip data at all, or a member cut short.
        """
        if not self._started or not self._zlib.eof:
            raise _malformed("the body ends before its gzip stream does")


def _malformed(reason: str) -> MalformedGzip:
    return MalformedGzip(
        f"the request body is not valid gzip ({reason}) although Content-Encoding says "
        "gzip; send the JSON gzip-compressed (RFC 1952), or uncompressed without the "
        "Content-Encoding header."
    )
