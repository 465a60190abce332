"""A hostile network for the device SDK: a real server behind a transport that lies.

``HostileTransport`` forwards every request to the real server (``serve_in_thread``) and
hands the real answer to an ``Attack``, which may rewrite the check-in JSON, the package
bytes or the key answer. ``Scene`` holds what an attacker could have observed (the honest
check-in, every package id of the app) so an attack is a small function of it.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

FOREIGN_HOST = "evil.example"
Attack = Callable[["Scene", httpx.Request, "Answer"], "Answer"]


@dataclass
class Answer:
    """A response on its way to the SDK (``stream`` replaces ``body`` when set)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    stream: httpx.SyncByteStream | None = None


@dataclass
class Scene:
    """What the attacker knows: package refs by (model, version, variant) and their bytes."""

    packages: dict[tuple[str, int, str], dict[str, Any]] = field(default_factory=dict)
    cloud_variant: str = ""
    zip64: bytes = b""
    escape: Path = Path("/nonexistent/escape")
    """A path outside the cache that path-like answers aim at."""
    bytes: dict[str, bytes] = field(default_factory=dict)
    """package sha256 -> its honest bytes."""
    cdn: dict[str, bytes] = field(default_factory=dict)
    """path -> bytes that the foreign host serves (to anyone, no key needed)."""

    def package(self, model: str, version: int, *, cloud: bool = False) -> dict[str, Any]:
        """The package ref of a model version's device variant (or its cloud variant)."""
        for (name, number, variant), ref in self.packages.items():
            if (name, number) == (model, version) and (variant == self.cloud_variant) == cloud:
                return ref
        raise KeyError((model, version, cloud))


def is_checkin(request: httpx.Request) -> bool:
    """True for ``POST /v1/checkin``."""
    return request.url.path == "/v1/checkin"


def is_package(request: httpx.Request) -> bool:
    """True for package downloads."""
    return request.url.path.startswith("/v1/packages/")


def is_key(request: httpx.Request) -> bool:
    """True for content key fetches."""
    return request.url.path.startswith("/v1/keys/")


def rewrite_entry(answer: Answer, model: str, change: Callable[[dict[str, Any]], None]) -> Answer:
    """The check-in answer with ``change`` applied to the entry of ``model``."""
    manifest = json.loads(answer.body)
    (entry,) = [m for m in manifest["models"] if m["name"] == model]
    change(entry)
    answer.body = json.dumps(manifest).encode()
    return answer


class InfiniteTail(httpx.SyncByteStream):
    """The real body, then zeros for ever; counts what the SDK pulled."""

    def __init__(self, body: bytes, chunk: int = 64 * 1024) -> None:
        self.body, self.chunk, self.pulled = body, chunk, 0

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.body), self.chunk):
            piece = self.body[start : start + self.chunk]
            self.pulled += len(piece)
            yield piece
        while True:
            self.pulled += self.chunk
            yield bytes(self.chunk)


class HostileTransport(httpx.BaseTransport):
    """The real server's answers, each passed through ``attack`` when one is set.

    A request to any host but the server's is recorded and answered from ``scene.cdn``
    (never forwarded), so a test sees whether the SDK went there and with which headers.
    """

    def __init__(self, scene: Scene) -> None:
        self.inner = httpx.HTTPTransport()
        self.scene = scene
        self.attack: Attack | None = None
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == FOREIGN_HOST:
            body = self.scene.cdn.get(request.url.path)
            status = 404 if body is None else 200
            return httpx.Response(status, content=body or b"", request=request)
        response = self.inner.handle_request(request)
        body = response.read()
        response.close()
        headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
        answer = Answer(response.status_code, headers, body)
        if self.attack is not None:
            answer = self.attack(self.scene, request, answer)
        if answer.stream is not None:
            return httpx.Response(
                answer.status, headers=answer.headers, stream=answer.stream, request=request
            )
        return httpx.Response(
            answer.status, headers=answer.headers, content=answer.body, request=request
        )

    def close(self) -> None:
        self.inner.close()


def zip64_package(members: int = 65_540) -> bytes:
    """A zip with manifest.json, manifest.sig and > 65,535 one-byte members (ZIP64 records)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("manifest.json", b"{}")
        archive.writestr("manifest.sig", bytes(64))
        for index in range(members):
            archive.writestr(f"m{index}", b"x")
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    """Hex sha256."""
    return hashlib.sha256(data).hexdigest()
