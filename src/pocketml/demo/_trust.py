"""Demo chapter "Hold the line": key rotation and revocation, a lying network, hostile input.

A phone that shipped with the app's keyring follows a signing-key rotation and a
revocation (the server re-signs the revoked key's packages); a network that replays the
old, validly signed package is refused while the phone keeps serving; and the server
refuses a 100 MB body without a token, and writes that could not be read back, before
they cost anything. Every line of the table is a real request to the running server.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from pocketml.device import Device, DeviceFacts
from pocketml.protect import Keyring
from pocketml.server.client import AdminClient

__all__ = ["hold_the_line"]

_FACTS = DeviceFacts(
    platform="android",
    os_version="14",
    app_version="1.0.0",
    formats=("tflite", "onnx"),
    device_class="android-mid",
    device_id="demo-trust-phone",
)


class _Replay(httpx.BaseTransport):
    """A lying network: check-in announces an old package, whose bytes it serves itself."""

    def __init__(self, entry: dict[str, Any], package: bytes) -> None:
        self.inner = httpx.HTTPTransport()
        self.entry = entry
        self.package = package

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == self.entry["url"]:
            return httpx.Response(200, content=self.package, request=request)
        if "if-none-match" in request.headers:
            del request.headers["if-none-match"]  # always get a manifest to rewrite
        response = self.inner.handle_request(request)
        body = response.read()
        response.close()
        if request.url.path == "/v1/checkin" and response.status_code == 200:
            manifest = json.loads(body)
            for model in manifest["models"]:
                if model["name"] == "digits":
                    model["package"].update(self.entry)
            body = json.dumps(manifest).encode()
        return httpx.Response(response.status_code, content=body, request=request)

    def close(self) -> None:
        self.inner.close()


def hold_the_line(
    console: Console,
    *,
    url: str,
    admin: AdminClient,
    device_key: str,
    sample: np.ndarray,
    out_dir: Path,
) -> dict[str, Any]:
    """Rotate and revoke the signing key under a live phone, then lie to it and attack."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shipped = Keyring.from_dict(admin.keyring().model_dump())  # what the app build carries
    cache = out_dir / "phone"
    rows: list[tuple[str, str, str]] = []
    with Device(url, device_key, _FACTS, cache, trusted_keys=shipped, seed=0) as phone:
        first = phone.sync().models["digits"]
        old_package, old_entry = _active_package(admin, phone, cache)
        old_key = shipped.active
        admin.rotate_signing_key()
        revoked = admin.revoke_signing_key(old_key, "demo: the laptop that held it was lost")
        after = phone.sync().models["digits"]
        pinned = phone.pinned_keyring
        rows.append(
            (
                f"rotate, then revoke {old_key}",
                f"{len(revoked.resigned)} packages re-signed; phone: {after.status} "
                f"v{after.version}, keyring {pinned.sequence if pinned else '-'} pinned",
                "✓" if after.status in ("updated", "current") else "✗",
            )
        )
    replay = _Replay(old_entry, old_package)
    with Device(url, device_key, _FACTS, cache, transport=replay, seed=0) as phone:
        lied = phone.sync().models["digits"]
        served = phone.model("digits").predict(sample)
    error = type(lied.error).__name__ if lied.error is not None else "none"
    rows.append(
        (
            "replay the old package (signed by the revoked key)",
            f"{lied.status} at {lied.reason}: {error}; still serving v{served.version}",
            "✓" if lied.status == "failed" and served.version == after.version else "✗",
        )
    )
    status, elapsed_ms = _huge_body_without_token(url)
    rows.append(
        (
            "POST 100 MB, no token",
            f"{status} after {elapsed_ms:.1f} ms, before one body byte was sent",
            "✓" if status == 413 else "✗",
        )
    )
    refused, checkin = _poisoned_writes(url, admin, device_key)
    rows.append(
        (
            "writes that cannot be read back (lone surrogate, 400-digit int, NaN, deep "
            "JSON, NUL, a 2^63 shape)",
            f"{', '.join(str(s) for s in refused)}; check-in still {checkin}",
            "✓" if all(400 <= s < 500 for s in refused) and checkin == 200 else "✗",
        )
    )
    table = Table(title="Attacks on the running system", title_justify="left")
    table.add_column("attack", ratio=3)
    table.add_column("what happened", ratio=4)
    table.add_column("safe", justify="center")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(
        f"   the phone shipped keyring {shipped.sequence}, started on v{first.version} and "
        "followed the server's signed keyrings; see docs/packages.md for the rule."
    )
    return {
        "attacks": [{"attack": a, "result": r, "safe": s == "✓"} for a, r, s in rows],
        "resigned_packages": len(revoked.resigned),
        "huge_body_ms": round(elapsed_ms, 1),
    }


