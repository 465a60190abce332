"""Generate the language-neutral conformance vectors every pocketml device client must pass.

Run from the repository root with pocketml installed (``python conformance/generate.py``);
``--check`` regenerates into a temporary folder and fails when a checked-in file differs,
which is how the test suite keeps the vectors current.

Everything is made by pocketml's own code (``pocketml.protect.build_package``, ``Keyring``,
``ModelSchema.normalize``, ONNX Runtime), and every expected outcome written to a JSON file
is first checked against the Python SDK here: a vector can only say what the reference
implementation really does. The output is deterministic: keys come from fixed seeds, and the
two inputs of a package build that are random or time-dependent in the library (the GCM
nonce and ``created_at``) are pinned for the duration of a build (``_pinned_build``), so
re-running gives byte-identical files.

The format of every file is described in ``conformance/README.md``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import hashlib
import json
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from pocketml.errors import PocketMLError
from pocketml.protect import (
    ContentKey,
    Keyring,
    SigningKey,
    build_package,
    canonical_json,
    extract_model,
    follow_keyrings,
    verify,
)
from pocketml.schema import ModelSchema

HERE = Path(__file__).resolve().parent
APP_ID = "conformance-app"
OTHER_APP_ID = "other-app"
MODEL = "conformance"
VARIANT = "logreg-onnx-fp32"
ISSUED_AT = "2026-12-01T00:00:00Z"
CREATED_AT = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
NONCE = bytes(range(1, 13))
CONTENT_KEY = ContentKey(key_id="aes:c0ffee00c0ffee00", secret=hashlib.sha256(b"content").digest())
WRONG_CONTENT_KEY = hashlib.sha256(b"not the content key").digest()

# A 2-feature logistic regression (two classes): softmax(x @ W + b).
WEIGHTS = [[1.5, -1.5], [-2.0, 2.0]]
BIAS = [0.25, -0.25]
SCHEMA: dict[str, Any] = {
    "format_version": 1,
    "name": MODEL,
    "task": "classification",
    "inputs": [
        {
            "name": "x",
            "dtype": "float32",
            "shape": [None, 2],
            "layout": "NC",
            "normalization": {"scale": 0.5, "mean": [1.0, 2.0], "std": [2.0, 4.0]},
        }
    ],
    "outputs": [{"name": "probabilities", "kind": "probabilities", "labels": ["no", "yes"]}],
}
CARD = "# conformance\n\nA 2-feature logistic regression for the client conformance vectors.\n"
CASCADE_THRESHOLD = 0.9  # between the vectors' confidences, so both paths are taken
RAW_INPUTS = [[0.0, 0.0], [4.0, 4.0], [10.0, -6.0], [-3.0, 12.0], [2.0, 4.0], [7.5, 1.25]]


def signing_key(name: str) -> SigningKey:
    """A fixed Ed25519 key per name: the vectors must not change between runs."""
    return SigningKey.from_private_bytes(
        hashlib.sha256(b"pocketml-conformance/" + name.encode()).digest()
    )


KEY_A, KEY_B, KEY_C = signing_key("a"), signing_key("b"), signing_key("c")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def keys_json(*keys: SigningKey) -> dict[str, str]:
    return {key.key_id: b64(key.public_bytes()) for key in keys}


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


# -- the model ----------------------------------------------------------------------------


def model_bytes() -> bytes:
    """The ONNX file, built with onnx's helpers (deterministic: no timestamps)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["z0"]),
            helper.make_node("Add", ["z0", "b"], ["z"]),
            helper.make_node("Softmax", ["z"], ["probabilities"], axis=1),
        ],
        "logreg",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])],
        initializer=[
            helper.make_tensor("W", TensorProto.FLOAT, [2, 2], [w for row in WEIGHTS for w in row]),
            helper.make_tensor("b", TensorProto.FLOAT, [2], BIAS),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="pocketml-conformance"
    )
    model.ir_version = 8
    return bytes(model.SerializeToString())


# -- packages -------------------------------------------------------------------------------


