"""Keys: Ed25519 signing keys, AES-256-GCM content keys, and the master key at rest.

- :class:`SigningKey` signs package manifests. Its ``key_id`` is derived from the public
  key, so a device can pin ``{key_id: public_raw}`` and rotation is a matter of ids.
- :class:`ContentKey` encrypts a model member (AES-256-GCM). Its id is random: the
  device asks the server for the key by id.
- :class:`MasterKey` wraps signing and content secrets stored in the registry database,
  with the key's id as associated data so a wrapped secret cannot be swapped for another.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pocketml.errors import InvalidInput
from pocketml.protect._errors import DecryptionFailed, SignatureInvalid

__all__ = [
    "ContentKey",
    "MasterKey",
    "SigningKey",
    "signing_key_id",
    "verify_signature",
]

ED25519_KEY_BYTES = 32
ED25519_SIGNATURE_BYTES = 64
AES_KEY_BYTES = 32
GCM_NONCE_BYTES = 12
_WRAP_VERSION = b"\x01"


def signing_key_id(public_raw: bytes) -> str:
    """Return the stable id of an Ed25519 public key.

    Args:
        public_raw: the 32 raw bytes of the public key.

    Returns:
        ``"ed25519:"`` followed by the first 16 hex digits of sha256(public_raw).

    Raises:
        InvalidInput: ``public_raw`` is not 32 bytes.
    """
    _check_length(public_raw, ED25519_KEY_BYTES, "an Ed25519 public key")
    return "ed25519:" + hashlib.sha256(public_raw).hexdigest()[:16]


def verify_signature(public_raw: bytes, data: bytes, sig: bytes) -> None:
    """Check an Ed25519 signature; return quietly when it is valid.

    Args:
        public_raw: the 32 raw bytes of the signer's public key.
        data: the signed bytes.
        sig: the 64-byte signature.

    Raises:
        InvalidInput: ``public_raw`` is not a 32-byte public key (a caller error).
        SignatureInvalid: the signature has the wrong length or does not match.
    """
    _check_length(public_raw, ED25519_KEY_BYTES, "an Ed25519 public key")
    if len(sig) != ED25519_SIGNATURE_BYTES:
        raise SignatureInvalid(
            f"an Ed25519 signature is {ED25519_SIGNATURE_BYTES} bytes; got {len(sig)}. "
            "The package was modified or truncated: download it again."
        )
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(sig, data)
    except InvalidSignature as exc:
        raise SignatureInvalid(
            "the Ed25519 signature does not match the signed bytes. The package was "
            "modified after signing or signed by another key: do not use it."
        ) from exc


class SigningKey:
    """An Ed25519 private key that signs package manifests.

    Build one with :meth:`generate` or :meth:`from_private_bytes`; the private bytes never
    appear in ``repr``.
    """

    __slots__ = ("_private",)

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private

    @classmethod
    def generate(cls) -> SigningKey:
        """Return a new random signing key."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> SigningKey:
        """Load a signing key from its 32 raw private bytes.

        Raises:
            InvalidInput: ``raw`` is not 32 bytes.
        """
        _check_length(raw, ED25519_KEY_BYTES, "an Ed25519 private key")
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    def private_bytes(self) -> bytes:
        """Return the 32 raw private bytes (wrap them with a MasterKey before storing)."""
        return self._private.private_bytes_raw()

    def public_bytes(self) -> bytes:
        """Return the 32 raw public bytes (what devices pin)."""
        return self._private.public_key().public_bytes_raw()

    @property
    def key_id(self) -> str:
        """The stable id of this key, derived from the public key."""
        return signing_key_id(self.public_bytes())

    def sign(self, data: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``data``."""
        return self._private.sign(data)

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"


@dataclass(frozen=True)
class ContentKey:
    """An AES-256-GCM key that encrypts one or more model members.

    Attributes:
        key_id: the id devices use to fetch the key (``GET /v1/keys/{key_id}``).
        secret: the 32 secret bytes; hidden from ``repr``.
    """

    key_id: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, str) or not self.key_id:
            raise InvalidInput(f"a content key id must be a non-empty str; got {self.key_id!r}.")
        _check_length(self.secret, AES_KEY_BYTES, "an AES-256 content key")

    @classmethod
    def generate(cls) -> ContentKey:
        """Return a new random content key with a random ``aes:<hex>`` id."""
        return cls(key_id="aes:" + secrets.token_hex(8), secret=secrets.token_bytes(32))


class MasterKey:
    """A 32-byte AES-256-GCM key that wraps other secrets at rest.

    A wrapped blob is ``0x01 | nonce (12 bytes) | ciphertext | tag (16 bytes)``; the label
    (for example the wrapped key's id) is the GCM associated data, so unwrapping with
    another label fails.
    """

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        _check_length(secret, AES_KEY_BYTES, "a master key")
        self._secret = bytes(secret)

    @classmethod
    def from_b64(cls, text: str) -> MasterKey:
        """Load a master key from base64 text (``POCKETML_MASTER_KEY``).

        Raises:
            InvalidInput: the text is not base64 of exactly 32 bytes.
        """
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput(
                "the master key must be base64 of 32 random bytes; got text that is not "
                'base64. Generate one with: python -c "import base64, os; '
                'print(base64.b64encode(os.urandom(32)).decode())"'
            ) from exc
        return cls(raw)

    @classmethod
    def load_or_create(cls, path: Path) -> MasterKey:
        """Load the master key file at ``path``, creating it (mode 0600) when absent.

        Creation is atomic: the key is written to a private temp file and linked into
        place, so two processes starting at once end up with the same key.

        Raises:
            InvalidInput: the file is readable by group/other or is not 32 bytes.
        """
        path = Path(path)
        if not path.exists():
            _create_key_file(path)
        return cls(_read_key_file(path))

    @property
    def key_id(self) -> str:
        """A stable id of this master key (a domain-separated hash; reveals nothing)."""
        digest = hashlib.sha256(b"pocketml-master-key-id\x00" + self._secret).hexdigest()
        return "master:" + digest[:16]

    def wrap(self, secret: bytes, label: str) -> bytes:
        """Encrypt ``secret`` for storage, bound to ``label``.

        Args:
            secret: the bytes to protect (a private or content key).
            label: associated data, typically the wrapped key's id.

        Returns:
            ``0x01 | nonce | ciphertext | tag``.
        """
        nonce = os.urandom(GCM_NONCE_BYTES)
        sealed = AESGCM(self._secret).encrypt(nonce, bytes(secret), label.encode("utf-8"))
        return _WRAP_VERSION + nonce + sealed

    def unwrap(self, blob: bytes, label: str) -> bytes:
        """Decrypt a blob made by :meth:`wrap` with the same label.

        Raises:
            DecryptionFailed: wrong master key, wrong label, or a modified blob.
        """
        if len(blob) < 1 + GCM_NONCE_BYTES + 16 or blob[:1] != _WRAP_VERSION:
            raise DecryptionFailed(
                f"a wrapped key starts with version byte 0x01 and is at least 29 bytes; got "
                f"{len(blob)} bytes. The stored key is corrupt: restore it from a backup."
            )
        nonce, sealed = blob[1 : 1 + GCM_NONCE_BYTES], blob[1 + GCM_NONCE_BYTES :]
        try:
            return AESGCM(self._secret).decrypt(nonce, sealed, label.encode("utf-8"))
        except InvalidTag as exc:
            raise DecryptionFailed(
                f"cannot unwrap the key labelled {label!r} with master key {self.key_id}: "
                "the master key is not the one that wrapped it, or the blob was modified. "
                "Check POCKETML_MASTER_KEY / <home>/master.key."
            ) from exc

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id!r})"


def _check_length(raw: bytes, expected: int, what: str) -> None:
    if not isinstance(raw, bytes | bytearray) or len(raw) != expected:
        given = f"{len(raw)} bytes" if isinstance(raw, bytes | bytearray) else type(raw).__name__
        raise InvalidInput(f"{what} must be {expected} bytes; got {given}.")


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = os.urandom(AES_KEY_BYTES)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    _write_private(tmp, secret)
    try:
        # os.link never replaces: when another process created the key first, keep theirs.
        os.link(tmp, path)
    except FileExistsError:
        pass
    except OSError:  # a filesystem without hard links: fall back to an exclusive create
        with contextlib.suppress(FileExistsError):
            _write_private(path, secret)
    finally:
        tmp.unlink(missing_ok=True)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _read_key_file(path: Path) -> bytes:
    mode = path.stat().st_mode
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidInput(
            f"master key file {str(path)!r} must be private (mode 0600); got mode "
            f"{stat.S_IMODE(mode):04o}. Run: chmod 600 {path}"
        )
    raw = path.read_bytes()
    if len(raw) != AES_KEY_BYTES:
        raise InvalidInput(
            f"master key file {str(path)!r} must hold exactly {AES_KEY_BYTES} bytes; got "
            f"{len(raw)}. Restore it from a backup (keys wrapped by it are unreadable "
            "without it), or delete it only if no keys were ever stored."
        )
    return raw
