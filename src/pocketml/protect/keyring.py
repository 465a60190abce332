"""Keyrings: the signed list of the signing keys a device may trust, and how it changes.

A package says which key signed it; a device must know which keys it may trust. Pinning a
bare ``{key_id: public key}`` mapping cannot express rotation or revocation: a retired key
stays trusted forever and a fresh install pins whatever it is offered. A :class:`Keyring`
is that mapping as a small signed document with a ``sequence`` number::

    {"app_id": "app_..", "sequence": 3, "issued_at": "2026-12-04T18:00:00Z",
     "active": "ed25519:bb..", "keys": {"ed25519:aa..": "<b64>", "ed25519:bb..": "<b64>"},
     "revoked": ["ed25519:cc.."], "signatures": {"ed25519:aa..": "<b64>", ...}}

Each signature is Ed25519 over ``KEYRING_CONTEXT + canonical_json(document without
"signatures")``; the context prefix keeps a keyring signature from ever being mistaken for
a package-manifest signature made with the same key. :func:`accept_keyring` is the one
rule a device applies to an offered keyring (docs/packages.md, "Signing keys: rotation
and revocation", explains it and what a stolen key can still do).

This module imports only the standard library, ``cryptography`` (through ``_keys``) and
pocketml's errors, like the rest of ``protect``: the device SDK depends on it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pocketml.errors import IntegrityError
from pocketml.protect._keys import SigningKey, signing_key_id, verify_signature
from pocketml.protect._manifest import canonical_json

__all__ = [
    "KEYRING_CONTEXT",
    "Keyring",
    "KeyringInvalid",
    "KeyringStale",
    "accept_keyring",
    "follow_keyrings",
]

KEYRING_CONTEXT = b"pocketml-keyring-v1\x00"
MAX_KEYS = 64
MAX_REVOKED = 1024
MAX_SEQUENCE = 2**63 - 1
MAX_CHAIN = 16
_KEY_ID = re.compile(r"^ed25519:[0-9a-f]{16}$")
_APP_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_FIELDS = frozenset({"app_id", "sequence", "issued_at", "active", "keys", "revoked", "signatures"})


class KeyringInvalid(IntegrityError):
    """A keyring is malformed, for another app, or not signed by a key the device trusts."""

    code = "keyring_invalid"


class KeyringStale(KeyringInvalid):
    """A keyring's sequence is not newer than the pinned one (a replay or a stale server)."""

    code = "keyring_stale"


