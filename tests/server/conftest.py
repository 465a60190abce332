"""Fixtures of the server tests: a real uvicorn server on 127.0.0.1 and a free port.

``live_server`` builds ``Settings`` with a per-test home and the ``database_url`` fixture
(so every server test runs on SQLite and on PostgreSQL), serves ``create_app(settings)``
with uvicorn in a thread, waits for its startup event (no sleeps), reads the bound port
from the socket, and stops it with ``should_exit``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from pocketml.config import ServerSettings, Settings
from pocketml.server.background import serve_in_thread
from pocketml.server.client import AdminClient
from pocketml.server.schemas import AppCreatedPublic
from pocketml.testing import write_model_file

OPERATOR_TOKEN = "pml_op_test-operator-token"

SCHEMA = {
    "format_version": 1,
    "name": "digits",
    "inputs": [
        {"name": "pixels", "dtype": "float32", "shape": [None, 64], "layout": "NC"},
    ],
    "outputs": [
        {"name": "probabilities", "kind": "probabilities", "labels": [str(i) for i in range(10)]},
    ],
}


@dataclass(frozen=True)
class LiveServer:
    """A running server: its URL and settings."""

    url: str
    settings: Settings

    def http(self, token: str | None = None) -> httpx.Client:
        """An httpx client for this server, with a bearer token when given."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def admin(self, token: str | None) -> AdminClient:
        """An AdminClient for this server."""
        return AdminClient(self.url, token, timeout=30)


@contextmanager
def serve(settings: Settings) -> Iterator[str]:
    """Serve ``create_app(settings)`` on 127.0.0.1:<free port> in a thread; yield its URL."""
    with serve_in_thread(settings) as url:
        yield url


def make_settings(home: Path, database_url: str, *, max_upload_mb: float = 64.0) -> Settings:
    """Settings of a test server with a fixed operator token."""
    return Settings(
        home=home,
        database_url=database_url,
        operator_token=SecretStr(OPERATOR_TOKEN),
        server=ServerSettings(max_upload_mb=max_upload_mb),
    )


@pytest.fixture
def live_server(tmp_path: Path, database_url: str) -> Iterator[LiveServer]:
    """A real server on SQLite or PostgreSQL (parametrised by ``database_url``)."""
    settings = make_settings(tmp_path / "server-home", database_url)
    with serve(settings) as url:
        yield LiveServer(url, settings)


@pytest.fixture
def app_a(live_server: LiveServer) -> AppCreatedPublic:
    """An app created through the API by the operator."""
    with live_server.admin(OPERATOR_TOKEN) as client:
        return client.create_app("app-a")


@pytest.fixture
def app_b(live_server: LiveServer) -> AppCreatedPublic:
    """A second app, to check tenant isolation."""
    with live_server.admin(OPERATOR_TOKEN) as client:
        return client.create_app("app-b")


def random_file(path: Path, size: int, seed: int) -> Path:
    """Write ``size`` deterministic pseudo-random bytes to ``path``."""
    import random

    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def onnx_file(path: Path, size: int, seed: int) -> Path:
    """Write a valid ONNX model of about ``size`` bytes, distinct per ``seed``, to ``path``."""
    return write_model_file(path, "onnx", seed=seed, size=size)


def sha256_of(path: Path) -> str:
    """sha256 hex of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def variant_meta(name: str, path: Path, **extra: object) -> dict[str, object]:
    """The VersionCreate entry of a variant file."""
    return {
        "name": name,
        "format": "onnx",
        "precision": "fp32",
        "sha256": sha256_of(path),
        **extra,
    }


def push_two_variants(client: AdminClient, model: str, workdir: Path, seed: int = 0) -> object:
    """Push a version with two small ONNX variants; returns the VersionPublic."""
    workdir.mkdir(parents=True, exist_ok=True)
    fp32 = onnx_file(workdir / f"fp32-{seed}.onnx", 20_000 + seed, seed)
    int8 = onnx_file(workdir / f"int8-{seed}.onnx", 7_000 + seed, seed + 1000)
    meta = {
        "dataset_fingerprint": "sha256:abc",
        "source_framework": "pytorch",
        "params": {"epochs": 3},
        "metrics": {"accuracy": 0.97},
        "card": "# Digits\n\n<script>alert(1)</script> *small* model.",
        "variants": [
            variant_meta("onnx-fp32", fp32, metrics={"accuracy": 0.97}, profiles=["high"]),
            variant_meta("onnx-int8", int8, precision="int8", metrics={"accuracy": 0.96}),
        ],
    }
    return client.push_files(model, meta, {"onnx-fp32": fp32, "onnx-int8": int8})
