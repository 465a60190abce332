"""ArtifactStore contract: every backend (local directory, S3 on moto) behaves the same."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pocketml.errors import IntegrityError, InvalidInput, NotFound, PayloadTooLarge, Unavailable
from pocketml.registry import ArtifactHashMismatch, ArtifactStore, LocalArtifactStore
from pocketml.registry._s3 import PART_SIZE, S3ArtifactStore
from pocketml.registry.artifacts import artifact_key, open_artifact_store

DATA = bytes(range(256)) * 40  # 10 KiB, every byte value


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> ArtifactStore:
    """Each contract test runs on the local backend and on S3 (moto server)."""
    if request.param == "local":
        return request.getfixturevalue("artifacts")  # type: ignore[no-any-return]
    return request.getfixturevalue("s3_store")  # type: ignore[no-any-return]


def _stored_keys(store: ArtifactStore) -> list[str]:
    """Every object the backend holds (temp files included for the local backend)."""
    if isinstance(store, LocalArtifactStore):
        if not store.root.exists():
            return []
        return sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*") if p.is_file())
    assert isinstance(store, S3ArtifactStore)
    answer = store.client.list_objects_v2(Bucket=store.bucket)
    return sorted(item["Key"] for item in answer.get("Contents", []))


class _FailingStream(io.RawIOBase):
    """A stream that yields ``good`` bytes and then fails, like a cut upload."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            raise OSError("connection reset by peer")
        n = min(len(buffer), self.left)
        buffer[:n] = b"x" * n
        self.left -= n
        return n


