"""Streaming multipart upload of a version push: parts go to temp files, never to memory.

The body of ``POST /v1/admin/models/{name}/versions`` is ``multipart/form-data`` with one
``metadata`` part (the JSON of ``VersionCreate``) and one file part per variant whose field
name is the variant name. ``spool_version_upload`` reads the request stream chunk by chunk,
feeds python-multipart's push parser, writes each file part to its own temp file under
``<home>/tmp`` and counts bytes; a body over the limit raises ``PayloadTooLarge`` as soon as
it is seen. On any failure every temp file is removed before the error propagates.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from pocketml.errors import InvalidInput, PayloadTooLarge

__all__ = ["SpooledUpload", "remove_files", "spool_version_upload"]

METADATA_FIELD = "metadata"
MAX_METADATA_BYTES = 4 * 1024 * 1024
MAX_PARTS = 64


@dataclass
class SpooledUpload:
    """The parts of a push: the metadata JSON bytes and variant name -> temp file."""

    metadata: bytes | None = None
    files: dict[str, Path] = field(default_factory=dict)


def remove_files(paths: list[Path] | dict[str, Path]) -> None:
    """Delete temp files, ignoring ones already gone.

    Args:
        paths: the files (a list, or a mapping whose values are files).
    """
    for path in paths.values() if isinstance(paths, dict) else paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


class _PartSink:
    """python-multipart callbacks that route each part to memory (metadata) or a file."""

    def __init__(self, tmp_dir: Path, upload: SpooledUpload) -> None:
        self.tmp_dir = tmp_dir
        self.upload = upload
        self.created: list[Path] = []
        self._field = bytearray()
        self._value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._name: str | None = None
        self._metadata = bytearray()
        self._file: IO[bytes] | None = None
        self._parts = 0

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._on_part_begin,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
        }

    def _on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise InvalidInput(
                f"a push may carry at most {MAX_PARTS} parts; got more. Split the variants "
                "over several versions."
            )
        self._headers = {}
        self._name = None

    def _on_header_end(self) -> None:
        self._headers[bytes(self._field).decode("latin-1").lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _on_headers_finished(self) -> None:
        disposition = self._headers.get("content-disposition", b"")
        _, options = parse_options_header(disposition)
        raw_name = options.get(b"name")
        if not raw_name:
            raise InvalidInput(
                "every multipart part needs Content-Disposition: form-data; name=...; "
                "name it 'metadata' or after its variant."
            )
        name = raw_name.decode("utf-8", errors="replace")
        if name == METADATA_FIELD:
            if self.upload.metadata is not None or self._metadata:
                raise InvalidInput("the 'metadata' part was sent twice; send it once.")
        elif name in self.upload.files:
            raise InvalidInput(f"variant {name!r} has two file parts; send one file each.")
        else:
            fd, raw_path = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=self.tmp_dir)
            path = Path(raw_path)
            self.created.append(path)
            self.upload.files[name] = path
            self._file = os.fdopen(fd, "wb")
        self._name = name

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self._file.write(data[start:end])
            return
        self._metadata.extend(data[start:end])
        if len(self._metadata) > MAX_METADATA_BYTES:
            raise PayloadTooLarge(
                f"the 'metadata' part may be at most {MAX_METADATA_BYTES} bytes; got more. "
                "Move large run records out of the push."
            )

    def _on_part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._name == METADATA_FIELD:
            self.upload.metadata = bytes(self._metadata)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _boundary(content_type: str | None) -> bytes:
    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidInput(
            f"expected Content-Type multipart/form-data with a boundary; got "
            f"{content_type or 'none'!r}. Send a 'metadata' JSON part and one file part per "
            "variant (pocketml push does this)."
        )
    return boundary


async def spool_version_upload(request: Request, tmp_dir: Path, max_bytes: int) -> SpooledUpload:
    """Read a multipart push from the request stream into temp files.

    Args:
        request: the incoming request.
        tmp_dir: where temp files go (``<home>/tmp``).
        max_bytes: the largest body accepted.

    Returns:
        The metadata bytes and variant name -> temp file; the caller must remove the
        files (``remove_files``) when done.

    Raises:
        InvalidInput: not multipart, malformed parts, no metadata part, a cut upload.
        PayloadTooLarge: Content-Length or the bytes received exceed ``max_bytes``.
    """
    boundary = _boundary(request.headers.get("content-type"))
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(_too_large(int(declared), max_bytes))
    upload = SpooledUpload()
    sink = _PartSink(tmp_dir, upload)
    parser = MultipartParser(boundary, sink.callbacks())  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise PayloadTooLarge(_too_large(received, max_bytes))
            if chunk:
                await run_in_threadpool(parser.write, chunk)
        parser.finalize()
    except ClientDisconnect as exc:
        sink.close()
        remove_files(sink.created)
        raise InvalidInput("the client disconnected before the upload finished.") from exc
    except (InvalidInput, PayloadTooLarge):
        sink.close()
        remove_files(sink.created)
        raise
    except Exception as exc:  # python-multipart's own parse errors
        sink.close()
        remove_files(sink.created)
        raise InvalidInput(
            f"the multipart body could not be parsed ({type(exc).__name__}: {exc}); send "
            "a well-formed multipart/form-data body."
        ) from exc
    sink.close()
    if upload.metadata is None:
        remove_files(sink.created)
        raise InvalidInput(
            "the push has no 'metadata' part; send the VersionCreate JSON as a form field "
            "named 'metadata' next to one file part per variant."
        )
    return upload


def _too_large(size: int, max_bytes: int) -> str:
    return (
        f"the upload is {size / 1e6:.1f} MB or more; this server accepts at most "
        f"{max_bytes / 1e6:.1f} MB. Raise POCKETML_SERVER__LIMITS__MAX_UPLOAD_MB or push smaller "
        "variants."
    )