def _active_package(admin: AdminClient, phone: Device, cache: Path) -> tuple[bytes, dict[str, Any]]:
    """The phone's installed package: its bytes and its check-in ``package`` entry."""
    entry = phone.manifest_entry("digits")
    assert entry is not None and entry.package is not None
    ref = entry.package
    path = admin.download_package(ref.id, cache.parent / "old.pmlpkg")
    return path.read_bytes(), {
        "id": ref.id,
        "url": ref.url,
        "size": ref.size,
        "sha256": ref.sha256,
        "signing_key_id": ref.signing_key_id,
    }


def _huge_body_without_token(url: str) -> tuple[int, float]:
    """Send only the head of a 100 MB POST without a token; (status, ms to the answer)."""
    parts = urlsplit(url)
    head = (
        f"POST /v1/admin/models HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
    ).encode()
    started = time.perf_counter()
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=10) as sock:
        sock.sendall(head)
        answer = sock.recv(4096)
    elapsed = (time.perf_counter() - started) * 1000
    return int(answer.split(b" ", 2)[1]), elapsed


def _poisoned_writes(url: str, admin: AdminClient, device_key: str) -> tuple[list[int], int]:
    """Writes the server once stored and then failed to read; (their statuses, check-in)."""
    good = json.dumps(_schema_with_shape([None, 1, 2, 2]))
    deep = "[" * 5000 + "]" * 5000
    bodies = [  # each one hostile value in an otherwise valid request
        f'{{"name": "bad", "description": "\\ud800", "schema": {good}}}'.encode(),
        json.dumps({"name": "bad", "schema": _schema_with_shape([None, 1, 2, 10**400])}).encode(),
        f'{{"name": "bad", "description": NaN, "schema": {good}}}'.encode(),
        f'{{"name": "bad", "description": {deep}, "schema": {good}}}'.encode(),
        f'{{"name": "bad", "description": "a\\u0000b", "schema": {good}}}'.encode(),
        json.dumps({"name": "bad", "schema": _schema_with_shape([None, 1, 2, 2**63])}).encode(),
    ]
    headers = {
        "Authorization": admin.http.headers["Authorization"],
        "Content-Type": "application/json",
    }
    with httpx.Client(base_url=url, headers=headers) as http:
        refused = [http.post("/v1/admin/models", content=body).status_code for body in bodies]
    facts = {
        "device_id": "demo-trust-check",
        "platform": "android",
        "os_version": "14",
        "app_version": "1.0.0",
        "formats": ["onnx"],
    }
    checkin = httpx.post(
        f"{url}/v1/checkin", json=facts, headers={"Authorization": f"Bearer {device_key}"}
    ).status_code
    return refused, checkin


def _schema_with_shape(shape: list[Any]) -> dict[str, Any]:
    return {
        "format_version": 1,
        "name": "bad",
        "task": "classification",
        "inputs": [{"name": "x", "dtype": "float32", "shape": shape}],
        "outputs": [{"name": "p", "kind": "probabilities", "labels": ["a", "b"]}],
    }
