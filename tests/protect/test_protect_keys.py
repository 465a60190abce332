"""Keys: Ed25519 signing keys and their ids, content keys, the master key at rest."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from pocketml.errors import IntegrityError, InvalidInput
from pocketml.protect import (
    ContentKey,
    DecryptionFailed,
    MasterKey,
    SignatureInvalid,
    SigningKey,
    signing_key_id,
    verify_signature,
)


def test_signing_key_round_trips_through_its_private_bytes() -> None:
    key = SigningKey.generate()
    again = SigningKey.from_private_bytes(key.private_bytes())
    assert again.public_bytes() == key.public_bytes()
    assert again.key_id == key.key_id
    assert len(key.private_bytes()) == 32
    assert len(key.public_bytes()) == 32


def test_key_id_is_derived_from_the_public_key() -> None:
    key = SigningKey.generate()
    assert key.key_id == signing_key_id(key.public_bytes())
    assert key.key_id.startswith("ed25519:")
    assert len(key.key_id) == len("ed25519:") + 16
    assert key.key_id != SigningKey.generate().key_id


def test_signature_verifies_and_rejects_other_data_or_key() -> None:
    key = SigningKey.generate()
    sig = key.sign(b"manifest")
    verify_signature(key.public_bytes(), b"manifest", sig)
    with pytest.raises(SignatureInvalid):
        verify_signature(key.public_bytes(), b"manifesT", sig)
    with pytest.raises(SignatureInvalid):
        verify_signature(SigningKey.generate().public_bytes(), b"manifest", sig)
    with pytest.raises(SignatureInvalid, match="64 bytes; got 63"):
        verify_signature(key.public_bytes(), b"manifest", sig[:-1])


def test_malformed_public_key_is_a_caller_error() -> None:
    with pytest.raises(InvalidInput, match="32 bytes; got 31"):
        verify_signature(b"\x00" * 31, b"data", b"\x00" * 64)


def test_signing_key_repr_hides_the_private_key() -> None:
    key = SigningKey.generate()
    assert key.private_bytes().hex() not in repr(key)
    assert key.key_id in repr(key)


def test_content_key_is_32_random_bytes_with_an_aes_id() -> None:
    first, second = ContentKey.generate(), ContentKey.generate()
    assert len(first.secret) == 32
    assert first.key_id.startswith("aes:")
    assert (first.key_id, first.secret) != (second.key_id, second.secret)
    assert first.secret.hex() not in repr(first)


def test_content_key_rejects_a_short_secret() -> None:
    with pytest.raises(InvalidInput, match="32 bytes; got 16"):
        ContentKey("aes:1", b"\x00" * 16)


def test_master_key_wraps_and_unwraps_with_the_same_label() -> None:
    master = MasterKey(os.urandom(32))
    blob = master.wrap(b"secret bytes", "aes:1")
    assert b"secret bytes" not in blob
    assert master.unwrap(blob, "aes:1") == b"secret bytes"


def test_master_key_refuses_a_blob_wrapped_for_another_label() -> None:
    master = MasterKey(os.urandom(32))
    blob = master.wrap(b"secret", "aes:1")
    with pytest.raises(DecryptionFailed, match="aes:2"):
        master.unwrap(blob, "aes:2")


def test_wrong_master_key_is_an_integrity_error() -> None:
    blob = MasterKey(os.urandom(32)).wrap(b"secret", "aes:1")
    with pytest.raises(IntegrityError):
        MasterKey(os.urandom(32)).unwrap(blob, "aes:1")


@pytest.mark.parametrize("edit", ["flip", "cut", "version"])
def test_tampered_wrapped_blob_is_refused(edit: str) -> None:
    master = MasterKey(os.urandom(32))
    blob = bytearray(master.wrap(b"secret", "aes:1"))
    if edit == "flip":
        blob[-1] ^= 1
    elif edit == "cut":
        del blob[10:]
    else:
        blob[0] = 2
    with pytest.raises(DecryptionFailed):
        master.unwrap(bytes(blob), "aes:1")


def test_master_key_from_b64_matches_the_raw_key() -> None:
    raw = os.urandom(32)
    text = base64.b64encode(raw).decode()
    blob = MasterKey(raw).wrap(b"s", "l")
    assert MasterKey.from_b64(text).unwrap(blob, "l") == b"s"
    assert MasterKey.from_b64(text).key_id == MasterKey(raw).key_id


@pytest.mark.parametrize("text", ["not base64!", base64.b64encode(b"short").decode()])
def test_master_key_from_bad_b64_is_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput):
        MasterKey.from_b64(text)


def test_load_or_create_makes_a_private_file_and_reloads_it(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    created = MasterKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_size == 32
    assert MasterKey.load_or_create(path).key_id == created.key_id
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]  # no temp left


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_load_or_create_refuses_a_group_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    MasterKey.load_or_create(path)
    path.chmod(0o640)
    with pytest.raises(InvalidInput, match="chmod 600"):
        MasterKey.load_or_create(path)


def test_load_or_create_refuses_a_file_of_the_wrong_length(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(b"\x00" * 31)
    path.chmod(0o600)
    with pytest.raises(InvalidInput, match="exactly 32 bytes; got 31"):
        MasterKey.load_or_create(path)


def test_load_or_create_works_without_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: object, dst: object) -> None:
        raise PermissionError("injected: this filesystem has no hard links")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "master.key"
    created = MasterKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert MasterKey.load_or_create(path).key_id == created.key_id
    assert [p.name for p in tmp_path.iterdir() if p.name != "pocketml-home"] == ["master.key"]


def test_load_or_create_keeps_a_key_another_process_created_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "master.key"
    theirs = os.urandom(32)
    real_link = os.link

    def racing_link(src: str, dst: str) -> None:
        Path(dst).write_bytes(theirs)  # the other process wins the race
        Path(dst).chmod(0o600)
        real_link(src, dst)

    monkeypatch.setattr(os, "link", racing_link)
    assert MasterKey.load_or_create(path).key_id == MasterKey(theirs).key_id
