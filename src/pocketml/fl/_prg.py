"""The pseudo-random generator that expands a 32-byte seed into a mask, and seed derivation.

Specified so that any client (Python, Kotlin, Swift, TypeScript) can reproduce it:

- ``expand_mask(seed, n, bits)``: the ChaCha20 keystream under key ``seed`` (32 bytes) and
  the all-zero 16-byte nonce (counter 0), ``8 n`` bytes read as ``n`` little-endian
  uint64 values, each reduced mod ``2^bits`` (a power of two, so the result is uniform).
  A seed is used for one mask of one round only, so a fixed nonce is safe.
- ``pairwise_seed(shared_secret, round_id, u, v)``: HKDF-SHA256 of the X25519 shared
  secret, empty salt, info ``b"pocketml-secagg-mask|" + round_id + b"|" + min(u,v) + b"|" +
  max(u,v)`` (ids as decimal ASCII), 32 bytes. Both ends derive the same seed.
- ``share_key(shared_secret, round_id, sender, recipient)``: the same with
  ``b"pocketml-secagg-share|"`` and the ids in *sending* order (not sorted): the
  AES-256-GCM key of the one message ``sender`` sends ``recipient`` through the server.
  Being directional and single-use, the key is used with the all-zero 12-byte nonce.
- ``seed_commitment(seed, round_id, client_id)``: SHA-256 of ``b"pocketml-secagg-seed|" +
  round_id + b"|" + client_id + b"|" + seed``, published in step 1 so the server can tell a
  correctly reconstructed self-mask seed from one rebuilt from a wrong share.
"""

from __future__ import annotations

import hashlib

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pocketml.errors import InvalidInput

__all__ = ["expand_mask", "pairwise_seed", "seed_commitment", "share_key"]

SEED_BYTES = 32
_ZERO_NONCE = bytes(16)


def expand_mask(seed: bytes, n: int, bits: int) -> np.ndarray:
    """Return ``n`` uniform integers mod ``2^bits`` (uint64) from the ChaCha20 keystream.

    Raises:
        InvalidInput: the seed is not 32 bytes or ``n`` is negative.
    """
    if len(seed) != SEED_BYTES:
        raise InvalidInput(f"a mask seed must be {SEED_BYTES} bytes; got {len(seed)}")
    if n < 0:
        raise InvalidInput(f"a mask length must be >= 0; got {n}")
    encryptor = Cipher(algorithms.ChaCha20(seed, _ZERO_NONCE), mode=None).encryptor()
    stream = encryptor.update(bytes(8 * n))
    values = np.frombuffer(stream, dtype="<u8").astype(np.uint64)
    return values & np.uint64((1 << bits) - 1)


def _derive(label: bytes, shared_secret: bytes, round_id: str, first: int, second: int) -> bytes:
    info = b"|".join([label, round_id.encode(), str(first).encode(), str(second).encode()])
    return HKDF(algorithm=hashes.SHA256(), length=SEED_BYTES, salt=None, info=info).derive(
        shared_secret
    )


def pairwise_seed(shared_secret: bytes, round_id: str, u: int, v: int) -> bytes:
    """Return the seed of the pairwise mask between clients ``u`` and ``v`` this round."""
    low, high = sorted((u, v))
    return _derive(b"pocketml-secagg-mask", shared_secret, round_id, low, high)


def share_key(shared_secret: bytes, round_id: str, sender: int, recipient: int) -> bytes:
    """Return the AES-256-GCM key of the shares ``sender`` sends ``recipient`` (one message)."""
    return _derive(b"pocketml-secagg-share", shared_secret, round_id, sender, recipient)


def seed_commitment(seed: bytes, round_id: str, client_id: int) -> bytes:
    """Return the 32-byte commitment to a client's self-mask seed for this round."""
    label = b"|".join([b"pocketml-secagg-seed", round_id.encode(), str(client_id).encode()])
    return hashlib.sha256(label + b"|" + seed).digest()
