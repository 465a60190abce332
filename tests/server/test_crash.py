"""A server killed with SIGKILL in the middle of a push loses nothing and half-stores nothing.

The server runs in a subprocess (``pocketml server``) on a SQLite or PostgreSQL database.
One good version is pushed, then a large streamed upload starts; once 8 MiB have been sent
the server is killed with ``kill -9``. A new server on the same home must still serve the
first version and its package byte for byte, list no other version, and clean the temp
files the dead server left behind.
"""

from __future__ import annotations

import json
import random
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pocketml.errors import Unavailable
from pocketml.server.background import serve_in_process
from pocketml.server.client import AdminClient
from pocketml.testing import DIGITS_SCHEMA, OPERATOR_TOKEN

from .conftest import push_two_variants, sha256_of


@contextmanager
def server_process(home: Path, database_url: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``pocketml server`` as a child process on ``home`` and ``database_url``."""
    env = {
        "POCKETML_HOME": str(home),
        "POCKETML_DATABASE_URL": database_url,
        "POCKETML_OPERATOR_TOKEN": OPERATOR_TOKEN,
    }
    with serve_in_process(env) as running:
        yield running


def _stalled_upload(
    metadata: bytes, size: int, sent_enough: threading.Event, killed: threading.Event
) -> tuple[Iterator[bytes], str, int]:
    boundary = "crashboundary"
    head = (
        (f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n').encode()
        + metadata
        + (
            f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="v"; '
            'filename="big.onnx"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
    )
    tail = f"\r\n--{boundary}--\r\n".encode()
    rng = random.Random(7)

    def body() -> Iterator[bytes]:
        yield head
        sent = 0
        while sent < size:
            chunk = rng.randbytes(min(1 << 20, size - sent))
            sent += len(chunk)
            yield chunk
            if sent >= 8 << 20 and not sent_enough.is_set():
                sent_enough.set()
                killed.wait(timeout=60)  # hold the upload open until the server is dead
        yield tail

    return body(), f"multipart/form-data; boundary={boundary}", len(head) + size + len(tail)


def test_kill_9_during_a_push_keeps_the_first_version_and_stores_no_partial_one(
    tmp_path: Path, database_url: str
) -> None:
    home = tmp_path / "home"
    with server_process(home, database_url) as (process, url):
        with AdminClient(url, OPERATOR_TOKEN) as operator:
            created = operator.create_app("crash-app")
        with AdminClient(url, created.admin_token, timeout=60) as client:
            client.create_model("digits", DIGITS_SCHEMA)
            first = push_two_variants(client, "digits", tmp_path / "v1")
            package_id = first.variants[0].package_id  # type: ignore[attr-defined]

            sent_enough, killed = threading.Event(), threading.Event()
            meta = json.dumps(
                {"variants": [{"name": "v", "format": "onnx", "precision": "fp32"}]}
            ).encode()
            body, content_type, length = _stalled_upload(meta, 64 << 20, sent_enough, killed)
            outcome: list[BaseException] = []

            def upload() -> None:
                try:
                    client.request(
                        "POST",
                        "/v1/admin/models/digits/versions",
                        content=body,
                        headers={"Content-Type": content_type, "Content-Length": str(length)},
                    )
                except BaseException as exc:
                    outcome.append(exc)

            uploader = threading.Thread(target=upload)
            uploader.start()
            assert sent_enough.wait(timeout=60)
            process.kill()  # SIGKILL: no cleanup, no lifespan shutdown
            process.wait(timeout=30)
            killed.set()
            uploader.join(timeout=60)
    assert len(outcome) == 1
    assert isinstance(outcome[0], Unavailable)

    with (
        server_process(home, database_url) as (_, url),
        AdminClient(url, created.admin_token) as client,
    ):
        versions = client.list_versions("digits")
        assert [v.version for v in versions.items] == [1]
        assert client.show_model("digits").latest_version == 1
        package = client.download_package(package_id, tmp_path / "after.zip")
    assert sha256_of(package) == package_id
    assert list((home / "tmp").glob("upload-*")) == []