class TestArtifactStoreContract:
    def test_put_stream_stores_bytes_under_their_sha256(self, store: ArtifactStore) -> None:
        ref = store.put_stream(io.BytesIO(DATA))
        digest = hashlib.sha256(DATA).hexdigest()
        assert (ref.key, ref.sha256, ref.size) == (f"sha256/{digest[:2]}/{digest}", digest, 10240)
        assert store.exists(ref.key)
        assert store.size(ref.key) == len(DATA)
        with store.open_read(ref.key) as handle:
            assert handle.read() == DATA

    def test_put_file_with_matching_hash_is_accepted(
        self, store: ArtifactStore, tmp_path: Path
    ) -> None:
        path = tmp_path / "model.onnx"
        path.write_bytes(DATA)
        ref = store.put_file(path, expected_sha256=hashlib.sha256(DATA).hexdigest().upper())
        assert b"".join(store.iter_range(ref.key)) == DATA

    def test_putting_the_same_bytes_twice_keeps_one_object(self, store: ArtifactStore) -> None:
        first = store.put_stream(io.BytesIO(DATA))
        second = store.put_stream(io.BytesIO(DATA))
        assert first == second
        assert len([k for k in _stored_keys(store) if k.endswith(first.sha256)]) == 1

    def test_hash_mismatch_is_rejected_and_leaves_nothing(self, store: ArtifactStore) -> None:
        wrong = "0" * 64
        with pytest.raises(ArtifactHashMismatch) as caught:
            store.put_stream(io.BytesIO(DATA), expected_sha256=wrong)
        assert isinstance(caught.value, IntegrityError)
        assert caught.value.actual == hashlib.sha256(DATA).hexdigest()
        assert _stored_keys(store) == []

    def test_oversized_put_is_refused_and_leaves_nothing(self, store: ArtifactStore) -> None:
        with pytest.raises(PayloadTooLarge, match="at most 10239 bytes"):
            store.put_stream(io.BytesIO(DATA), max_bytes=len(DATA) - 1)
        assert _stored_keys(store) == []

    def test_delete_removes_the_object_and_tolerates_an_absent_one(
        self, store: ArtifactStore
    ) -> None:
        ref = store.put_stream(io.BytesIO(DATA))
        store.delete(ref.key)
        store.delete(ref.key)  # absent now: no error
        assert not store.exists(ref.key)
        assert [k for k in _stored_keys(store) if k.endswith(ref.sha256)] == []

    def test_put_of_exactly_max_bytes_is_accepted(self, store: ArtifactStore) -> None:
        ref = store.put_stream(io.BytesIO(DATA), max_bytes=len(DATA))
        assert store.exists(ref.key)

    def test_a_stream_failing_midway_leaves_nothing(self, store: ArtifactStore) -> None:
        with pytest.raises((OSError, Unavailable)):
            store.put_stream(io.BufferedReader(_FailingStream(3 << 20)))
        assert _stored_keys(store) == []

    def test_empty_object_round_trips(self, store: ArtifactStore) -> None:
        ref = store.put_stream(io.BytesIO(b""))
        assert ref.size == 0
        assert list(store.iter_range(ref.key)) == []

    @pytest.mark.parametrize(
        ("start", "end", "expected"),
        [
            (0, None, DATA),
            (0, 1, DATA[:1]),
            (100, 356, DATA[100:356]),
            (10000, None, DATA[10000:]),
            (10000, 99999, DATA[10000:]),
            (500, 500, b""),
            (10240, None, b""),
        ],
    )
    def test_iter_range_yields_the_half_open_range(
        self, store: ArtifactStore, start: int, end: int | None, expected: bytes
    ) -> None:
        ref = store.put_stream(io.BytesIO(DATA))
        assert b"".join(store.iter_range(ref.key, start, end)) == expected

    def test_iter_range_respects_the_chunk_size(self, store: ArtifactStore) -> None:
        ref = store.put_stream(io.BytesIO(DATA))
        chunks = list(store.iter_range(ref.key, 0, 2500, chunk_size=1000))
        assert [len(c) for c in chunks] == [1000, 1000, 500]

    @pytest.mark.parametrize(("start", "end"), [(-1, None), (10241, None), (50, 10)])
    def test_unsatisfiable_ranges_are_invalid_input(
        self, store: ArtifactStore, start: int, end: int | None
    ) -> None:
        ref = store.put_stream(io.BytesIO(DATA))
        with pytest.raises(InvalidInput, match="byte range"):
            list(store.iter_range(ref.key, start, end))

    def test_missing_objects_are_not_found(self, store: ArtifactStore) -> None:
        key = artifact_key(hashlib.sha256(b"never stored").hexdigest())
        assert not store.exists(key)
        with pytest.raises(NotFound):
            store.open_read(key)
        with pytest.raises(NotFound):
            store.size(key)
        with pytest.raises(NotFound):
            list(store.iter_range(key))

    @pytest.mark.parametrize("key", ["../../etc/passwd", "sha256/ab/" + "cd" * 32, "x", ""])
    def test_malformed_keys_are_rejected(self, store: ArtifactStore, key: str) -> None:
        with pytest.raises(InvalidInput, match="artifact key"):
            store.open_read(key)

    def test_bad_expected_sha256_is_invalid_input(self, store: ArtifactStore) -> None:
        with pytest.raises(InvalidInput, match="64 hex"):
            store.put_stream(io.BytesIO(DATA), expected_sha256="abc")


class TestS3Specifics:
    def test_large_objects_use_multipart_upload(self, s3_store: S3ArtifactStore) -> None:
        data = hashlib.sha256(b"seed").digest() * ((PART_SIZE * 2 + 12345) // 32)
        ref = s3_store.put_stream(io.BytesIO(data))
        head = s3_store.client.head_object(Bucket=s3_store.bucket, Key=f"artifacts/{ref.key}")
        assert head["ETag"].strip('"').endswith("-3")  # an S3 multipart ETag: <md5>-<parts>
        assert hashlib.sha256(b"".join(s3_store.iter_range(ref.key))).hexdigest() == ref.sha256

    def test_a_failed_part_aborts_the_upload_and_leaves_nothing(
        self, s3_store: S3ArtifactStore
    ) -> None:
        real_client = s3_store.client

        class FailingSecondPart:
            def __getattr__(self, name: str) -> Any:
                return getattr(real_client, name)

            def upload_part(self, **kwargs: Any) -> Any:
                if kwargs["PartNumber"] == 2:
                    raise ConnectionResetError("injected network failure")
                return real_client.upload_part(**kwargs)

        faulty = S3ArtifactStore(s3_store.bucket, "artifacts", client=FailingSecondPart())
        with pytest.raises(ConnectionResetError):
            faulty.put_stream(io.BytesIO(b"z" * (PART_SIZE * 2 + 1)))
        assert _stored_keys(s3_store) == []
        uploads = real_client.list_multipart_uploads(Bucket=s3_store.bucket)
        assert uploads.get("Uploads", []) == []

    def test_missing_bucket_is_unavailable(self, s3_client: Any) -> None:
        store = S3ArtifactStore("no-such-bucket-pocketml", client=s3_client)
        with pytest.raises(Unavailable, match="bucket"):
            store.put_stream(io.BytesIO(DATA))

    def test_unreachable_endpoint_is_unavailable(self) -> None:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url="http://127.0.0.1:9",
            aws_access_key_id="x",
            aws_secret_access_key="x",
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, connect_timeout=2),
        )
        with pytest.raises(Unavailable, match="cannot reach S3"):
            S3ArtifactStore("bucket", client=client).exists(artifact_key("a" * 64))


