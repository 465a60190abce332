"""Key rotation and revocation end to end: a real server, the real device SDK, real ONNX Runtime.

The only fake is ``Rewriter``, a transport that plays a hostile network or a compromised
server: it rewrites check-in answers and serves package bytes the server would not.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from pocketml.device import Device, DeviceState
from pocketml.errors import Conflict, Forbidden, InvalidInput
from pocketml.protect import Keyring, SigningKey, build_package
from pocketml.server.client import AdminClient

from .conftest import DeviceFactory, Shipped

Manifest = dict[str, Any]


class Rewriter(httpx.BaseTransport):
    """Forwards to the real server; rewrites check-in answers; serves extra package bytes."""

    def __init__(
        self,
        rewrite: Callable[[Manifest], Manifest] | None = None,
        serve: dict[str, bytes] | None = None,
    ) -> None:
        self.inner = httpx.HTTPTransport()
        self.rewrite = rewrite
        self.serve = dict(serve or {})

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path in self.serve:
            return httpx.Response(200, content=self.serve[path], request=request)
        if path == "/v1/checkin" and "if-none-match" in request.headers:
            del request.headers["if-none-match"]  # always get a manifest to rewrite
        response = self.inner.handle_request(request)
        body = response.read()
        response.close()
        if path == "/v1/checkin" and self.rewrite is not None and response.status_code == 200:
            body = json.dumps(self.rewrite(json.loads(body))).encode()
        drop = (b"content-length", b"content-encoding", b"etag")
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in drop]
        return httpx.Response(response.status_code, headers=headers, content=body, request=request)

    def close(self) -> None:
        self.inner.close()


def admin(shipped: Shipped) -> AdminClient:
    return AdminClient(shipped.url, shipped.admin_token)


def current_keyring(shipped: Shipped) -> Keyring:
    with admin(shipped) as client:
        return Keyring.from_dict(client.keyring().model_dump())


def rotate(shipped: Shipped) -> str:
    with admin(shipped) as client:
        return client.rotate_signing_key().signing_key_id


def revoke(shipped: Shipped, key_id: str) -> None:
    with admin(shipped) as client:
        client.revoke_signing_key(key_id, "test")


def pinned(cache: Path) -> dict[str, Any]:
    return dict(json.loads((cache / "trust.json").read_text())["keyring"])


def served_version(device: Device, x: np.ndarray) -> int | None:
    prediction = device.model("digits").predict(x)
    assert prediction.source == "local"
    return prediction.version


def errors_of(device: Device) -> list[str]:
    batch = device.queue.claim_batch(500)
    events = batch.events if batch is not None else []
    return [e["message"] for e in events if e["type"] == "error"]


def onnx_package(shipped: Shipped, version: int) -> tuple[str, bytes]:
    """(package id, bytes) of the version's device ONNX variant, as the server stores it."""
    with admin(shipped) as client:
        found = client.show_version("digits", version)
        variant = next(v for v in found.variants if v.format == "onnx" and v.role == "device")
        path = client.download_package(variant.package_id, Path(found.id + ".pmlpkg"))
    data = path.read_bytes()
    path.unlink()
    return variant.package_id, data


def announce(package_id: str, data: bytes, key_id: str, version: int) -> Callable[..., Manifest]:
    """A rewrite that makes check-in announce this package as the digits model."""

    def rewrite(manifest: Manifest) -> Manifest:
        entry = next(m for m in manifest["models"] if m["name"] == "digits")
        entry["version"] = version
        entry["package"].update(
            id=package_id,
            url=f"/v1/packages/{package_id}",
            size=len(data),
            sha256=package_id,
            signing_key_id=key_id,
        )
        return manifest

    return rewrite


def attacker_package(shipped: Shipped, demo_build: Path, key: SigningKey, tmp: Path) -> bytes:
    package = build_package(
        demo_build / "device.onnx",
        tmp / "evil.pmlpkg",
        app_id=shipped.app_id,
        model="digits",
        version=2,
        variant="onnx-fp32",
        model_format="onnx",
        precision="fp32",
        schema=json.loads((demo_build / "schema.json").read_text()),
        card="# evil",
        signing_key=key,
    )
    return package.path.read_bytes()


# -- following rotations --------------------------------------------------------------------


def test_a_device_pinned_before_a_rotation_follows_it(
    make_device: DeviceFactory, shipped: Shipped, demo_build: Path, tmp_path: Path
) -> None:
    device = make_device()
    device.sync()
    rotate(shipped)
    v2 = shipped.push_again(demo_build)

    entry = device.sync().models["digits"]

    assert (entry.status, entry.version) == ("updated", v2)
    assert pinned(tmp_path / "cache")["sequence"] == 2