@contextlib.contextmanager
def _pinned_build() -> Iterator[None]:
    """Pin the build's nonce and clock so a package's bytes depend on its inputs only.

    Only this generator does this: a real build must use a fresh nonce per encryption.
    """

    class _Clock(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> _Clock:
            return cls.fromtimestamp(CREATED_AT.timestamp(), tz)

    with (
        mock.patch("pocketml.protect._package.os.urandom", lambda n: NONCE[:n]),
        mock.patch("pocketml.protect._package.datetime", _Clock),
    ):
        yield


def build(
    out: Path,
    model_file: Path,
    *,
    key: SigningKey,
    app_id: str = APP_ID,
    encrypted: bool = False,
    version: int = 1,
) -> bytes:
    with _pinned_build():
        build_package(
            model_file,
            out,
            app_id=app_id,
            model=MODEL,
            version=version,
            variant=VARIANT,
            model_format="onnx",
            precision="fp32",
            schema=SCHEMA,
            card=CARD,
            signing_key=key,
            content_key=CONTENT_KEY if encrypted else None,
            extra={"source": "conformance"},
        )
    return out.read_bytes()


def members_of(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(_io(data)) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def _io(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


def rezip(members: list[tuple[str, bytes]], *, compress: str | None = None) -> bytes:
    """Write members in pocketml's canonical stored layout (valid zip, valid CRCs).

    A tampered vector made this way passes every zip-level check, so the failure it expects
    comes from the package rules (signature, member list, hashes), not from a broken zip.
    """
    buffer = _io(b"")
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED if name == compress else zipfile.ZIP_STORED
            archive.writestr(info, data)
    return bytes(buffer.getvalue())


def flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 0x01
    return bytes(out)


def data_offset(package: bytes, member: str) -> int:
    """The offset of a stored member's first data byte in the package file."""
    with zipfile.ZipFile(_io(package)) as archive:
        info = archive.getinfo(member)
    return int(info.header_offset) + 30 + len(member.encode())


def replace_member(
    members: list[tuple[str, bytes]], name: str, data: bytes
) -> list[tuple[str, bytes]]:
    return [(n, data if n == name else d) for n, d in members]


def python_outcome(
    path: Path, trusted: dict[str, str], app_id: str, content_key: str | None, workdir: Path
) -> dict[str, Any]:
    """What the Python SDK does with a package: the vector's expected outcome."""
    trusted_raw = {k: base64.b64decode(v) for k, v in trusted.items()}
    try:
        package = verify(path, trusted_keys=trusted_raw, app_id=app_id)
        key = None if content_key is None else base64.b64decode(content_key)
        out = extract_model(package, workdir / f"{path.stem}.onnx", content_key=key)
    except PocketMLError as exc:
        return {"ok": False, "error": exc.code}
    return {
        "ok": True,
        "signing_key_id": package.signing_key_id,
        "model_sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "manifest": {
            k: package.manifest[k]
            for k in ("app_id", "model", "version", "variant", "model_format", "model_member")
        },
    }


def package_vectors(out: Path, model_file: Path, work: Path) -> list[dict[str, Any]]:
    """Every package vector: valid, encrypted, each tampered variant, rotation cases."""
    pkgs = out / "packages"
    pkgs.mkdir()
    plain = build(work / "plain.pkg", model_file, key=KEY_A)
    enc = build(work / "enc.pkg", model_file, key=KEY_A, encrypted=True)
    members = members_of(plain)
    manifest = dict(members)["manifest.json"]
    edited_manifest = manifest.replace(b'"version":1', b'"version":2')
    assert edited_manifest != manifest
    spaced = json.dumps(json.loads(manifest), sort_keys=True).encode()  # signed, not canonical
    key_b64 = b64(CONTENT_KEY.secret)
    trusted_a = keys_json(KEY_A)
    ring2 = _keyring(2, active=KEY_B, keys=(KEY_A, KEY_B), signers=(KEY_A, KEY_B))
    ring3 = _keyring(3, active=KEY_B, keys=(KEY_B,), revoked=(KEY_A,), signers=(KEY_B,))
    files: dict[str, bytes] = {
        "valid-plain.pkg": plain,
        "valid-encrypted.pkg": enc,
        "flip-manifest-byte.pkg": flip(plain, data_offset(plain, "manifest.json") + 10),
        "flip-model-byte.pkg": flip(plain, data_offset(plain, "model.onnx") + 20),
        "flip-signature-byte.pkg": flip(plain, data_offset(plain, "manifest.sig") + 5),
        "flip-ciphertext-byte.pkg": flip(enc, data_offset(enc, "model.onnx.enc") + 20),
        "manifest-edited.pkg": rezip(replace_member(members, "manifest.json", edited_manifest)),
        "signature-edited.pkg": rezip(replace_member(members, "manifest.sig", KEY_A.sign(b"x"))),
        "manifest-not-canonical.pkg": rezip(
            replace_member(
                replace_member(members, "manifest.json", spaced), "manifest.sig", KEY_A.sign(spaced)
            )
        ),
        "member-edited.pkg": rezip(replace_member(members, "card.md", b"# changed\n")),
        "missing-member.pkg": rezip([m for m in members if m[0] != "card.md"]),
        "extra-member.pkg": rezip([*members[:-1], ("notes.txt", b"added"), members[-1]]),
        "unsigned.pkg": rezip([m for m in members if m[0] != "manifest.sig"]),
        "no-manifest.pkg": rezip([m for m in members if m[0] != "manifest.json"]),
        "zip-slip.pkg": rezip([("../evil.onnx", b"x"), *members]),
        "compressed-member.pkg": rezip(members, compress="card.md"),
        "appended-bytes.pkg": plain + b"\x00trailing",
        "truncated.pkg": plain[: len(plain) // 2],
        "not-a-zip.pkg": b"this is not a zip file at all\n" * 4,
        "wrong-app.pkg": build(work / "wrong.pkg", model_file, key=KEY_A, app_id=OTHER_APP_ID),
        "untrusted-key.pkg": build(work / "c.pkg", model_file, key=KEY_C),
        "signed-by-rotated-key.pkg": build(work / "b.pkg", model_file, key=KEY_B, version=2),
    }
    cases: list[tuple[str, str, dict[str, str], str | None, str]] = [
        ("valid-plain", "valid-plain.pkg", trusted_a, None, "an untouched package"),
        (
            "valid-encrypted",
            "valid-encrypted.pkg",
            trusted_a,
            key_b64,
            "an encrypted package opened with its content key",
        ),
        (
            "encrypted-wrong-key",
            "valid-encrypted.pkg",
            trusted_a,
            b64(WRONG_CONTENT_KEY),
            "an encrypted package opened with another 32-byte key",
        ),
        (
            "encrypted-without-key",
            "valid-encrypted.pkg",
            trusted_a,
            None,
            "an encrypted package extracted without a content key",
        ),
        (
            "flip-manifest-byte",
            "flip-manifest-byte.pkg",
            trusted_a,
            None,
            "one bit of manifest.json flipped in place (its zip CRC no longer matches)",
        ),
        (
            "flip-model-byte",
            "flip-model-byte.pkg",
            trusted_a,
            None,
            "one bit of the model member flipped in place",
        ),
        (
            "flip-signature-byte",
            "flip-signature-byte.pkg",
            trusted_a,
            None,
            "one bit of manifest.sig flipped in place",
        ),
        (
            "flip-ciphertext-byte",
            "flip-ciphertext-byte.pkg",
            trusted_a,
            key_b64,
            "one bit of the encrypted model flipped in place",
        ),
        (
            "manifest-edited",
            "manifest-edited.pkg",
            trusted_a,
            None,
            "manifest.json changed (version 1 -> 2) and re-zipped with valid CRCs",
        ),
        (
            "signature-edited",
            "signature-edited.pkg",
            trusted_a,
            None,
            "manifest.sig replaced by A's signature of other bytes, re-zipped with valid CRCs",
        ),
        (
            "manifest-not-canonical",
            "manifest-not-canonical.pkg",
            trusted_a,
            None,
            "a manifest signed by A but written with spaces (not canonical JSON)",
        ),
        (
            "member-edited",
            "member-edited.pkg",
            trusted_a,
            None,
            "card.md replaced and re-zipped with valid CRCs",
        ),
        ("missing-member", "missing-member.pkg", trusted_a, None, "card.md removed"),
        ("extra-member", "extra-member.pkg", trusted_a, None, "notes.txt added"),
        ("unsigned", "unsigned.pkg", trusted_a, None, "manifest.sig removed (a downgrade)"),
        ("no-manifest", "no-manifest.pkg", trusted_a, None, "manifest.json removed"),
        ("zip-slip", "zip-slip.pkg", trusted_a, None, "a member named ../evil.onnx"),
        (
            "compressed-member",
            "compressed-member.pkg",
            trusted_a,
            None,
            "card.md stored deflated instead of stored",
        ),
        ("appended-bytes", "appended-bytes.pkg", trusted_a, None, "bytes after the zip end"),
        ("truncated", "truncated.pkg", trusted_a, None, "the first half of a package"),
        ("not-a-zip", "not-a-zip.pkg", trusted_a, None, "text, not a zip"),
        ("wrong-app", "wrong-app.pkg", trusted_a, None, "a valid package of another app"),
        ("untrusted-key", "untrusted-key.pkg", trusted_a, None, "signed by a key not pinned"),
        (
            "rotation-retired-key-still-verifies",
            "valid-plain.pkg",
            _trusted(ring2),
            None,
            "signed by key A, pinned keyring 2 keeps A retired (verify-only) with B active",
        ),
        (
            "rotation-new-key-verifies",
            "signed-by-rotated-key.pkg",
            _trusted(ring2),
            None,
            "signed by the new active key B, pinned keyring 2",
        ),
        (
            "rotation-new-key-before-pin",
            "signed-by-rotated-key.pkg",
            trusted_a,
            None,
            "signed by B while the device still pins only A",
        ),
        (
            "rotation-revoked-key-refused",
            "valid-plain.pkg",
            _trusted(ring3),
            None,
            "signed by key A, pinned keyring 3 revoked A",
        ),
    ]
    for name, data in files.items():
        (pkgs / name).write_bytes(data)
    vectors = []
    for name, file, trusted, content_key, description in cases:
        vectors.append(
            {
                "name": name,
                "description": description,
                "file": f"packages/{file}",
                "sha256": hashlib.sha256(files[file]).hexdigest(),
                "app_id": APP_ID,
                "trusted_keys": trusted,
                "content_key": content_key,
                "expect": python_outcome(pkgs / file, trusted, APP_ID, content_key, work),
            }
        )
    return vectors


# -- keyrings ---------------------------------------------------------------------------------


def _keyring(
    sequence: int,
    *,
    active: SigningKey,
    keys: tuple[SigningKey, ...],
    signers: tuple[SigningKey, ...],
    revoked: tuple[SigningKey, ...] = (),
    app_id: str = APP_ID,
) -> Keyring:
    ring = Keyring(
        app_id=app_id,
        sequence=sequence,
        issued_at=ISSUED_AT,
        active=active.key_id,
        keys={k.key_id: k.public_bytes() for k in keys},
        revoked=tuple(k.key_id for k in revoked),
    )
    return ring.signed_by(*signers)


def _trusted(ring: Keyring) -> dict[str, str]:
    return {k: b64(v) for k, v in ring.trusted_keys().items()}


def keyring_vectors() -> list[dict[str, Any]]:
    """The pin-and-rotate rule of docs/packages.md as (pinned, offered, chain) -> outcome."""
    r1 = _keyring(1, active=KEY_A, keys=(KEY_A,), signers=(KEY_A,))
    r2 = _keyring(2, active=KEY_B, keys=(KEY_A, KEY_B), signers=(KEY_A, KEY_B))
    r3 = _keyring(3, active=KEY_B, keys=(KEY_B,), revoked=(KEY_A,), signers=(KEY_B,))
    r2_foreign = _keyring(2, active=KEY_C, keys=(KEY_C,), signers=(KEY_C,))
    r2_not_by_active = _keyring(2, active=KEY_B, keys=(KEY_A, KEY_B), signers=(KEY_A,))
    r4_back = _keyring(4, active=KEY_B, keys=(KEY_A, KEY_B), signers=(KEY_B,))
    other_app = _keyring(1, active=KEY_A, keys=(KEY_A,), signers=(KEY_A,), app_id=OTHER_APP_ID)
    tampered = r2.to_dict()
    tampered["issued_at"] = "2026-12-02T00:00:00Z"
    bad_b64 = r1.to_dict()
    bad_b64["keys"] = {KEY_A.key_id: "not base64!"}
    cases: list[tuple[str, Any, Any, list[Any], str]] = [
        ("first-use", None, r1.to_dict(), [], "no pin: trust the first well-signed keyring"),
        (
            "shipped-bare-keys",
            keys_json(KEY_A),
            r2.to_dict(),
            [],
            "the app shipped {key_id: key} (sequence 0); keyring 2 is signed by A",
        ),
        ("rotation", r1.to_dict(), r2.to_dict(), [], "1 -> 2, signed by A (pinned) and B"),
        ("same-keyring", r2.to_dict(), r2.to_dict(), [], "the pinned keyring offered again"),
        ("stale", r2.to_dict(), r1.to_dict(), [], "an older keyring offered (replay)"),
        (
            "unendorsed",
            r1.to_dict(),
            r2_foreign.to_dict(),
            [],
            "keyring 2 of a key the device never trusted, signed only by it",
        ),
        (
            "not-signed-by-active",
            r1.to_dict(),
            r2_not_by_active.to_dict(),
            [],
            "keyring 2 names B active but only A signed it",
        ),
        ("tampered", r1.to_dict(), tampered, [], "issued_at changed after signing"),
        ("other-app", None, other_app.to_dict(), [], "a keyring of another app"),
        ("bad-base64", None, bad_b64, [], "a public key that is not base64"),
        (
            "revoked-key-comes-back",
            r3.to_dict(),
            r4_back.to_dict(),
            [],
            "keyring 4 lists A again after keyring 3 revoked it",
        ),
        (
            "revocation-without-chain",
            r1.to_dict(),
            r3.to_dict(),
            [],
            "pinned 1 (A); offered 3 is signed only by B",
        ),
        (
            "revocation-walks-chain",
            r1.to_dict(),
            r3.to_dict(),
            [r1.to_dict(), r2.to_dict()],
            "pinned 1 (A); offered 3 with chain [1, 2]: 2 is accepted first, then 3",
        ),
    ]
    vectors = []
    for name, pinned, offered, chain, description in cases:
        vectors.append(
            {
                "name": name,
                "description": description,
                "app_id": APP_ID,
                "pinned": pinned,
                "offered": offered,
                "chain": chain,
                "expect": _keyring_outcome(pinned, offered, chain),
            }
        )
    return vectors


def _keyring_outcome(pinned: Any, offered: Any, chain: list[Any]) -> dict[str, Any]:
    pin: Keyring | dict[str, bytes] | None
    if pinned is None:
        pin = None
    elif "sequence" in pinned:
        pin = Keyring.from_dict(pinned)
    else:
        pin = {k: base64.b64decode(v) for k, v in pinned.items()}
    try:
        ring = follow_keyrings(pin, offered, chain, app_id=APP_ID)
    except PocketMLError as exc:
        return {"ok": False, "error": exc.code}
    return {"ok": True, "sequence": ring.sequence, "trusted_keys": sorted(ring.trusted_keys())}


# -- predictions ------------------------------------------------------------------------------


def prediction_vectors(model_file: Path) -> dict[str, Any]:
    import onnxruntime as ort

    schema = ModelSchema.from_dict(SCHEMA)
    raw = np.asarray(RAW_INPUTS, dtype=np.float32)
    normalized = schema.normalize(raw)
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    probs = session.run(None, {"x": normalized})[0]
    labels = SCHEMA["outputs"][0]["labels"]
    cases = []
    for i in range(len(raw)):
        index = int(np.argmax(probs[i]))
        cases.append(
            {
                "raw": [float(v) for v in raw[i]],
                "normalized": [float(v) for v in normalized[i]],
                "probabilities": [float(v) for v in probs[i]],
                "index": index,
                "label": labels[index],
                "confidence": float(probs[i][index]),
            }
        )
    return {"model": "model/logreg.onnx", "schema": SCHEMA, "tolerance": 1e-5, "cases": cases}


# -- canonical JSON -----------------------------------------------------------------------------


def canonical_vectors() -> list[dict[str, Any]]:
    """JSON texts and their canonical form (what a manifest's signed bytes must be).

    A client that re-serialises to check a manifest must spell numbers and strings exactly
    as Python's ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=True)``.
    """
    values: list[Any] = [
        {"b": 1, "a": [1.0, 0.1, 1e-4, 1e-5, 1e16, 1.5e16, 123456789.125, -0.0, 2.5e-7, 1e300]},
        {"text": 'caf\u00e9 \u2603 \U0001f600 "q" \\ \n\t\x01\x7f/', "z": None, "y": True},
        {"nested": {"z": {"b": [], "a": {}}, "a": -12345678901234567890}},
        [0, -1, 3.0e-3, 5e-324, 1.7976931348623157e308],
    ]
    cases = []
    for value in values:
        text = json.dumps(value, indent=2, ensure_ascii=False)  # spaced, unsorted, UTF-8
        cases.append({"json": text, "canonical": canonical_json(json.loads(text)).decode()})
    return cases


# -- the server scenario ------------------------------------------------------------------------


def server_scenario(model_file: Path) -> dict[str, Any]:
    """What a runner pushes to a real server, and what every client must then observe."""
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    return {
        "models": [
            {
                "name": MODEL,
                "variant": VARIANT,
                "format": "onnx",
                "precision": "fp32",
                "file": "model/logreg.onnx",
                "encrypt": False,
                "schema": SCHEMA,
                "model_sha256": digest,
            },
            {
                "name": f"{MODEL}-enc",
                "variant": VARIANT,
                "format": "onnx",
                "precision": "fp32",
                "file": "model/logreg.onnx",
                "encrypt": True,
                "schema": {**SCHEMA, "name": f"{MODEL}-enc"},
                "model_sha256": digest,
            },
            {
                "name": f"{MODEL}-cascade",
                "variant": VARIANT,
                "format": "onnx",
                "precision": "fp32",
                "file": "model/logreg.onnx",
                "encrypt": False,
                "schema": {**SCHEMA, "name": f"{MODEL}-cascade"},
                "model_sha256": digest,
                "policy": {"hybrid": {"mode": "cascade", "threshold": CASCADE_THRESHOLD}},
            },
        ],
        "device": {
            "platform": "linux",
            "os_version": "6.1",
            "app_version": "1.0.0",
            "formats": ["onnx"],
            "device_id": "conformance-device-0001",
        },
        "cases": [
            {
                "name": "checkin-etag",
                "steps": "check in; the answer is 200 with ETag = quoted sha256 of the body; check "
                "in again with If-None-Match: <etag>; the answer is 304 with no body.",
            },
            {
                "name": "install",
                "steps": "sync: every model of 'models' is downloaded, verified with the pinned "
                "keyring of the check-in, bound to its entry, decrypted with the key "
                "from GET /v1/keys/{id} when encrypted, and active with model_sha256.",
            },
            {
                "name": "not-modified",
                "steps": "sync again: the check-in answers 304 and nothing is downloaded.",
            },
            {
                "name": "resume",
                "steps": "a fresh device whose partial download holds the first floor(size/2) "
                "bytes of the package (the app was killed at 50 %) syncs: it asks "
                "Range: bytes=<half>- and fetches exactly size - half bytes; the server "
                "answers 206 with Content-Range bytes <half>-<size-1>/<size>.",
            },
            {
                "name": "predict-local",
                "steps": "predict every case of predictions.json with the installed model: "
                "label, index and probabilities within tolerance, source 'local'.",
            },
            {
                "name": "predict-cascade",
                "steps": "predict every case with the model whose policy is cascade (threshold "
                "in its 'policy'): a case whose local confidence is below the threshold is "
                "answered by the server's cloud route (source 'cloud', version 1, the same "
                "label and probabilities within tolerance), the others locally.",
            },
            {
                "name": "feedback",
                "steps": "send label feedback for one prediction; the server accepts it (202), "
                "at once or at the next flush.",
            },
            {
                "name": "telemetry",
                "steps": "after the predictions, flush: the server accepts one inference event "
                "per prediction plus one download event per installed package; a second "
                "flush sends nothing.",
            },
        ],
    }


# -- network-fault scripts ----------------------------------------------------------------------


def fault_scripts(out: Path, packages: list[dict[str, Any]]) -> dict[str, Any]:
    """Faults a real server will not produce on demand, as scripts over a scripted transport.

    Each step is a sync against a scripted server (the entry below with the given package
    file and overrides) or a prediction; the runner's transport serves exactly what the step
    says. Download retries are 0 (the runner configures its client so), cloud retries are the
    entry's ``max_retries``, and waits between retries are skipped.
    """
    by_file = {v["file"]: v for v in packages}
    valid = next(v for v in packages if v["name"] == "valid-plain")
    ring = _keyring(1, active=KEY_A, keys=(KEY_A,), signers=(KEY_A,))

    def sync(file: str, expect: dict[str, Any], **fault: Any) -> dict[str, Any]:
        size = (out / file).stat().st_size
        return {
            "sync": {"package": file, "sha256": by_file[file]["sha256"], "size": size, **fault},
            "expect": expect,
        }

    plain = "packages/valid-plain.pkg"
    plain_size = (out / plain).stat().st_size
    half = plain_size // 2
    low = 0  # predictions.json case 0: confidence 0.73, below the cascade threshold below
    cascade = {"mode": "cascade", "threshold": CASCADE_THRESHOLD, "max_retries": 2}
    return {
        "app_id": APP_ID,
        "keyring": ring.to_dict(),
        "device": {
            "platform": "linux",
            "os_version": "6.1",
            "app_version": "1.0.0",
            "formats": ["onnx"],
            "device_id": "conformance-fault-01",
        },
        "entry": {
            "name": MODEL,
            "version": 1,
            "variant": VARIANT,
            "format": "onnx",
            "precision": "fp32",
            "model_sha256": valid["expect"]["model_sha256"],
            "package": {"signing_key_id": KEY_A.key_id, "content_key_id": None},
            "download_policy": {
                "wifi_only": False,
                "charging_only": False,
                "max_cellular_bytes": 0,
            },
            "hybrid": {
                "mode": "local",
                "threshold": 0.8,
                "cloud_route": f"/v1/models/{MODEL}/predict",
                "cloud_variant": None,
                "timeout_ms": 1000,
                "max_retries": 0,
            },
            "schema": SCHEMA,
        },
        "scripts": [
            {
                "name": "tampered-package-keeps-previous-model",
                "description": "a valid install, then the server announces and serves a package "
                "with one model byte flipped: refused, the old model still answers",
                "steps": [
                    sync(plain, {"status": "updated"}),
                    sync(
                        "packages/flip-model-byte.pkg",
                        {"status": "failed", "error": "package_hash_mismatch"},
                    ),
                    {"predict": low, "expect": {"source": "local"}},
                ],
            },
            {
                "name": "untrusted-package-keeps-previous-model",
                "description": "the server serves a package signed by a key the device never "
                "pinned",
                "steps": [
                    sync(plain, {"status": "updated"}),
                    sync(
                        "packages/untrusted-key.pkg",
                        {"status": "failed", "error": "package_untrusted_key"},
                    ),
                    {"predict": low, "expect": {"source": "local"}},
                ],
            },
            {
                "name": "cut-download-resumes",
                "description": f"the connection breaks after {half} bytes; the next sync asks "
                f"Range: bytes={half}- and fetches only the rest",
                "steps": [
                    sync(plain, {"status": "failed", "error": "unavailable"}, cut_at=half),
                    sync(
                        plain,
                        {
                            "status": "updated",
                            "bytes_downloaded": plain_size - half,
                            "resumed": True,
                        },
                    ),
                ],
            },
            {
                "name": "oversize-download-refused",
                "description": "Content-Length one byte past the announced size: refused before a "
                "byte is written",
                "steps": [
                    sync(
                        plain,
                        {"status": "failed", "error": "download_oversize"},
                        extra_content_length=1,
                    )
                ],
            },
            {
                "name": "checkin-faults-keep-the-installed-model",
                "description": "after an install, the check-in answers 503, then HTML with "
                "200: each sync fails with a typed error and the model still answers locally",
                "steps": [
                    sync(plain, {"status": "updated"}),
                    {
                        **sync(plain, {"raises": "server_error"}),
                        "checkin": {"status": 503, "body": "Service Unavailable"},
                    },
                    {
                        **sync(plain, {"raises": "protocol_error"}),
                        "checkin": {"status": 200, "body": "<html>"},
                    },
                    {"predict": low, "expect": {"source": "local"}},
                ],
            },
            {
                "name": "cloud-5xx-falls-back",
                "description": "cascade, the cloud answers 503: retried max_retries times, then "
                "the local answer is returned as fallback",
                "steps": [
                    sync(plain, {"status": "updated"}, hybrid=cascade),
                    {
                        "predict": low,
                        "cloud": {"status": 503},
                        "expect": {"source": "fallback", "cloud_calls": 3},
                    },
                ],
            },
            {
                "name": "cloud-garbage-falls-back",
                "description": "cascade, the cloud answers 200 with HTML: the local answer as "
                "fallback",
                "steps": [
                    sync(plain, {"status": "updated"}, hybrid=cascade),
                    {
                        "predict": low,
                        "cloud": {"status": 200, "body": "<html>"},
                        "expect": {"source": "fallback"},
                    },
                ],
            },
        ],
    }


# -- the files -----------------------------------------------------------------------------------


def generate(out: Path) -> None:
    """Write every vector file into ``out`` (which must be empty or absent)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "model").mkdir()
    model_file = out / "model" / "logreg.onnx"
    model_file.write_bytes(model_bytes())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        vectors = package_vectors(out, model_file, work)
        write_json(out / "packages.json", {"vectors": vectors})
    write_json(out / "faults.json", fault_scripts(out, vectors))
    write_json(out / "keyrings.json", {"vectors": keyring_vectors()})
    write_json(out / "predictions.json", prediction_vectors(model_file))
    write_json(out / "canonical.json", {"vectors": canonical_vectors()})
    write_json(out / "server.json", server_scenario(model_file))
    write_json(
        out / "keys.json",
        {
            "app_id": APP_ID,
            "signing_keys": keys_json(KEY_A, KEY_B, KEY_C),
            "content_key": {"key_id": CONTENT_KEY.key_id, "key": b64(CONTENT_KEY.secret)},
        },
    )


GENERATED = (
    "model",
    "packages",
    "packages.json",
    "canonical.json",
    "faults.json",
    "keyrings.json",
    "predictions.json",
    "server.json",
    "keys.json",
)


def differences(target: Path) -> list[str]:
    """Files under ``target`` that differ from a fresh generation (empty when current)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "v"
        generate(fresh)
        names = {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file()}
        names |= (
            {
                p.relative_to(target)
                for g in GENERATED
                for p in (target / g).rglob("*")
                if p.is_file()
            }
            if target.exists()
            else set()
        )
        return sorted(
            str(n)
            for n in names
            if not (target / n).is_file()
            or not (fresh / n).is_file()
            or (target / n).read_bytes() != (fresh / n).read_bytes()
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the files are stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = differences(HERE)
        for name in stale:
            print(f"stale: conformance/{name}")
        return 1 if stale else 0
    for name in GENERATED:
        path = HERE / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "v"
        generate(fresh)
        for item in fresh.iterdir():
            shutil.move(str(item), HERE / item.name)
    print("conformance vectors written to", HERE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
