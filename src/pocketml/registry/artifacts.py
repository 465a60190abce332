"""ArtifactStore: content-addressed, streamed, atomic storage of model files and packages.

Every object is stored under its sha256: ``sha256/<first two hex>/<full hex>``. Writes are
atomic (a temp file renamed into place, or an S3 upload started only after the bytes were
hashed), so a failed or oversized put never leaves an object behind. Reads stream in
chunks; nothing ever holds a whole file in memory.

Backends: ``LocalArtifactStore`` (a directory) and ``S3ArtifactStore`` (any S3-compatible
store, in ``pocketml.registry._s3``). ``open_artifact_store(url)`` picks one from a URL.
"""

from __future__ import annotations

import abc
import hashlib
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pocketml.errors import IntegrityError, InvalidInput, NotFound, PayloadTooLarge, Unavailable

__all__ = [
    "CHUNK_SIZE",
    "ArtifactHashMismatch",
    "ArtifactRef",
    "ArtifactStore",
    "LocalArtifactStore",
    "artifact_key",
    "open_artifact_store",
]

CHUNK_SIZE = 1 << 20
_KEY_RE = re.compile(r"^sha256/([0-9a-f]{2})/\1[0-9a-f]{62}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ArtifactRef:
    """A stored object: its key, the sha256 hex of its bytes and its size in bytes."""

    key: str
    sha256: str
    size: int


class ArtifactHashMismatch(IntegrityError):
    """The bytes given to a put do not hash to the expected sha256; nothing was stored."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(
            f"sha256 mismatch: expected {expected}, got {actual}. The bytes were corrupted "
            "or the declared hash is wrong; recompute it and upload again."
        )
        self.expected = expected
        self.actual = actual


def artifact_key(sha256: str) -> str:
    """The content-addressed key of bytes with this sha256 hex: ``sha256/<aa>/<hex>``."""
    return f"sha256/{sha256[:2]}/{sha256}"


def check_key(key: str) -> str:
    """Return ``key`` if it is a well-formed artifact key; raise InvalidInput otherwise."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise InvalidInput(
            f"artifact key must look like 'sha256/<aa>/<64 hex>'; got {key!r}. "
            "Use the key returned by put_file/put_stream."
        )
    return key


def check_expected_sha256(expected: str | None) -> str | None:
    """Normalise an expected sha256 (lower-case hex) or raise InvalidInput."""
    if expected is None:
        return None
    value = expected.lower()
    if not _SHA_RE.match(value):
        raise InvalidInput(f"expected_sha256 must be 64 hex characters; got {expected!r}.")
    return value


def check_range(start: int, end: int | None, size: int) -> tuple[int, int]:
    """Clamp a half-open byte range ``[start, end)`` to an object of ``size`` bytes.

    Raises:
        InvalidInput: ``start`` is negative or past the end, or ``end`` is before ``start``.
    """
    stop = size if end is None else min(end, size)
    if start < 0 or start > size or stop < start:
        raise InvalidInput(
            f"byte range must satisfy 0 <= start <= size and start <= end; got "
            f"start={start}, end={end} for an object of {size} bytes."
        )
    return start, stop