@dataclass(frozen=True)
class Keyring:
    """An app's signed list of trusted package-signing keys.

    Attributes:
        app_id: the app the keys belong to.
        sequence: grows by one with every change (rotation, revocation); devices only
            move forward.
        issued_at: when the server issued it (ISO 8601 UTC text; informative only).
        active: the id of the key that signs new packages (one of ``keys``).
        keys: key id -> raw 32-byte Ed25519 public key: every key whose packages verify
            (the active one and retired, verify-only ones).
        revoked: ids of keys that must never be trusted again.
        signatures: key id -> 64-byte Ed25519 signature of :meth:`signed_bytes`.
    """

    app_id: str
    sequence: int
    issued_at: str
    active: str
    keys: Mapping[str, bytes]
    revoked: tuple[str, ...] = ()
    signatures: Mapping[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_document(self)

    # -- bytes and JSON -------------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        """The signed fields as JSON-ready data (everything but ``signatures``)."""
        return {
            "app_id": self.app_id,
            "sequence": self.sequence,
            "issued_at": self.issued_at,
            "active": self.active,
            "keys": {k: _b64(v) for k, v in sorted(self.keys.items())},
            "revoked": sorted(self.revoked),
        }

    def signed_bytes(self) -> bytes:
        """What every signature covers: the context prefix + the canonical document."""
        return KEYRING_CONTEXT + canonical_json(self.document())

    def to_dict(self) -> dict[str, Any]:
        """The JSON form published in the manifest and by the admin API."""
        document = self.document()
        document["signatures"] = {k: _b64(v) for k, v in sorted(self.signatures.items())}
        return document

    def to_json(self) -> bytes:
        """Canonical JSON bytes of :meth:`to_dict` (what an app ships in its build)."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> Keyring:
        """Parse the JSON form strictly; signatures are decoded but not verified.

        Raises:
            KeyringInvalid: a missing, extra or mistyped field, bad base64, a key whose
                id is not derived from its bytes, or an inconsistent document.
        """
        if not isinstance(data, Mapping) or set(data) != _FIELDS:
            given = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise KeyringInvalid(
                f"a keyring is an object with exactly the fields {sorted(_FIELDS)}; got "
                f"{given}. Ship or serve the keyring exactly as the server publishes it."
            )
        keys, signatures, revoked = data["keys"], data["signatures"], data["revoked"]
        if not isinstance(keys, Mapping) or not isinstance(signatures, Mapping):
            raise KeyringInvalid("keyring 'keys' and 'signatures' must be objects.")
        if not isinstance(revoked, list) or not all(isinstance(k, str) for k in revoked):
            raise KeyringInvalid("keyring 'revoked' must be a list of key ids.")
        if len(keys) > MAX_KEYS or len(signatures) > MAX_KEYS or len(revoked) > MAX_REVOKED:
            raise KeyringInvalid(
                f"a keyring holds at most {MAX_KEYS} keys and signatures and "
                f"{MAX_REVOKED} revoked ids; got {len(keys)}, {len(signatures)}, {len(revoked)}."
            )
        return cls(
            app_id=data["app_id"],
            sequence=data["sequence"],
            issued_at=data["issued_at"],
            active=data["active"],
            keys={str(k): _unb64(v, 32, f"public key {k!r}") for k, v in keys.items()},
            revoked=tuple(revoked),
            signatures={
                str(k): _unb64(v, 64, f"signature by {k!r}") for k, v in signatures.items()
            },
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Keyring:
        """Parse keyring JSON text (for instance a file shipped with the app).

        Raises:
            KeyringInvalid: not JSON, or see :meth:`from_dict`.
        """
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise KeyringInvalid(f"a keyring must be JSON; got unreadable text ({exc}).") from exc
        return cls.from_dict(data)

    # -- signing and checking -------------------------------------------------------------

    def unsigned(self) -> Keyring:
        """This document without signatures (to sign a changed copy)."""
        return replace(self, signatures={})

    def signed_by(self, *signers: SigningKey) -> Keyring:
        """A copy with signatures by ``signers`` added (each must be one of ``keys``).

        Raises:
            KeyringInvalid: a signer is not one of the keyring's keys.
        """
        data = self.signed_bytes()
        signatures = dict(self.signatures)
        for signer in signers:
            if self.keys.get(signer.key_id) != signer.public_bytes():
                raise KeyringInvalid(
                    f"key {signer.key_id} cannot sign this keyring: it is not one of its "
                    f"keys {sorted(self.keys)}. Add the key first or sign with a listed key."
                )
            signatures[signer.key_id] = signer.sign(data)
        return replace(self, signatures=signatures)

    def valid_signers(self) -> frozenset[str]:
        """The ids of the keys whose signature verifies; raises if any signature is bad.

        Raises:
            KeyringInvalid: a signature does not verify, or the signer is not in ``keys``.
        """
        data = self.signed_bytes()
        for key_id, signature in self.signatures.items():
            public = self.keys.get(key_id)
            if public is None:
                raise KeyringInvalid(
                    f"keyring {self.sequence} carries a signature by {key_id}, which is not "
                    "one of its keys; signatures must come from keys that stay trusted."
                )
            try:
                verify_signature(public, data, signature)
            except IntegrityError as exc:
                raise KeyringInvalid(
                    f"the signature by {key_id} on keyring {self.sequence} does not verify: "
                    "the document was modified after signing. It is ignored."
                ) from exc
        return frozenset(self.signatures)

    def trusted_keys(self) -> dict[str, bytes]:
        """``{key_id: raw public key}`` to pass to ``verify_package`` (revoked ids never)."""
        return {k: bytes(v) for k, v in self.keys.items() if k not in self.revoked}


def accept_keyring(
    pinned: Keyring | Mapping[str, bytes] | None, offered: Any, *, app_id: str
) -> Keyring:
    """Decide whether a device moves from its ``pinned`` keyring to an ``offered`` one.

    Rules (docs/packages.md, "Signing keys: rotation and revocation"):

    - the offered keyring parses, is for ``app_id``, and every signature on it verifies;
    - it is signed by its own active key;
    - with a pin: its sequence is greater than the pinned one, it is signed by a key the
      device trusts now that is still in the offered ``keys``, and no key the pin lists
      as revoked comes back;
    - without a pin (trust on first use): the checks above that need no pin.

    Args:
        pinned: the keyring the device trusts now; or the bare ``{key_id: public key}``
            an app shipped (sequence 0: any keyring one of them signs is newer); or None
            before the first pin.
        offered: the keyring the server offers (its JSON form, or a Keyring).
        app_id: the app this device belongs to.

    Returns:
        The keyring to pin: ``offered`` when accepted, ``pinned`` when both are the same.

    Raises:
        KeyringStale: the offered sequence is not newer (and the document differs).
        KeyringInvalid: anything else; the caller keeps its pin.
    """
    keyring = offered if isinstance(offered, Keyring) else Keyring.from_dict(offered)
    if keyring.app_id != app_id:
        raise KeyringInvalid(
            f"the keyring is for app {keyring.app_id!r}, this device belongs to {app_id!r}."
        )
    if isinstance(pinned, Keyring) and keyring.to_json() == pinned.to_json():
        return pinned
    signers = keyring.valid_signers()
    if keyring.active not in signers:
        raise KeyringInvalid(
            f"keyring {keyring.sequence} is not signed by its active key {keyring.active}."
        )
    if pinned is None:
        return keyring
    if isinstance(pinned, Keyring):
        sequence, trusted, revoked = pinned.sequence, pinned.trusted_keys(), set(pinned.revoked)
    else:
        sequence, trusted, revoked = 0, {k: bytes(v) for k, v in pinned.items()}, set()
    if keyring.sequence <= sequence:
        raise KeyringStale(
            f"keyring {keyring.sequence} is not newer than the pinned keyring "
            f"{sequence}; a device never goes back to an older key list."
        )
    if not any(keyring.keys[k] == trusted[k] for k in signers & set(trusted)):
        raise KeyringInvalid(
            f"keyring {keyring.sequence} is signed by {sorted(signers)}, none of which this "
            f"device trusts now ({sorted(trusted)}) and keeps; it is ignored."
        )
    back = revoked & set(keyring.keys)
    if back:
        raise KeyringInvalid(
            f"keyring {keyring.sequence} trusts {sorted(back)} again, which an earlier "
            "keyring revoked; a revoked key is never trusted again."
        )
    return keyring


def _check_document(ring: Keyring) -> None:
    if not isinstance(ring.app_id, str) or not _APP_ID.match(ring.app_id):
        raise KeyringInvalid(f"keyring app_id must be an app id; got {ring.app_id!r}.")
    seq = ring.sequence
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQUENCE:
        raise KeyringInvalid(f"keyring sequence must be an int in [1, 2**63-1]; got {seq!r}.")
    if not isinstance(ring.issued_at, str) or not 1 <= len(ring.issued_at) <= 40:
        raise KeyringInvalid(f"keyring issued_at must be ISO 8601 text; got {ring.issued_at!r}.")
    _check_ids(ring.keys, "keys")
    _check_ids(ring.signatures, "signatures")
    _check_ids(ring.revoked, "revoked")
    for key_id, public in ring.keys.items():
        if signing_key_id(bytes(public)) != key_id:
            raise KeyringInvalid(
                f"keyring key {key_id} does not match its bytes (their id is "
                f"{signing_key_id(bytes(public))}); the keyring was altered."
            )
    if ring.active not in ring.keys:
        raise KeyringInvalid(f"keyring active key {ring.active!r} is not one of its keys.")
    if set(ring.revoked) & set(ring.keys) or len(set(ring.revoked)) != len(ring.revoked):
        raise KeyringInvalid("a keyring key cannot be revoked and trusted, or revoked twice.")


def _check_ids(ids: Iterable[Any], what: str) -> None:
    for key_id in ids:
        if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
            raise KeyringInvalid(
                f"keyring {what} must use key ids like 'ed25519:<16 hex>'; got {key_id!r}."
            )


def _b64(raw: bytes) -> str:
    return base64.b64encode(bytes(raw)).decode("ascii")


def _unb64(text: Any, size: int, what: str) -> bytes:
    if isinstance(text, str) and len(text) <= 4 * size:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == size:
            return raw
    raise KeyringInvalid(f"keyring {what} must be base64 of {size} bytes; got {text!r:.80}.")


def follow_keyrings(
    pinned: Keyring | Mapping[str, bytes] | None,
    offered: Any,
    chain: Sequence[Any] = (),
    *,
    app_id: str,
) -> Keyring:
    """Like :func:`accept_keyring`, walking the earlier keyrings in ``chain`` when needed.

    A device whose every trusted key has since been revoked cannot check the newest
    keyring directly; the server publishes the keyrings before it (oldest first, at most
    ``MAX_CHAIN``) and the device accepts them one by one from its pin, each by the rule
    of :func:`accept_keyring`, before the newest.

    Raises:
        KeyringStale: the offered keyring is not newer than the pin.
        KeyringInvalid: neither directly nor through ``chain`` does it check out.
    """
    try:
        return accept_keyring(pinned, offered, app_id=app_id)
    except KeyringStale:
        raise
    except KeyringInvalid:
        if pinned is None or not isinstance(chain, Sequence) or not chain:
            raise
    if len(chain) > MAX_CHAIN:
        raise KeyringInvalid(
            f"a keyring chain holds at most {MAX_CHAIN} keyrings; got {len(chain)}."
        )
    current: Keyring | Mapping[str, bytes] = pinned
    for item in chain:
        step = item if isinstance(item, Keyring) else Keyring.from_dict(item)
        if isinstance(current, Keyring) and step.sequence <= current.sequence:
            continue
        current = accept_keyring(current, step, app_id=app_id)
    return accept_keyring(current, offered, app_id=app_id)