class TestOpenArtifactStore:
    def test_a_path_opens_a_local_store(self, tmp_path: Path) -> None:
        store = open_artifact_store(str(tmp_path / "a"))
        assert isinstance(store, LocalArtifactStore)
        assert store.root == tmp_path / "a"

    def test_an_s3_url_opens_an_s3_store_with_prefix_and_endpoint(self) -> None:
        store = open_artifact_store("s3://bucket/some/prefix/", s3_endpoint_url="http://x:1")
        assert isinstance(store, S3ArtifactStore)
        assert (store.bucket, store.prefix, store.endpoint_url) == (
            "bucket",
            "some/prefix",
            "http://x:1",
        )

    @pytest.mark.parametrize("url", ["s3://", "gs://bucket/x"])
    def test_bad_urls_are_invalid_input(self, url: str) -> None:
        with pytest.raises(InvalidInput, match="artifact URL"):
            open_artifact_store(url)


_STREAMING_CHILD = textwrap.dedent(
    """
    import hashlib, io, json, sys, tracemalloc
    import boto3
    from pocketml.registry import LocalArtifactStore
    from pocketml.registry._s3 import S3ArtifactStore

    kind, where, size = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class Generated(io.RawIOBase):
        # Deterministic bytes made on the fly: the source never holds the object either.
        def __init__(self):
            self.left, self.block = size, hashlib.sha256(b"seed").digest() * 2048
        def readable(self):
            return True
        def readinto(self, buffer):
            n = min(len(buffer), self.left, len(self.block))
            buffer[:n] = self.block[:n]
            self.left -= n
            return n

    if kind == "s3":
        endpoint, bucket = where.split("|")
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                              aws_secret_access_key="testing", region_name="us-east-1")
        store = S3ArtifactStore(bucket, "big", client=client)
        client.list_buckets()  # warm the client up before measuring
    else:
        store = LocalArtifactStore(where)
    tracemalloc.start()
    ref = store.put_stream(io.BufferedReader(Generated(), buffer_size=1 << 20))
    digest = hashlib.sha256()
    for chunk in store.iter_range(ref.key):
        digest.update(chunk)
    _, peak = tracemalloc.get_traced_memory()
    print(json.dumps({"size": ref.size, "sha256": ref.sha256, "read": digest.hexdigest(),
                      "peak": peak}))
    """
)


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_50_mb_object_streams_in_and_out_in_bounded_memory(
    kind: str, tmp_path: Path, s3_client: Any, moto_endpoint: str
) -> None:
    # The client runs in a child process so moto's in-memory copy is not measured.
    size = 50 << 20
    if kind == "s3":
        s3_client.create_bucket(Bucket="big-objects")
        where = f"{moto_endpoint}|big-objects"
    else:
        where = str(tmp_path / "store")
    done = subprocess.run(
        [sys.executable, "-c", _STREAMING_CHILD, kind, where, str(size)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{kind}: 50 MiB put+get, tracemalloc peak {result['peak'] / 2**20:.1f} MiB")
    assert result["size"] == size
    assert result["read"] == result["sha256"]
    assert result["peak"] < 16 << 20, f"peak {result['peak']} bytes for a {size}-byte object"