class ArtifactStore(abc.ABC):
    """Content-addressed blob storage. Every method streams; every write is atomic."""

    @abc.abstractmethod
    def put_stream(
        self,
        stream: BinaryIO,
        *,
        expected_sha256: str | None = None,
        max_bytes: int | None = None,
    ) -> ArtifactRef:
        """Store the bytes of ``stream`` (read in 1 MiB chunks) under their sha256.

        Args:
            stream: a binary file-like object, read to its end.
            expected_sha256: when given, the bytes must hash to it.
            max_bytes: when given, more bytes than this are refused.

        Returns:
            The ArtifactRef of the stored (or already present) object.

        Raises:
            ArtifactHashMismatch: the bytes hash differently (an IntegrityError).
            PayloadTooLarge: the stream is longer than ``max_bytes``.
            Unavailable: the backend cannot be reached.
        """

    def put_file(self, path: Path, *, expected_sha256: str | None = None) -> ArtifactRef:
        """Store the file at ``path`` under its sha256 (see ``put_stream``).

        Raises:
            NotFound: ``path`` does not exist.
            ArtifactHashMismatch: the file hashes differently from ``expected_sha256``.
        """
        try:
            with Path(path).open("rb") as handle:
                return self.put_stream(handle, expected_sha256=expected_sha256)
        except FileNotFoundError as exc:
            raise NotFound(f"file to store does not exist: {path}") from exc

    @abc.abstractmethod
    def open_read(self, key: str) -> BinaryIO:
        """Open the object for streaming reads; the caller closes it.

        Raises:
            NotFound: no object has this key.
            InvalidInput: the key is malformed.
        """

    @abc.abstractmethod
    def iter_range(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> Iterator[bytes]:
        """Yield the bytes ``[start, end)`` of the object in chunks of at most ``chunk_size``.

        ``end`` is EXCLUSIVE (Python slice convention; HTTP ``bytes=a-b`` is ``start=a,
        end=b + 1``) and is clamped to the object size; ``None`` means to the end.

        Raises:
            NotFound: no object has this key.
            InvalidInput: malformed key, or ``start`` < 0, ``start`` > size, ``end`` < ``start``.
        """

    @abc.abstractmethod
    def size(self, key: str) -> int:
        """The size in bytes of the object. Raises NotFound when it does not exist."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object with this key is stored."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object (no error when it is absent). Only for objects no row uses.

        Raises:
            InvalidInput: the key is malformed. Unavailable: the backend failed.
        """


class LocalArtifactStore(ArtifactStore):
    """Objects as files under a root directory; temp files under ``<root>/tmp``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalArtifactStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_stream(
        self,
        stream: BinaryIO,
        *,
        expected_sha256: str | None = None,
        max_bytes: int | None = None,
    ) -> ArtifactRef:
        """Store a stream: hash it into a temp file, check, fsync, rename (see base class)."""
        expected = check_expected_sha256(expected_sha256)
        tmp_dir = self.root / "tmp"
        try:
            tmp_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise Unavailable(f"cannot create the artifact directory {tmp_dir}: {exc}") from exc
        tmp = tmp_dir / f"{uuid.uuid4().hex}.part"
        try:
            digest, size = copy_hashing(stream, tmp, max_bytes)
            if expected is not None and digest != expected:
                raise ArtifactHashMismatch(expected, digest)
            ref = ArtifactRef(key=artifact_key(digest), sha256=digest, size=size)
            final = self._path(ref.key)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            return ref
        except OSError as exc:
            raise Unavailable(
                f"cannot store the artifact in {self.root}: {exc}. Check the stream and that "
                "the directory is writable with free space."
            ) from exc
        finally:
            tmp.unlink(missing_ok=True)

    def open_read(self, key: str) -> BinaryIO:
        """Open the object's file for reading (see base class)."""
        try:
            return self._path(key).open("rb")
        except FileNotFoundError as exc:
            raise NotFound(f"no artifact with key {key}") from exc

    def iter_range(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> Iterator[bytes]:
        """Yield bytes ``[start, end)`` of the object's file (see base class)."""
        handle = self.open_read(key)
        try:
            begin, stop = check_range(start, end, os.fstat(handle.fileno()).st_size)
        except BaseException:
            handle.close()
            raise
        return _iter_file(handle, begin, stop, chunk_size)

    def size(self, key: str) -> int:
        """Size of the object's file (see base class)."""
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as exc:
            raise NotFound(f"no artifact with key {key}") from exc

    def exists(self, key: str) -> bool:
        """Whether the object's file exists (see base class)."""
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        """Unlink the object's file (see base class)."""
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise Unavailable(f"cannot delete the artifact {key} in {self.root}: {exc}") from exc


def _iter_file(handle: BinaryIO, start: int, stop: int, chunk_size: int) -> Iterator[bytes]:
    with handle:
        handle.seek(start)
        remaining = stop - start
        while remaining > 0:
            chunk = handle.read(min(chunk_size, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk


def copy_hashing(stream: BinaryIO, target: Path, max_bytes: int | None) -> tuple[str, int]:
    """Copy ``stream`` into a new file ``target`` in chunks; return (sha256 hex, size)."""
    digest = hashlib.sha256()
    size = 0
    with target.open("xb") as out:
        while chunk := stream.read(CHUNK_SIZE):
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise PayloadTooLarge(
                    f"upload must be at most {max_bytes} bytes; got more than that. "
                    "Send a smaller file or raise the server's upload limit."
                )
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest(), size


def open_artifact_store(url: str, *, s3_endpoint_url: str | None = None) -> ArtifactStore:
    """Open the ArtifactStore a URL names.

    Args:
        url: a directory path (or ``file://`` URL) for a LocalArtifactStore, or
            ``s3://bucket/prefix`` for an S3ArtifactStore.
        s3_endpoint_url: endpoint of an S3-compatible store (MinIO, R2, moto); None = AWS.

    Returns:
        The store; nothing is contacted until the first call.

    Raises:
        InvalidInput: an ``s3://`` URL without a bucket, or an unknown scheme.
        MissingDependencyError: boto3 is not installed for an ``s3://`` URL.
    """
    text = str(url)
    if text.startswith("s3://"):
        from pocketml.registry._s3 import S3ArtifactStore

        bucket, _, prefix = text[len("s3://") :].partition("/")
        if not bucket:
            raise InvalidInput(f"artifact URL must look like s3://bucket/prefix; got {url!r}.")
        return S3ArtifactStore(bucket, prefix.strip("/"), endpoint_url=s3_endpoint_url)
    if text.startswith("file://"):
        return LocalArtifactStore(Path(text[len("file://") :]))
    if re.match(r"^[a-z][a-z0-9+.-]*://", text):
        raise InvalidInput(
            f"artifact URL must be a directory path, file://path or s3://bucket/prefix; "
            f"got {url!r}."
        )
    return LocalArtifactStore(Path(text).expanduser())
