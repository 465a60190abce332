"""Fixtures of the registry tests: an open Registry per database, artifact stores, fake models.

The S3 store runs against moto in server mode on 127.0.0.1 and a free port (a real HTTP
S3 endpoint), one server per test session and one fresh bucket per test.
"""

from __future__ import annotations

import base64
import copy
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pocketml.protect import MasterKey
from pocketml.registry import LocalArtifactStore, ModelCreate, Registry, VersionInfo
from pocketml.registry._s3 import S3ArtifactStore
from pocketml.testing import DIGITS_SCHEMA, model_variant, push_to_registry, write_model_file

_MOTO_CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "region_name": "us-east-1",
}


@pytest.fixture
def make_model(tmp_path: Path) -> Callable[..., Path]:
    """A factory writing a small valid ONNX model to ``<tmp>/uploads/<name>/model.onnx``."""

    def make(name: str, *, size: int = 4096, seed: int = 0) -> Path:
        return write_model_file(
            tmp_path / "uploads" / name / "model.onnx", "onnx", seed=seed, size=size
        )

    return make


@pytest.fixture
def schema() -> dict[str, Any]:
    """A valid ModelSchema dict (a copy: tests may change it)."""
    return copy.deepcopy(DIGITS_SCHEMA)


@pytest.fixture
def master_key() -> MasterKey:
    """A fixed master key (tests are deterministic)."""
    return MasterKey.from_b64(base64.b64encode(bytes(range(32))).decode("ascii"))


@pytest.fixture
def artifacts(tmp_path: Path) -> LocalArtifactStore:
    """A local artifact store in the test's temp directory."""
    return LocalArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def registry(
    database_url: str, artifacts: LocalArtifactStore, master_key: MasterKey, tmp_path: Path
) -> Iterator[Registry]:
    """An open Registry on SQLite or PostgreSQL (see tests/conftest.py)."""
    reg = Registry(database_url, artifacts, master_key, tmp_dir=tmp_path)
    reg.open()
    try:
        yield reg
    finally:
        reg.close()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 and a free port, for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_client(moto_endpoint: str) -> Any:
    """A boto3 S3 client pointed at moto with dummy credentials."""
    import boto3

    return boto3.client("s3", endpoint_url=moto_endpoint, **_MOTO_CREDENTIALS)


@pytest.fixture
def s3_store(s3_client: Any) -> S3ArtifactStore:
    """An S3ArtifactStore on a fresh bucket of the moto server."""
    bucket = f"pocketml-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    return S3ArtifactStore(bucket, "artifacts", client=s3_client)


Push = Callable[..., VersionInfo]


@pytest.fixture
def push(registry: Registry, tmp_path: Path) -> Push:
    """Push a version of "digits" made of small random files: ``push(app_id, ...)``.

    Keyword arguments: ``model``, ``variants`` (names), ``encrypted`` (names),
    ``version``, ``seed`` (which bytes the files hold), and any VersionCreate field.
    """

    def run(
        app_id: str,
        *,
        model: str = "digits",
        variants: tuple[str, ...] = ("onnx-fp32",),
        encrypted: tuple[str, ...] = (),
        version: int | None = None,
        seed: int = 0,
        **meta: Any,
    ) -> VersionInfo:
        uploads = [
            model_variant(
                tmp_path / "uploads" / f"{seed}-{name}",
                name,
                filename="model.onnx",
                seed=seed * 100 + index,
                size=4096,
                encrypt=name in encrypted,
            )
            for index, name in enumerate(variants)
        ]
        return push_to_registry(registry, app_id, model, uploads, version=version, **meta)

    return run


@pytest.fixture
def app_id(registry: Registry, schema: dict[str, Any]) -> str:
    """An app "app-a" with a model "digits"."""
    created = registry.create_app("app-a")
    registry.create_model(created.app.id, ModelCreate(name="digits", schema=schema))
    return created.app.id


@pytest.fixture
def other_app_id(registry: Registry, schema: dict[str, Any]) -> str:
    """A second app "app-b", also with a model "digits"."""
    created = registry.create_app("app-b")
    registry.create_model(created.app.id, ModelCreate(name="digits", schema=schema))
    return created.app.id
