"""The device SDK against a hostile network: every lie is refused, the old model keeps serving.

Each row of ``ATTACKS`` is one way a network (or a compromised CDN or proxy) can lie to a
device that runs digits v1 while the real server announces digits v2 (encrypted) and a
new model "other": it rewrites the check-in answer, the package bytes or the key answer.
For every row ``sync()`` must not raise; digits must fail with the row's typed error and
stage; "other" must still sync; digits v1 must still answer locally; an error event must
be queued; nothing may be written outside the cache directory; the device key may never
reach another host; and the next honest sync must install v2 (nothing was poisoned).
A new attack is one row.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from pocketml.device import Device, OversizeDownload, PackageMismatch, ProtocolError
from pocketml.errors import IntegrityError, InvalidInput, PocketMLError
from pocketml.protect import MalformedPackage, _install

from .conftest import LINUX, DeviceFactory, Shipped
from .hostile_kit import (
    FOREIGN_HOST,
    Answer,
    HostileTransport,
    InfiniteTail,
    Scene,
    is_checkin,
    is_key,
    rewrite_entry,
    sha256,
    zip64_package,
)


@dataclass
class Stage:
    """A device on digits v1 while the server offers digits v2 (encrypted) and "other" v1."""

    device: Device
    transport: HostileTransport
    scene: Scene
    root: Path
    cache: Path


@pytest.fixture(scope="session")
def zip64_bytes() -> bytes:
    """A ZIP64 package (> 65,535 members), built once."""
    return zip64_package()


def _record_packages(scene: Scene, model: str, version: Any) -> None:
    for variant in version.variants:
        scene.packages[(model, version.version, variant.name)] = {
            "id": variant.package_id,
            "url": f"/v1/packages/{variant.package_id}",
            "size": variant.package_size,
            "sha256": variant.package_id,
            "format": variant.format,
            "role": variant.role,
        }
        if variant.role == "cloud":
            scene.cloud_variant = variant.name


@pytest.fixture
def stage(
    shipped: Shipped,
    demo_build: Path,
    make_device: DeviceFactory,
    tmp_path: Path,
    zip64_bytes: bytes,
) -> Stage:
    scene = Scene(zip64=zip64_bytes, escape=tmp_path / "escape")
    transport = HostileTransport(scene)
    device = make_device(LINUX, transport=transport)
    assert device.sync().models["digits"].status == "updated"
    with shipped.admin() as admin:
        _record_packages(scene, "digits", admin.show_version("digits", 1))
        _record_packages(
            scene, "other", admin.push_build(demo_build, model="other", stage="production")
        )
        _record_packages(
            scene,
            "digits",
            admin.push_build(demo_build, encrypt=True, stage="production", force=True),
        )
    with httpx.Client(
        base_url=shipped.url, headers={"Authorization": f"Bearer {shipped.device_key}"}
    ) as http:
        for ref in scene.packages.values():
            scene.bytes[ref["sha256"]] = http.get(ref["url"]).raise_for_status().content
    return Stage(device, transport, scene, tmp_path, tmp_path / "cache")


def _files_outside(root: Path, cache: Path) -> set[Path]:
    return {p for p in root.rglob("*") if cache not in p.parents and p != cache}


# -- the attacks: (scene, request, honest answer) -> the answer the device gets ------------


def _on_checkin(change: Callable[[Scene, dict[str, Any]], None]) -> Callable[..., Answer]:
    def attack(scene: Scene, request: httpx.Request, answer: Answer) -> Answer:
        if not is_checkin(request) or answer.status != 200:
            return answer
        return rewrite_entry(answer, "digits", lambda entry: change(scene, entry))

    return attack


def _point_at(ref_of: Callable[[Scene], dict[str, Any]]) -> Callable[..., Answer]:
    """The digits entry keeps its fields but names another (validly signed) package."""

    def change(scene: Scene, entry: dict[str, Any]) -> None:
        ref = ref_of(scene)
        entry["package"].update({k: ref[k] for k in ("id", "url", "size", "sha256")})

    return _on_checkin(change)


def _device_package(model: str, version: int) -> Callable[[Scene], dict[str, Any]]:
    def pick(scene: Scene) -> dict[str, Any]:
        return next(
            ref
            for (name, number, _), ref in scene.packages.items()
            if (name, number, ref["role"], ref["format"]) == (model, version, "device", "onnx")
        )

    return pick


def _cloud_package(scene: Scene) -> dict[str, Any]:
    return scene.packages[("digits", 2, scene.cloud_variant)]


def _serve_instead(make: Callable[[Scene, bytes], bytes]) -> Callable[..., Answer]:
    """Announce and serve other bytes for the digits v2 package (size and sha256 match)."""

    def attack(scene: Scene, request: httpx.Request, answer: Answer) -> Answer:
        honest = _device_package("digits", 2)(scene)
        fake = make(scene, scene.bytes[honest["sha256"]])
        if is_checkin(request) and answer.status == 200:

            def change(entry: dict[str, Any]) -> None:
                entry["package"].update(size=len(fake), sha256=sha256(fake))

            return rewrite_entry(answer, "digits", change)
        if request.url.path == honest["url"]:
            answer.body = fake
        return answer

    return attack


def _set(path: str, value: Callable[[Scene], Any] | Any) -> Callable[..., Answer]:
    """Set one field (``"package.sha256"``) of the digits entry."""

    def change(scene: Scene, entry: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        for parent in parents:
            entry = entry[parent]
        entry[leaf] = value(scene) if callable(value) else value

    return _on_checkin(change)


def _is_new_digits(scene: Scene, request: httpx.Request) -> bool:
    """True for the download of the digits v2 package (the one under attack)."""
    return request.url.path == _device_package("digits", 2)(scene)["url"]


def _append_to_package(extra: bytes) -> Callable[..., Answer]:
    def attack(scene: Scene, request: httpx.Request, answer: Answer) -> Answer:
        if _is_new_digits(scene, request):
            answer.body += extra
        return answer

    return attack


def _endless_package(scene: Scene, request: httpx.Request, answer: Answer) -> Answer:
    if _is_new_digits(scene, request):
        answer.stream = InfiniteTail(answer.body)
    return answer


def _key_answer(body: bytes) -> Callable[..., Answer]:
    def attack(scene: Scene, request: httpx.Request, answer: Answer) -> Answer:
        if is_key(request):
            answer.body = body
        return answer

    return attack


def _endless_key_answer(scene: Scene, request: httpx.Request, answer: Answer) -> Answer:
    if is_key(request):
        answer.stream = InfiniteTail(b'{"key": "')
    return answer


def _redirect_package(scene: Scene, request: httpx.Request, answer: Answer) -> Answer:
    if _is_new_digits(scene, request):
        answer.status, answer.body = 302, b"moved"
        answer.headers.append(("location", f"http://{FOREIGN_HOST}/p"))
    return answer


def _cached_under_other_name(scene: Scene, request: httpx.Request, answer: Answer) -> Answer:
    """ "other" first (so its package is cached), then digits pointing at that package."""
    if not is_checkin(request) or answer.status != 200:
        return answer
    manifest = json.loads(answer.body)
    manifest["models"].sort(key=lambda m: m["name"] != "other")
    other = next(m for m in manifest["models"] if m["name"] == "other")
    digits = next(m for m in manifest["models"] if m["name"] == "digits")
    digits["package"].update({k: other["package"][k] for k in ("id", "url", "size", "sha256")})
    answer.body = json.dumps(manifest).encode()
    return answer


@dataclass(frozen=True)
class Row:
    """One attack: what it does, the typed error it must meet and the stage it fails at."""

    id: str
    attack: Callable[..., Answer]
    error: type[PocketMLError]
    reason: str


ATTACKS = [
    Row(
        "another-models-package", _point_at(_device_package("other", 1)), PackageMismatch, "verify"
    ),
    Row("the-cloud-variants-package", _point_at(_cloud_package), PackageMismatch, "verify"),
    Row(
        "downgrade-to-v1s-package",
        _point_at(_device_package("digits", 1)),
        PackageMismatch,
        "verify",
    ),
    Row("wrong-model-sha256", _set("model_sha256", "ab" * 32), PackageMismatch, "verify"),
    Row(
        "cloud-variant-announced",
        _set("variant", lambda s: s.cloud_variant),
        ProtocolError,
        "protocol",
    ),
    Row("cached-package-under-another-name", _cached_under_other_name, PackageMismatch, "verify"),
    Row("3-kb-past-the-size", _append_to_package(b"\0" * 3072), OversizeDownload, "download"),
    Row("an-endless-stream", _endless_package, OversizeDownload, "download"),
    Row("redirect-to-another-host", _redirect_package, IntegrityError, "download"),
    Row("sha256-with-dotdot", _set("package.sha256", "../../escape"), ProtocolError, "protocol"),
    Row(
        "sha256-absolute-path",
        _set("package.sha256", lambda s: str(s.escape)),
        ProtocolError,
        "protocol",
    ),
    Row(
        "sha256-upper-case", _set("package.sha256", lambda s: "AB" * 32), ProtocolError, "protocol"
    ),
    Row("size-negative", _set("package.size", -1), ProtocolError, "protocol"),
    Row("size-of-400-digits", _set("package.size", 10**400), ProtocolError, "protocol"),
    Row("version-as-text", _set("version", "2"), ProtocolError, "protocol"),
    Row(
        "content-key-id-path", _set("package.content_key_id", "../admin"), ProtocolError, "protocol"
    ),
    Row(
        "foreign-package-host",
        _set("package.url", f"https://{FOREIGN_HOST}/v1/packages/x"),
        InvalidInput,
        "download",
    ),
    Row(
        "scheme-relative-url",
        _set("package.url", f"//{FOREIGN_HOST}/v1/packages/x"),
        InvalidInput,
        "download",
    ),
    Row(
        "url-with-credentials",
        _set("package.url", "http://u:p@127.0.0.1/v1/packages/x"),
        InvalidInput,
        "download",
    ),
    Row(
        "foreign-cloud-route",
        _set("hybrid.cloud_route", f"https://{FOREIGN_HOST}/v1/x"),
        ProtocolError,
        "protocol",
    ),
    Row("key-not-base64", _key_answer(b'{"key_id": "x", "key": "%%%"}'), IntegrityError, "key"),
    Row("key-of-10-bytes", _key_answer(b'{"key": "AAAAAAAAAAAAAA=="}'), IntegrityError, "key"),
    Row("key-answer-not-json", _key_answer(b"<html>"), IntegrityError, "key"),
    Row("key-answer-a-list", _key_answer(b"[1, 2]"), IntegrityError, "key"),
    Row(
        "zip64-with-65540-members", _serve_instead(lambda s, b: s.zip64), MalformedPackage, "verify"
    ),
    Row("truncated-zip", _serve_instead(lambda s, b: b[: len(b) // 2]), MalformedPackage, "verify"),
]


@pytest.mark.parametrize("row", ATTACKS, ids=[row.id for row in ATTACKS])
def test_a_lying_network_is_refused_and_the_old_model_keeps_serving(
    stage: Stage, row: Row, digit_centroids: np.ndarray
) -> None:
    before = _files_outside(stage.root, stage.cache)
    stage.transport.attack = row.attack

    report = stage.device.sync()

    digits = report.models["digits"]
    assert (digits.status, digits.reason) == ("failed", row.reason), digits
    assert isinstance(digits.error, row.error), repr(digits.error)
    assert report.models["other"].status == "updated"
    prediction = stage.device.model("digits").predict(digit_centroids[7])
    assert (prediction.version, prediction.source, prediction.label) == (1, "local", "7")
    errors = [e for e in stage.device.queue.claim_batch(500).events if e["type"] == "error"]
    assert any(e["model"] == "digits" and e["code"] == digits.error.code for e in errors)
    assert _files_outside(stage.root, stage.cache) == before
    assert not stage.scene.escape.exists()
    assert not [r for r in stage.transport.requests if r.url.host == FOREIGN_HOST]


@pytest.mark.parametrize("row", ATTACKS, ids=[row.id for row in ATTACKS])
def test_after_an_attack_the_next_honest_sync_installs_the_new_version(
    stage: Stage, row: Row, digit_centroids: np.ndarray
) -> None:
    stage.transport.attack = row.attack
    stage.device.sync()
    stage.transport.attack = None

    digits = stage.device.sync().models["digits"]

    assert (digits.status, digits.version) == ("updated", 2), digits
    assert stage.device.model("digits").predict(digit_centroids[3]).version == 2


def test_without_an_attack_the_stage_installs_v2_encrypted(
    stage: Stage, digit_centroids: np.ndarray
) -> None:
    report = stage.device.sync()

    assert report.models["digits"].summary == "updated" and report.models["digits"].version == 2
    assert report.models["other"].status == "updated"
    assert [r for r in stage.transport.requests if is_key(r)]
    assert stage.device.model("digits").predict(digit_centroids[7]).version == 2


def test_an_endless_stream_is_cut_at_the_announced_size(stage: Stage) -> None:
    tails: list[InfiniteTail] = []

    def endless(scene: Scene, request: httpx.Request, answer: Answer) -> Answer:
        answer = _endless_package(scene, request, answer)
        if answer.stream is not None:
            tails.append(answer.stream)  # type: ignore[arg-type]
        return answer

    stage.transport.attack = endless
    stage.device.sync()

    size = _device_package("digits", 2)(stage.scene)["size"]
    assert tails and all(tail.pulled <= size + 2 * tail.chunk for tail in tails)
    assert not list((stage.cache / "partial").glob("*"))


def test_an_endless_check_in_answer_is_refused_and_nothing_changes(
    stage: Stage, digit_centroids: np.ndarray
) -> None:
    def endless(scene: Scene, request: httpx.Request, answer: Answer) -> Answer:
        if is_checkin(request):
            answer.stream = InfiniteTail(answer.body)
        return answer

    stage.transport.attack = endless
    checkin_before = (stage.cache / "checkin.json").read_bytes()

    with pytest.raises(IntegrityError, match="larger than"):
        stage.device.sync()

    assert (stage.cache / "checkin.json").read_bytes() == checkin_before
    assert stage.device.model("digits").predict(digit_centroids[7]).version == 1


def test_a_package_host_the_app_allowed_gets_no_device_key(
    stage: Stage, make_device: DeviceFactory, shipped: Shipped
) -> None:
    ref = _device_package("digits", 2)(stage.scene)
    stage.scene.cdn["/pkg"] = stage.scene.bytes[ref["sha256"]]
    stage.transport.attack = _set("package.url", f"https://{FOREIGN_HOST}/pkg")
    device = make_device(
        LINUX, cache="cdn-cache", transport=stage.transport, package_hosts=[FOREIGN_HOST]
    )

    digits = device.sync().models["digits"]

    cdn = [r for r in stage.transport.requests if r.url.host == FOREIGN_HOST]
    assert digits.summary == "updated" and digits.version == 2
    assert cdn and all("authorization" not in r.headers for r in cdn)
    own = [r for r in stage.transport.requests if r.url.host != FOREIGN_HOST]
    assert all(r.headers["authorization"] == f"Bearer {shipped.device_key}" for r in own)


def test_a_malformed_public_key_at_first_check_in_does_not_break_sync(
    stage: Stage, make_device: DeviceFactory
) -> None:
    def bad_key(scene: Scene, request: httpx.Request, answer: Answer) -> Answer:
        if is_checkin(request) and answer.status == 200:
            manifest = json.loads(answer.body)
            manifest["public_keys"]["ed25519:0000000000000000"] = "not base64!"
            answer.body = json.dumps(manifest).encode()
        return answer

    stage.transport.attack = bad_key
    device = make_device(LINUX, cache="fresh", transport=stage.transport)

    report = device.sync()

    assert set(report.models) == {"digits", "other"}
    assert all(isinstance(m.error, IntegrityError | type(None)) for m in report.models.values())


def test_an_unexpected_error_in_one_model_is_contained(
    stage: Stage, monkeypatch: pytest.MonkeyPatch, digit_centroids: np.ndarray
) -> None:
    real = _install.verify_package  # the verification step of protect.install_package

    def leaky(path: Path, **kwargs: Any) -> Any:
        verified = real(path, **kwargs)
        if verified.manifest["model"] == "digits":
            raise struct.error("a bug in a check (test fault)")
        return verified

    monkeypatch.setattr(_install, "verify_package", leaky)

    report = stage.device.sync()

    digits = report.models["digits"]
    assert (digits.status, digits.reason) == ("failed", "internal")
    assert isinstance(digits.error, PocketMLError)
    assert report.models["other"].status == "updated"
    assert stage.device.model("digits").predict(digit_centroids[7]).version == 1
