"""S3ArtifactStore: the ArtifactStore on AWS S3 or any S3-compatible store (MinIO, R2).

A put first spools the stream to a local temp file while hashing it (the key is the
hash, and an object must never appear before its bytes are checked), then uploads it:
one PUT for small objects, a multipart upload in 8 MiB parts otherwise, aborted on any
failure so no partial object is left. Reads are streamed GETs; ``iter_range`` uses a
ranged GET. Credentials come from boto3's usual chain (AWS_ACCESS_KEY_ID, profiles, ...).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, cast

from pocketml.errors import MissingDependencyError, NotFound, Unavailable
from pocketml.registry.artifacts import (
    CHUNK_SIZE,
    ArtifactHashMismatch,
    ArtifactRef,
    ArtifactStore,
    artifact_key,
    check_expected_sha256,
    check_key,
    check_range,
    copy_hashing,
)

__all__ = ["PART_SIZE", "S3ArtifactStore"]

PART_SIZE = 8 << 20


class S3ArtifactStore(ArtifactStore):
    """Objects under ``s3://bucket/prefix/sha256/<aa>/<hex>``.

    Args:
        bucket: the bucket (it must exist).
        prefix: a key prefix inside the bucket ("" for none).
        endpoint_url: an S3-compatible endpoint; None = AWS.
        client: a ready boto3 S3 client (tests); built lazily from the above when None.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self._client = client

    def __repr__(self) -> str:
        return f"S3ArtifactStore('s3://{self.bucket}/{self.prefix}')"

    @property
    def client(self) -> Any:
        """The boto3 S3 client, created on first use."""
        if self._client is None:
            try:
                import boto3
            except ImportError as exc:
                raise MissingDependencyError("boto3", "server", "S3 artifact storage") from exc
            self._client = boto3.client("s3", endpoint_url=self.endpoint_url)
        return self._client

    def _object_key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_stream(
        self,
        stream: BinaryIO,
        *,
        expected_sha256: str | None = None,
        max_bytes: int | None = None,
    ) -> ArtifactRef:
        """Hash the stream into a local temp file, check it, then upload (see base class)."""
        expected = check_expected_sha256(expected_sha256)
        with tempfile.TemporaryDirectory(prefix="pocketml-s3-") as tmp:
            spool = Path(tmp) / "object"
            digest, size = copy_hashing(stream, spool, max_bytes)
            if expected is not None and digest != expected:
                raise ArtifactHashMismatch(expected, digest)
            ref = ArtifactRef(key=artifact_key(digest), sha256=digest, size=size)
            if not self.exists(ref.key):
                self._upload(spool, self._object_key(ref.key), size)
            return ref

    def _upload(self, path: Path, object_key: str, size: int) -> None:
        with path.open("rb") as handle:
            if size <= PART_SIZE:
                self._call(self.client.put_object, Bucket=self.bucket, Key=object_key, Body=handle)
                return
            upload = self._call(
                self.client.create_multipart_upload, Bucket=self.bucket, Key=object_key
            )
            upload_id = upload["UploadId"]
            try:
                parts = []
                number = 1
                while chunk := handle.read(PART_SIZE):
                    answer = self._call(
                        self.client.upload_part,
                        Bucket=self.bucket,
                        Key=object_key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=chunk,
                    )
                    parts.append({"ETag": answer["ETag"], "PartNumber": number})
                    number += 1
                    del chunk
                self._call(
                    self.client.complete_multipart_upload,
                    Bucket=self.bucket,
                    Key=object_key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
            except BaseException:
                self._abort(object_key, upload_id)
                raise

    def _abort(self, object_key: str, upload_id: str) -> None:
        # Best effort: a bucket lifecycle rule cleans up whatever this misses.
        with contextlib.suppress(Exception):
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=object_key, UploadId=upload_id
            )

    def open_read(self, key: str) -> BinaryIO:
        """A streaming body of the object (see base class)."""
        answer = self._call(self.client.get_object, Bucket=self.bucket, Key=self._object_key(key))
        return cast(BinaryIO, answer["Body"])

    def iter_range(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> Iterator[bytes]:
        """Yield bytes ``[start, end)`` with one ranged GET (see base class)."""
        begin, stop = check_range(start, end, self.size(key))
        if stop == begin:
            return iter(())
        answer = self._call(
            self.client.get_object,
            Bucket=self.bucket,
            Key=self._object_key(key),
            Range=f"bytes={begin}-{stop - 1}",
        )
        return self._iter_body(answer["Body"], chunk_size)

    def _iter_body(self, body: Any, chunk_size: int) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(chunk_size)
        except Exception as exc:
            self._translate(exc, "read an object")
        finally:
            body.close()

    def size(self, key: str) -> int:
        """ContentLength of the object (see base class)."""
        answer = self._call(self.client.head_object, Bucket=self.bucket, Key=self._object_key(key))
        return int(answer["ContentLength"])

    def exists(self, key: str) -> bool:
        """Whether the object exists (a HEAD request; see base class)."""
        try:
            self.size(key)
        except NotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        """DELETE the object (S3 answers success for an absent one; see base class)."""
        self._call(self.client.delete_object, Bucket=self.bucket, Key=self._object_key(key))

    def _call(self, method: Any, **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except Exception as exc:
            self._translate(exc, method.__name__)

    def _translate(self, exc: Exception, action: str) -> NoReturn:
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"s3://{self.bucket}/{self.prefix}"
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in {"404", "NoSuchKey", "NotFound"}:
                raise NotFound(f"no artifact at {where}: {action} found nothing.") from exc
            raise Unavailable(
                f"S3 refused {action} on {where}: {code} {error.get('Message', '')}. "
                "Check the bucket exists and the credentials may read and write it."
            ) from exc
        if isinstance(exc, BotoCoreError):
            raise Unavailable(
                f"cannot reach S3 for {action} on {where}: {exc}. Check "
                "POCKETML_S3_ENDPOINT_URL and the AWS_* credential variables."
            ) from exc
        raise exc
