"""Zip input/output for packages: the one canonical member layout, and its strict check.

A package zip is written one way only: every member ``ZIP_STORED`` (no compression), date
1980-01-01 00:00, Unix attributes 0644, no extra fields, no comments, nothing between or
after the records. The verifier refuses any other layout, so every byte of a package is
covered by an exact header comparison, the manifest signature, or a member sha256: a
single changed byte anywhere in the file is rejected. Stored members also let a device
read the model straight from the file without inflating it.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from pocketml.protect._errors import MalformedPackage, MemberHashMismatch

__all__ = [
    "CHUNK_SIZE",
    "ZIP_READ_ERRORS",
    "check_layout",
    "iter_member",
    "make_zip_info",
    "open_zip",
]

CHUNK_SIZE = 1 << 20
_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_DOS_TIME, _DOS_DATE = 0, (0 << 9) | (1 << 5) | 1
_VERSION = 20  # what Python's zipfile writes as "version made by / needed"
_UNIX = 3
_ATTRS = 0o100644 << 16  # a regular file, rw-r--r--
_LOCAL = struct.Struct("<4s2B4HL2L2H")  # local file header, 30 bytes
_END = struct.Struct("<4s4H2LH")  # end of central directory record, 22 bytes
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # central directory entry, 46 bytes
_MAX_CLASSIC_ENTRIES = 0xFFFF  # more entries than this need ZIP64 records
# Everything zipfile (and the OS) may raise on a hostile file; translated at the seam.
ZIP_READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    struct.error,
    EOFError,
    OSError,
    ValueError,
    KeyError,
    IndexError,
    OverflowError,
    NotImplementedError,
    RuntimeError,
)


def make_zip_info(name: str, size: int) -> zipfile.ZipInfo:
    """Return the canonical ZipInfo of a stored member of ``size`` bytes."""
    info = zipfile.ZipInfo(name, date_time=_DATE_TIME)
    info.compress_type = zipfile.ZIP_STORED
    info.create_system = _UNIX
    info.external_attr = _ATTRS
    info.file_size = size
    return info


@contextmanager
def open_zip(path: Path) -> Iterator[zipfile.ZipFile]:
    """Open ``path`` as a zip file for reading.

    Raises:
        MalformedPackage: the file is not a readable zip file.
    """
    try:
        archive = zipfile.ZipFile(path, "r")
    except ZIP_READ_ERRORS as exc:
        raise MalformedPackage(
            f"{str(path)!r} is not a readable package (zip) file: {exc}. "
            "Download it again; a partial or corrupted download looks like this."
        ) from exc
    with archive:
        yield archive


def iter_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> Iterator[bytes]:
    """Yield a member's bytes in chunks, refusing to read more than ``limit`` bytes.

    Raises:
        MalformedPackage: the member's local header cannot be opened.
        MemberHashMismatch: the stored bytes are corrupt (CRC) or longer than ``limit``.
    """
    try:
        handle = archive.open(info, "r")
    except ZIP_READ_ERRORS as exc:
        raise MalformedPackage(f"cannot open package member {info.filename!r}: {exc}") from exc
    total = 0
    with handle:
        while True:
            try:
                chunk = handle.read(CHUNK_SIZE)
            except ZIP_READ_ERRORS as exc:
                raise MemberHashMismatch(
                    f"package member {info.filename!r} is corrupt ({exc}); the package was "
                    "modified or damaged: download it again."
                ) from exc
            if not chunk:
                return
            total += len(chunk)
            if total > limit:
                raise MemberHashMismatch(
                    f"package member {info.filename!r} holds more than the {limit} bytes "
                    "recorded for it; the package was modified: do not use it."
                )
            yield chunk


def check_layout(handle: BinaryIO, file_size: int, infos: Sequence[zipfile.ZipInfo]) -> None:
    """Check that the zip is laid out exactly as :func:`make_zip_info` members write it.

    The central directory and every local header are rebuilt from the parsed entries and
    compared byte for byte with the file, and the records must tile the file exactly.

    Args:
        handle: the package file, opened for binary reading.
        file_size: its size in bytes.
        infos: the central directory entries zipfile parsed (names already checked safe).

    Raises:
        MalformedPackage: any header field, gap, prefix or trailing byte out of place, or
            a record that does not fit the classic (non-ZIP64) format.
    """
    try:
        _check_layout(handle, file_size, infos)
    except struct.error as exc:  # a field past the classic format's 16/32-bit limits
        raise _layout_error(f"a record does not fit the classic zip format ({exc})") from exc


def _check_layout(handle: BinaryIO, file_size: int, infos: Sequence[zipfile.ZipInfo]) -> None:
    if len(infos) > _MAX_CLASSIC_ENTRIES:
        raise _layout_error(f"{len(infos)} members need ZIP64 records, which packages never use")
    cd_offset, cd_size = _check_end_record(handle, file_size, len(infos))
    handle.seek(cd_offset)
    if handle.read(cd_size) != b"".join(_central_record(info) for info in infos):
        raise _layout_error("the central directory is not the canonical one")
    expected = 0
    for info in sorted(infos, key=lambda item: item.header_offset):
        if info.header_offset != expected:
            raise _layout_error(f"member {info.filename!r} is not where the previous one ends")
        _check_local_header(handle, info)
        expected += _LOCAL.size + len(info.filename) + info.compress_size
    if expected != cd_offset:
        raise _layout_error("there are bytes between the last member and the directory")


def _check_end_record(handle: BinaryIO, file_size: int, count: int) -> tuple[int, int]:
    if file_size < _END.size:
        raise _layout_error("the file is shorter than a zip end record")
    handle.seek(file_size - _END.size)
    record = handle.read(_END.size)
    cd_size, cd_offset = _END.unpack(record)[5:7]
    expected = _END.pack(b"PK\x05\x06", 0, 0, count, count, cd_size, cd_offset, 0)
    if record != expected or cd_offset + cd_size != file_size - _END.size:
        raise _layout_error("the file does not end with its zip directory (bytes appended?)")
    return int(cd_offset), int(cd_size)


def _central_record(info: zipfile.ZipInfo) -> bytes:
    if info.compress_size != info.file_size:
        raise _layout_error(f"member {info.filename!r} is not stored uncompressed")
    return _CENTRAL.pack(
        b"PK\x01\x02",
        _VERSION,
        _UNIX,
        _VERSION,
        0,
        0,
        zipfile.ZIP_STORED,
        _DOS_TIME,
        _DOS_DATE,
        info.CRC,
        info.compress_size,
        info.file_size,
        len(info.filename),
        0,
        0,
        0,
        0,
        _ATTRS,
        info.header_offset,
    ) + info.filename.encode("ascii")


def _check_local_header(handle: BinaryIO, info: zipfile.ZipInfo) -> None:
    handle.seek(info.header_offset)
    raw = handle.read(_LOCAL.size + len(info.filename))
    if len(raw) != _LOCAL.size + len(info.filename):
        raise _layout_error(f"the local header of {info.filename!r} is cut off")
    expected = _LOCAL.pack(
        b"PK\x03\x04",
        _VERSION,
        0,
        0,
        zipfile.ZIP_STORED,
        _DOS_TIME,
        _DOS_DATE,
        info.CRC,
        info.compress_size,
        info.file_size,
        len(info.filename),
        0,
    ) + info.filename.encode("ascii")
    if raw != expected:
        raise _layout_error(f"the local header of {info.filename!r} differs from its directory")


def _layout_error(detail: str) -> MalformedPackage:
    return MalformedPackage(
        f"the package zip layout is not the one pocketml writes: {detail}. "
        "The file was modified or damaged: download it again."
    )
