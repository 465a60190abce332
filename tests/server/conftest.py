"""Fixtures of the server tests: apps on the live server, and the release they push.

The live server itself is ``pocketml.testing``'s ``live_server`` fixture (enabled in
tests/conftest.py), run on SQLite and on PostgreSQL through ``database_url``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pocketml.server.client import AdminClient
from pocketml.server.schemas import AppCreatedPublic, VersionPublic
from pocketml.testing import LiveServer, model_variant, push_version
from shared_server import shared_server_fixture, unique_app_name


@pytest.fixture
def app_a(live_server: LiveServer) -> AppCreatedPublic:
    """An app created through the API by the operator."""
    with live_server.admin() as client:
        return client.create_app("app-a")


@pytest.fixture
def app_b(live_server: LiveServer) -> AppCreatedPublic:
    """A second app, to check tenant isolation."""
    with live_server.admin() as client:
        return client.create_app("app-b")


# One live server per test module and database (SQLite, then PostgreSQL), for modules whose
# tests each work inside an app of their own (``module_app``); see tests/shared_server.py.
module_live_server = shared_server_fixture()


@pytest.fixture
def module_app(module_live_server: LiveServer) -> AppCreatedPublic:
    """A new app (a tenant of its own) on ``module_live_server`` for one test."""
    with module_live_server.admin() as client:
        return client.create_app(unique_app_name())


def random_file(path: Path, size: int, seed: int) -> Path:
    """Write ``size`` deterministic pseudo-random bytes to ``path``."""
    import random

    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def sha256_of(path: Path) -> str:
    """sha256 hex of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def push_two_variants(
    client: AdminClient, model: str, workdir: Path, seed: int = 0
) -> VersionPublic:
    """Push the server tests' release: two ONNX variants, metrics, a card with markup."""
    return push_version(
        client,
        model,
        [
            model_variant(
                workdir,
                "onnx-fp32",
                filename=f"fp32-{seed}.onnx",
                seed=seed,
                size=20_000 + seed,
                metrics={"accuracy": 0.97},
                profiles=["high"],
            ),
            model_variant(
                workdir,
                "onnx-int8",
                filename=f"int8-{seed}.onnx",
                precision="int8",
                seed=seed + 1000,
                size=7_000 + seed,
                metrics={"accuracy": 0.96},
            ),
        ],
        dataset_fingerprint="sha256:abc",
        source_framework="pytorch",
        params={"epochs": 3},
        metrics={"accuracy": 0.97},
        card="# Digits\n\n<script>alert(1)</script> *small* model.",
    )