def test_a_fresh_install_that_shipped_the_keyring_works(
    make_device: DeviceFactory, shipped: Shipped, tmp_path: Path, digit_centroids: np.ndarray
) -> None:
    rotate(shipped)
    shipped_json = current_keyring(shipped).to_json()  # what the app build carries

    device = make_device(trusted_keys=Keyring.from_json(shipped_json))
    entry = device.sync().models["digits"]

    assert entry.status == "updated"
    assert served_version(device, digit_centroids[3]) == shipped.version


def test_an_app_shipped_before_its_only_key_was_revoked_walks_the_chain(
    make_device: DeviceFactory, shipped: Shipped, demo_build: Path, tmp_path: Path
) -> None:
    first = current_keyring(shipped)
    rotate(shipped)
    v2 = shipped.push_again(demo_build)
    revoke(shipped, first.active)

    device = make_device(trusted_keys=first)
    entry = device.sync().models["digits"]

    assert (entry.status, entry.version) == ("updated", v2)
    assert pinned(tmp_path / "cache")["revoked"] == [first.active]


# -- revocation -----------------------------------------------------------------------------


def test_a_package_signed_by_a_revoked_key_is_refused_and_the_model_keeps_serving(
    make_device: DeviceFactory,
    shipped: Shipped,
    demo_build: Path,
    tmp_path: Path,
    digit_centroids: np.ndarray,
) -> None:
    old_key = current_keyring(shipped).active
    old_id, old_bytes = onnx_package(shipped, shipped.version)  # signed by old_key
    offline = DeviceState(network_type=lambda: "offline")
    make_device(cache="phone", state=offline).sync()  # pins keyring 1 (old_key), no download
    rotate(shipped)
    v2 = shipped.push_again(demo_build)
    revoke(shipped, old_key)
    make_device(cache="phone").sync()  # the honest path: v2, keyring 3 pinned
    replay = Rewriter(
        announce(old_id, old_bytes, old_key, shipped.version),
        {f"/v1/packages/{old_id}": old_bytes},
    )

    device = make_device(cache="phone", transport=replay)
    entry = device.sync().models["digits"]

    assert (entry.status, entry.reason) == ("failed", "verify")
    assert served_version(device, digit_centroids[4]) == v2
    assert any(old_key in message for message in errors_of(device))


def test_a_cached_package_signed_by_a_since_revoked_key_is_not_reactivated(
    make_device: DeviceFactory,
    shipped: Shipped,
    demo_build: Path,
    digit_centroids: np.ndarray,
) -> None:
    old_key = current_keyring(shipped).active
    old_id, old_bytes = onnx_package(shipped, shipped.version)
    device = make_device(cache="phone")
    device.sync()  # v1 installed from old_id, signed by old_key, stays in the cache
    rotate(shipped)
    v2 = shipped.push_again(demo_build)
    revoke(shipped, old_key)
    device.sync()  # v2 active, keyring without old_key pinned
    device.close()
    replay = Rewriter(announce(old_id, old_bytes, old_key, shipped.version))

    device = make_device(cache="phone", transport=replay)
    entry = device.sync().models["digits"]

    assert entry.status == "failed"  # fetched again (the server no longer has it)
    assert served_version(device, digit_centroids[4]) == v2


def test_the_server_never_announces_a_revoked_keys_package(
    make_device: DeviceFactory, shipped: Shipped, tmp_path: Path
) -> None:
    old_key = current_keyring(shipped).active
    old_id, _ = onnx_package(shipped, shipped.version)
    rotate(shipped)
    revoke(shipped, old_key)

    device = make_device()
    entry = device.sync().models["digits"]

    manifest = json.loads((tmp_path / "cache" / "checkin.json").read_text())["manifest"]
    package = manifest["models"][0]["package"]
    assert (entry.status, entry.version) == ("updated", shipped.version)
    assert package["id"] != old_id and package["signing_key_id"] != old_key
    assert old_key not in manifest["public_keys"]


# -- offers a device must ignore --------------------------------------------------------------


def _tampered(ring: Manifest, _: SigningKey) -> Manifest:
    return {**ring, "sequence": ring["sequence"] + 1}


