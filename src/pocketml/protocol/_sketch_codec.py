"""The ``sketch`` string of a ``profile`` event: counts as base64url zigzag varints.

A device sends, per model version and window, one count per bin of the version's
reference profile, in the profile layout's flat order (feature blocks, projections,
``@prediction``, ``@confidence``). Most bins of a quiet hour are zero, and DP noise makes
counts small signed numbers, so the encoding is:

1. **zigzag**: a signed count ``v`` becomes ``(v << 1) ^ (v >> 63)`` (0, -1, 1, -2, 2 ->
   0, 1, 2, 3, 4), so small negative counts stay small;
2. **varint**: an unsigned number is written 7 bits at a time, least significant group
   first, the high bit of a byte set when more bytes follow (LEB128, as in protobuf);
3. **zero runs**: a zero count is never written alone: the byte ``0x00`` is followed by a
   varint ``r >= 1``, the number of zero counts in the run (a run is as long as it can
   be: two runs never follow each other);
4. **base64url** without padding (RFC 4648 section 5) of the bytes.

So ``[3, 0, 0, 0, 0, -1]`` is the bytes ``06 00 04 01`` and the string ``BgAEAQ``.

The decoder is strict, because the bytes come from a phone nobody controls: exactly
``total`` counts (the layout's size) and no byte after them, minimal varints only (no
``0x80 0x00`` padding), at most 10 bytes per varint and values within int64, runs of at
least one zero that never follow a run, canonical base64url (no padding, no other
characters, unused trailing bits zero) of at most ``MAX_SKETCH_CHARS`` characters. Any
breach is a ``ValueError`` saying which byte; intake turns it into a 422 naming
``events[i].sketch``.

Standard library only: the device SDK and the server share it, and an Android or iOS
client implements the same few lines from docs/protocol.md ("Profile events").
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

from pocketml.protocol._events import MAX_SKETCH_CHARS

__all__ = ["decode_sketch", "encode_sketch"]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_MAX_VARINT_BYTES = 10
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*\Z")


def _zigzag(value: int) -> int:
    return (value << 1) ^ (value >> 63)


def _unzigzag(value: int) -> int:
    return (value >> 1) ^ -(value & 1)


def _varint(value: int, out: bytearray) -> None:
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def encode_sketch(counts: Sequence[int]) -> str:
    """The ``sketch`` string of counts in layout order.

    Args:
        counts: signed integers within int64 (numpy integers are fine).

    Returns:
        base64url without padding.

    Raises:
        ValueError: a count outside int64.
    """
    out = bytearray()
    run = 0
    for raw in counts:
        value = int(raw)
        if value == 0:
            run += 1
            continue
        if run:
            out.append(0)
            _varint(run, out)
            run = 0
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"a sketch count must fit in int64; got {value}.")
        _varint(_zigzag(value), out)
    if run:
        out.append(0)
        _varint(run, out)
    return base64.urlsafe_b64encode(bytes(out)).rstrip(b"=").decode("ascii")


def _bytes_of(text: str) -> bytes:
    if not isinstance(text, str) or len(text) > MAX_SKETCH_CHARS:
        raise ValueError(f"must be a string of at most {MAX_SKETCH_CHARS} characters.")
    if not _BASE64URL.match(text) or len(text) % 4 == 1:
        raise ValueError("must be base64url without padding (A-Z a-z 0-9 - _).")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - the pattern caught it
        raise ValueError(f"is not base64url: {exc}.") from exc
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii") != text:
        raise ValueError("is not canonical base64url (its unused trailing bits are not zero).")
    return data


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    """(value, next position) of the varint at ``position``; strict (see the module)."""
    value = shift = 0
    start = position
    while True:
        if position >= len(data):
            raise ValueError(f"ends inside the varint that starts at byte {start}.")
        if position - start >= _MAX_VARINT_BYTES:
            raise ValueError(f"has a varint longer than 10 bytes at byte {start}.")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if byte == 0 and position - start > 1:
                raise ValueError(f"has a non-minimal varint at byte {start}.")
            if value > 2**64 - 1:
                raise ValueError(f"has a varint beyond 64 bits at byte {start}.")
            return value, position


def decode_sketch(text: str, total: int) -> list[int]:
    """The counts of a ``sketch`` string, exactly ``total`` of them.

    Args:
        text: the event's ``sketch``.
        total: the number of bins of the version's profile layout.

    Returns:
        ``total`` signed integers in layout order.

    Raises:
        ValueError: anything not exactly as the module states; the message names the
            byte and the rule.
    """
    data = _bytes_of(text)
    counts: list[int] = []
    position = 0
    after_run = False
    while position < len(data):
        if len(counts) >= total:
            raise ValueError(f"has bytes after its {total} counts (from byte {position}).")
        if data[position] == 0:
            if after_run:
                raise ValueError(f"has two zero runs in a row at byte {position}.")
            run, position = _read_varint(data, position + 1)
            if run < 1 or run > total - len(counts):
                raise ValueError(
                    f"has a zero run of {run} at byte {position}; runs hold 1 to "
                    f"{total - len(counts)} zeros here."
                )
            counts.extend([0] * run)
            after_run = True
            continue
        value, position = _read_varint(data, position)
        counts.append(_unzigzag(value))
        after_run = False
    if len(counts) != total:
        raise ValueError(f"holds {len(counts)} counts; the profile has {total} bins.")
    return counts
