"""SecAgg+ client side (Bonawitz et al. 2017; Bell et al. 2020), semi-honest server.

A round, for the clients ``config.client_ids`` (ids >= 1, also the Shamir x-coordinates):

1. ``advertise_keys``: two fresh X25519 key pairs, ``c`` (to encrypt shares) and ``s`` (to
   agree masks), and a fresh 32-byte self-mask seed ``b``; the public keys and a hash
   commitment to ``b`` go to the server.
2. ``share_keys(roster)``: for each neighbour ``v`` (everyone, or the ``k`` neighbours of
   the SecAgg+ graph), a Shamir share of ``s_sk`` and of ``b`` (threshold ``t``),
   encrypted with AES-256-GCM under ``HKDF(X25519(c_sk, c_pk_v))``: the server relays
   ciphertexts it cannot read.
3. ``mask_update(encoded, inbox)``: ``y = x + PRG(b) + sum_{v>u} PRG(s_uv) - sum_{v<u}
   PRG(s_uv) mod 2^bits`` over the neighbours whose shares arrived, with ``s_uv`` the
   X25519 agreement of the ``s`` keys. ``y`` alone is uniform: the server learns nothing.
4. ``unmask(survivors, dropped)``: for each neighbour, the share of ``b_v`` if ``v``
   survived, the share of ``s_sk_v`` if it dropped; never both for one ``v``, so the server
   can remove a survivor's self-mask or a dropped client's pairwise masks, not reveal an
   individual ``x``.

Out of scope of this slice (documented in docs/federated.md): the consistency-check round
with signatures that defends against a server lying about who dropped.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pocketml.errors import IntegrityError, InvalidInput
from pocketml.fl._errors import SecAggAborted
from pocketml.fl._fixed_point import FixedPoint
from pocketml.fl._prg import SEED_BYTES, expand_mask, pairwise_seed, seed_commitment, share_key
from pocketml.fl._shamir import PRIME, SHARE_BYTES, Share, split_secret

__all__ = [
    "SHARE_CIPHERTEXT_BYTES",
    "KeyAdvertisement",
    "MaskedInput",
    "SecAggClient",
    "SecAggConfig",
    "UnmaskResponse",
    "neighbours_of",
    "pairwise_mask",
]

KEY_BYTES = 32
# Each share key seals exactly one message (it is bound to round, sender and recipient),
# so the fixed nonce never repeats under a key; the ids go in the associated data.
_NONCE = bytes(12)
_SHARES_PLAINTEXT = struct.Struct(f">{SHARE_BYTES}s{SHARE_BYTES}s")
SHARE_CIPHERTEXT_BYTES = _SHARES_PLAINTEXT.size + 16  # + GCM tag


@dataclass(frozen=True)
class SecAggConfig:
    """What the server announces for a round and every participant agrees on.

    Attributes:
        round_id: unique per round (bound into every derived key).
        client_ids: the selected clients, distinct ints >= 1.
        threshold: ``t``, shares needed to reconstruct a seed; also the least number of
            survivors a round may unmask with. ``t > k/2`` (or ``> n/2``) stops a server
            from asking two halves for different secrets of one client.
        encoding: the fixed-point encoding (bits, clip norm, max clients).
        n_values: the length of an update.
        neighbours: ``k`` for the SecAgg+ k-regular graph (even, < n), or None for all
            pairs (the default; cheapest for small rounds).
        graph_seed: public randomness that permutes the graph (from the server).
    """

    round_id: str
    client_ids: tuple[int, ...]
    threshold: int
    encoding: FixedPoint
    n_values: int
    neighbours: int | None = None
    graph_seed: bytes = b""

    def __post_init__(self) -> None:
        ids = self.client_ids
        if len(set(ids)) != len(ids) or any(not 1 <= i < 2**32 for i in ids) or len(ids) < 2:
            raise InvalidInput("client_ids must be >= 2 distinct ints in [1, 2^32)")
        if len(ids) > self.encoding.max_clients:
            raise InvalidInput(
                f"{len(ids)} clients exceed the encoding's max_clients "
                f"{self.encoding.max_clients}: their sum could wrap"
            )
        degree = self.degree
        if self.neighbours is not None and (
            self.neighbours < 2 or self.neighbours % 2 or self.neighbours >= len(ids)
        ):
            raise InvalidInput(
                f"neighbours must be an even int in [2, {len(ids) - 1}] or None; "
                f"got {self.neighbours!r}"
            )
        if not degree // 2 < self.threshold <= degree:
            raise InvalidInput(
                f"threshold must be in [{degree // 2 + 1}, {degree}] for {degree} neighbours; "
                f"got {self.threshold}"
            )
        if self.n_values < 1:
            raise InvalidInput(f"n_values must be >= 1; got {self.n_values}")

    @property
    def degree(self) -> int:
        """Neighbours per client: ``k``, or ``n - 1`` for all pairs."""
        return len(self.client_ids) - 1 if self.neighbours is None else self.neighbours


def neighbours_of(config: SecAggConfig, client_id: int) -> tuple[int, ...]:
    """Return the clients ``client_id`` exchanges masks and shares with, sorted.

    All pairs by default. With ``neighbours = k``: the Harary graph ``H(k, n)`` (each node
    joined to the ``k/2`` next and previous nodes on a ring) over the ids ordered by
    ``SHA-256(graph_seed || id)``, as in SecAgg+: k-regular, so a client's cost is O(k) and
    the round's O(n k) instead of O(n^2).
    """
    ids = sorted(config.client_ids)
    if client_id not in ids:
        raise InvalidInput(f"client {client_id} is not in this round")
    if config.neighbours is None:
        return tuple(i for i in ids if i != client_id)
    # The ring order: ids sorted by SHA-256(graph_seed || id as 4 big-endian bytes), which
    # any client in any language reproduces from the announced seed.
    ring = sorted(
        ids, key=lambda i: hashlib.sha256(config.graph_seed + i.to_bytes(4, "big")).digest()
    )
    pos = ring.index(client_id)
    half = config.neighbours // 2
    near = {ring[(pos + j) % len(ring)] for j in range(-half, half + 1) if j}
    return tuple(sorted(near))


@dataclass(frozen=True)
class KeyAdvertisement:
    """Step 1 upload: a client's two public keys and its seed commitment (32 bytes each).

    The mask public key and the commitment let the server check what it reconstructs from
    shares (a dropped client's private key, a survivor's seed): a wrong share then stops
    the round instead of producing a wrong sum.
    """

    client_id: int
    cipher_public: bytes
    mask_public: bytes
    seed_commitment: bytes


@dataclass(frozen=True)
class MaskedInput:
    """Step 3 upload: the masked, encoded update (uint64 values < 2^bits)."""

    client_id: int
    values: np.ndarray

    def to_bytes(self, encoding: FixedPoint) -> bytes:
        """The wire form: little-endian values of ``encoding.bytes_per_value`` bytes."""
        return self.values.astype(np.dtype(encoding.dtype).newbyteorder("<")).tobytes()


@dataclass(frozen=True)
class UnmaskResponse:
    """Step 4 upload: per neighbour, the share of its self-mask seed or of its mask key."""

    client_id: int
    self_mask_shares: dict[int, Share] = field(default_factory=dict)
    mask_key_shares: dict[int, Share] = field(default_factory=dict)

    def wire_bytes(self) -> int:
        """Bytes of the response on the wire (id + share per entry)."""
        return (len(self.self_mask_shares) + len(self.mask_key_shares)) * (4 + SHARE_BYTES)


def _shared(private: X25519PrivateKey, public_raw: bytes) -> bytes:
    if len(public_raw) != KEY_BYTES:
        raise InvalidInput(f"an X25519 public key must be {KEY_BYTES} bytes")
    return private.exchange(X25519PublicKey.from_public_bytes(public_raw))


def pairwise_mask(
    config: SecAggConfig, u: int, v: int, private: X25519PrivateKey, public_raw_v: bytes
) -> np.ndarray:
    """Return the mask ``u`` adds for the pair (u, v): ``+PRG(s_uv)`` if u < v, else minus.

    The server calls it too, with a dropped client's reconstructed key, to cancel the
    masks that client's survivors added.
    """
    mask = expand_mask(
        pairwise_seed(_shared(private, public_raw_v), config.round_id, u, v),
        config.n_values,
        config.encoding.bits,
    )
    if u < v:
        return mask
    return config.encoding.subtract(np.zeros_like(mask), mask)


class SecAggClient:
    """One client's side of one round: each method is one protocol step, run once, in order
    (a step out of order is an :class:`~pocketml.errors.InvalidInput`)."""

    def __init__(
        self,
        client_id: int,
        config: SecAggConfig,
        *,
        randbytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.client_id = client_id
        self.config = config
        self.randbytes = randbytes
        self._neighbours = neighbours_of(config, client_id)
        self._inbox: dict[int, bytes] = {}
        self._roster: dict[int, KeyAdvertisement] = {}
        self._step = 0  # protocol steps done; each method runs once, in order
        self._secrets: dict[int, bytes] = {}

    def _advance(self, step: int, name: str) -> None:
        if self._step != step - 1:
            raise InvalidInput(
                f"{name} is step {step} of the round; this client has done {self._step} steps "
                "(each step runs once, in order)"
            )
        self._step = step

    def advertise_keys(self) -> KeyAdvertisement:
        """Step 1: draw the round's key pairs and self-mask seed; return the public keys."""
        self._advance(1, "advertise_keys")
        self._cipher_key = X25519PrivateKey.from_private_bytes(self.randbytes(KEY_BYTES))
        self._mask_key_raw = self.randbytes(KEY_BYTES)
        self._mask_key = X25519PrivateKey.from_private_bytes(self._mask_key_raw)
        self._self_seed = self.randbytes(SEED_BYTES)
        return KeyAdvertisement(
            self.client_id,
            self._cipher_key.public_key().public_bytes_raw(),
            self._mask_key.public_key().public_bytes_raw(),
            seed_commitment(self._self_seed, self.config.round_id, self.client_id),
        )

    def share_keys(self, roster: Mapping[int, KeyAdvertisement]) -> dict[int, bytes]:
        """Step 2: return one encrypted share pair per neighbour present in ``roster``.

        Raises:
            SecAggAborted: fewer than ``threshold`` neighbours advertised keys.
        """
        self._advance(2, "share_keys")
        self._roster = {v: roster[v] for v in self._neighbours if v in roster}
        if len(self._roster) < self.config.threshold:
            raise SecAggAborted(
                f"client {self.client_id} has {len(self._roster)} neighbours with keys; "
                f"the threshold is {self.config.threshold}"
            )
        holders = sorted(self._roster)
        t = self.config.threshold
        key_shares = split_secret(
            int.from_bytes(self._mask_key_raw, "big"), t, holders, randbytes=self.randbytes
        )
        seed_shares = split_secret(
            int.from_bytes(self._self_seed, "big"), t, holders, randbytes=self.randbytes
        )
        out = {}
        for v, ks, bs in zip(holders, key_shares, seed_shares, strict=True):
            plaintext = _SHARES_PLAINTEXT.pack(
                ks.y.to_bytes(SHARE_BYTES, "big"), bs.y.to_bytes(SHARE_BYTES, "big")
            )
            out[v] = self._aead(self.client_id, v).encrypt(
                _NONCE, plaintext, self._associated(self.client_id, v)
            )
        return out

    def _aead(self, sender: int, recipient: int) -> AESGCM:
        peer = recipient if sender == self.client_id else sender
        # One X25519 agreement per neighbour and round, shared by both directions' keys.
        if peer not in self._secrets:
            self._secrets[peer] = _shared(self._cipher_key, self._roster[peer].cipher_public)
        return AESGCM(share_key(self._secrets[peer], self.config.round_id, sender, recipient))

    def _associated(self, sender: int, recipient: int) -> bytes:
        return f"{self.config.round_id}|{sender}|{recipient}".encode()

    def mask_update(self, encoded: np.ndarray, inbox: Mapping[int, bytes]) -> MaskedInput:
        """Step 3: mask the encoded update with the self-mask and the pairwise masks.

        ``inbox`` holds the ciphertexts addressed to this client, by sender; a pairwise
        mask is added only for neighbours whose shares arrived (the server's survivors of
        step 2), so the server can always cancel it.

        Raises:
            InvalidInput: wrong length or a value outside ``[0, 2^bits)``.
            SecAggAborted: fewer than ``threshold`` neighbours' shares arrived.
        """
        self._advance(3, "mask_update")
        x = np.asarray(encoded)
        enc = self.config.encoding
        if x.shape != (self.config.n_values,) or not np.issubdtype(x.dtype, np.unsignedinteger):
            raise InvalidInput(
                f"an encoded update must be {self.config.n_values} unsigned ints; "
                f"got {x.dtype} {x.shape}"
            )
        if x.size and int(x.max()) >= enc.modulus:
            raise InvalidInput(f"encoded values must be < 2^{enc.bits}")
        self._inbox = {v: bytes(c) for v, c in inbox.items() if v in self._roster}
        if len(self._inbox) < self.config.threshold:
            raise SecAggAborted(
                f"client {self.client_id} received shares from {len(self._inbox)} neighbours; "
                f"the threshold is {self.config.threshold}"
            )
        y = enc.add(x, expand_mask(self._self_seed, self.config.n_values, enc.bits))
        for v in sorted(self._inbox):
            mask = pairwise_mask(
                self.config, self.client_id, v, self._mask_key, self._roster[v].mask_public
            )
            y = enc.add(y, mask)
        return MaskedInput(self.client_id, y)

    def _open(self, v: int) -> tuple[Share, Share]:
        try:
            plaintext = self._aead(v, self.client_id).decrypt(
                _NONCE, self._inbox[v], self._associated(v, self.client_id)
            )
        except InvalidTag as exc:
            # Also what a server relaying v's shares for someone else under v's name gets.
            raise IntegrityError(f"the shares from client {v} do not decrypt") from exc
        key_y, seed_y = _SHARES_PLAINTEXT.unpack(plaintext)
        x = self.client_id
        return Share(x, int.from_bytes(key_y, "big") % PRIME), Share(
            x, int.from_bytes(seed_y, "big") % PRIME
        )

    def unmask(self, survivors: Collection[int], dropped: Collection[int]) -> UnmaskResponse:
        """Step 4: reveal, per neighbour, the one share that removes its masks.

        Raises:
            InvalidInput: a client listed as both, this client not among the survivors, or
                a second call (answering twice could reveal both secrets of a client).
            SecAggAborted: fewer than ``threshold`` survivors: unmasking would not be safe.
        """
        alive, gone = set(survivors), set(dropped)
        if self._step >= 4:
            raise InvalidInput("a client answers the unmask request once per round")
        if alive & gone or self.client_id not in alive:
            raise InvalidInput("survivors and dropped must be disjoint and include this client")
        if len(alive) < self.config.threshold:
            raise SecAggAborted(
                f"{len(alive)} survivors are below the threshold {self.config.threshold}"
            )
        self._advance(4, "unmask")
        response = UnmaskResponse(self.client_id)
        for v in sorted(self._inbox):
            key_share, seed_share = self._open(v)
            if v in alive:
                response.self_mask_shares[v] = seed_share
            elif v in gone:
                response.mask_key_shares[v] = key_share
        return response