def _takeover(ring: Manifest, evil: SigningKey) -> Manifest:
    forged = Keyring(
        app_id=ring["app_id"],
        sequence=ring["sequence"] + 1,
        issued_at=ring["issued_at"],
        active=evil.key_id,
        keys={evil.key_id: evil.public_bytes()},
    )
    return forged.signed_by(evil).to_dict()


def _malformed(ring: Manifest, evil: SigningKey) -> Manifest:
    keys = {**ring["keys"], evil.key_id: "not base64 !"}
    return {**ring, "sequence": ring["sequence"] + 1, "keys": keys}


def _stale(ring: Manifest, _: SigningKey) -> Manifest:
    return {**ring, "issued_at": "2020-01-01T00:00:00Z"}  # same sequence, other content


@pytest.mark.parametrize("forge", [_tampered, _takeover, _malformed, _stale])
def test_a_bad_keyring_is_ignored_and_the_old_model_keeps_serving(
    forge: Callable[[Manifest, SigningKey], Manifest],
    make_device: DeviceFactory,
    shipped: Shipped,
    demo_build: Path,
    tmp_path: Path,
    digit_centroids: np.ndarray,
) -> None:
    cache = tmp_path / "cache"
    make_device().sync()
    trust_before = (cache / "trust.json").read_bytes()
    evil = SigningKey.from_private_bytes(b"\x07" * 32)
    data = attacker_package(shipped, demo_build, evil, tmp_path)
    package_id = hashlib.sha256(data).hexdigest()
    rewrite = announce(package_id, data, evil.key_id, 2)

    def hostile(manifest: Manifest) -> Manifest:
        manifest["keyring"] = forge(copy.deepcopy(manifest["keyring"]), evil)
        manifest["public_keys"] = {evil.key_id: base64.b64encode(evil.public_bytes()).decode()}
        return rewrite(manifest)

    transport = Rewriter(hostile, {f"/v1/packages/{package_id}": data})
    device = make_device(transport=transport)
    entry = device.sync().models["digits"]

    assert (entry.status, entry.reason) == ("failed", "verify")
    assert served_version(device, digit_centroids[2]) == shipped.version
    assert (cache / "trust.json").read_bytes() == trust_before
    assert any("keyring" in message for message in errors_of(device))
    v2 = shipped.push_again(demo_build)
    assert make_device(cache="cache").sync().models["digits"].version == v2  # syncs on


def test_a_malformed_key_at_first_check_in_does_not_break_later_syncs(
    make_device: DeviceFactory, shipped: Shipped
) -> None:
    def corrupt(manifest: Manifest) -> Manifest:
        key_id = manifest["keyring"]["active"]
        manifest["keyring"]["keys"][key_id] = "%%%"
        manifest["public_keys"] = {key_id: "%%%"}
        return manifest

    first = make_device(transport=Rewriter(corrupt)).sync().models["digits"]
    later = make_device().sync().models["digits"]

    assert (first.status, first.reason) == ("failed", "verify")
    assert later.status == "updated"


# -- the admin API -----------------------------------------------------------------------------


def test_the_active_key_cannot_be_revoked(shipped: Shipped) -> None:
    with pytest.raises(Conflict, match="rotate first"):
        revoke(shipped, current_keyring(shipped).active)


def test_a_malformed_key_id_is_refused_with_422(shipped: Shipped) -> None:
    with admin(shipped) as client:
        answer = client.http.post("/v1/admin/app/keys/revoke", json={"key_id": "../x"})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"]
    with pytest.raises(InvalidInput):
        revoke(shipped, "ed25519:" + "g" * 16)


def test_a_device_key_cannot_read_or_change_keys(shipped: Shipped) -> None:
    with AdminClient(shipped.url, shipped.device_key) as device_client:
        with pytest.raises(Forbidden):
            device_client.keyring()
        with pytest.raises(Forbidden):
            device_client.revoke_signing_key("ed25519:" + "0" * 16)


def test_key_changes_are_in_the_audit_log(shipped: Shipped) -> None:
    old = current_keyring(shipped).active
    new = rotate(shipped)
    revoke(shipped, old)
    with admin(shipped) as client:
        entries = client.audit().items
    assert {(e.subject, e.action, e.to_state) for e in entries} >= {
        (new, "key_rotated", "active"),
        (old, "key_revoked", "revoked"),
    }


def test_lost_master_key_is_refused_for_other_credentials(shipped: Shipped) -> None:
    with admin(shipped) as client:
        answer = client.http.post(
            "/v1/admin/app/rotate", json={"credential": "device", "lost_master_key": True}
        )
    assert answer.status_code == 422
    assert "lost_master_key" in answer.json()["error"]["message"]
