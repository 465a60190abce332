"""SecAgg+ server side: relay shares, collect masked inputs, unmask the sum only.

The server holds, per client, two public keys, ciphertexts it cannot decrypt, and one
masked input ``y_u`` (uniform mod ``2^bits`` on its own). After the unmask step it
reconstructs, from ``t`` shares each, the self-mask seed of every survivor and the mask
key of every client that dropped after sharing, and computes

    sum_{u in survivors} x_u = sum_u y_u - sum_u PRG(b_u) - (pairwise masks between
                               survivors and dropped clients)

(masks between two survivors cancel in the sum). It never reconstructs both secrets of
one client, so no individual ``x_u`` is ever in its memory. When a seed cannot be
reconstructed, ``aggregate`` raises :class:`~pocketml.fl.SecAggAborted`: a round fails
safely, it never returns a wrong sum.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from pocketml.errors import InvalidInput
from pocketml.fl import (
    SHARE_CIPHERTEXT_BYTES,
    KeyAdvertisement,
    MaskedInput,
    SecAggAborted,
    SecAggConfig,
    Share,
    UnmaskResponse,
    combine_shares,
    expand_mask,
    neighbours_of,
    pairwise_mask,
    seed_commitment,
)

__all__ = ["SecAggServer"]


class SecAggServer:
    """The server's state for one SecAgg+ round; methods follow the protocol's steps."""

    def __init__(self, config: SecAggConfig) -> None:
        self.config = config
        self._neighbours = {u: set(neighbours_of(config, u)) for u in config.client_ids}
        self._roster: dict[int, KeyAdvertisement] = {}
        self._mailbox: dict[int, dict[int, bytes]] = {}
        self._shared: set[int] = set()
        self._answered: set[int] = set()
        self._masked: dict[int, np.ndarray] = {}
        self._survivors: frozenset[int] | None = None
        self._dropped: frozenset[int] = frozenset()
        self._seed_shares: dict[int, dict[int, Share]] = {}
        self._key_shares: dict[int, dict[int, Share]] = {}

    # Step 1 ---------------------------------------------------------------------------
    def receive_keys(self, adverts: Iterable[KeyAdvertisement]) -> dict[int, KeyAdvertisement]:
        """Record the advertised keys of selected clients and return the roster to send out.

        Raises:
            InvalidInput: a client not in the round, twice, or keys of the wrong size.
        """
        batch = list(adverts)
        seen = set(self._roster)
        for advert in batch:  # check the whole batch first: a refused one stores nothing
            if advert.client_id not in self._neighbours or advert.client_id in seen:
                raise InvalidInput(
                    f"client_id {advert.client_id} is not expected to advertise keys"
                )
            if {
                len(advert.cipher_public),
                len(advert.mask_public),
                len(advert.seed_commitment),
            } != {32}:
                raise InvalidInput(
                    "cipher_public, mask_public and seed_commitment must be 32 bytes each"
                )
            if advert.cipher_public == advert.mask_public:
                raise InvalidInput("cipher_public and mask_public must be different keys")
            seen.add(advert.client_id)
        self._roster.update((advert.client_id, advert) for advert in batch)
        return dict(self._roster)

    # Step 2 ---------------------------------------------------------------------------
    def receive_shares(self, sender: int, ciphertexts: Mapping[int, bytes]) -> None:
        """Queue a client's encrypted shares for their recipients.

        Raises:
            InvalidInput: the sender did not advertise keys, sent twice, addressed a client
                that is not its neighbour with keys, or a ciphertext of the wrong size.
        """
        if sender not in self._roster or sender in self._shared:
            raise InvalidInput(f"client_id {sender} cannot send shares now")
        expected = self._neighbours[sender] & set(self._roster)
        if set(ciphertexts) != expected:
            raise InvalidInput(
                f"client {sender} must send shares to exactly its {len(expected)} neighbours"
            )
        if any(len(c) != SHARE_CIPHERTEXT_BYTES for c in ciphertexts.values()):
            raise InvalidInput(f"each share ciphertext must be {SHARE_CIPHERTEXT_BYTES} bytes")
        for recipient, sealed in ciphertexts.items():
            self._mailbox.setdefault(recipient, {})[sender] = bytes(sealed)
        self._shared.add(sender)

    @property
    def shared(self) -> frozenset[int]:
        """Clients whose shares the server relayed (U2): the only ones who may mask."""
        return frozenset(self._shared)

    def inbox(self, recipient: int) -> dict[int, bytes]:
        """The ciphertexts addressed to ``recipient``, by sender."""
        return dict(self._mailbox.get(recipient, {}))

    # Step 3 ---------------------------------------------------------------------------
    def receive_masked_input(self, masked: MaskedInput) -> None:
        """Store one masked input (uniform on its own, so storing it reveals nothing).

        Raises:
            InvalidInput: a client that did not share, a second upload, the unmask step
                already begun, or the wrong shape or range.
        """
        u = masked.client_id
        if u not in self._shared or u in self._masked or self._survivors is not None:
            raise InvalidInput(f"client_id {u} cannot upload a masked input now")
        values = np.asarray(masked.values)
        if values.shape != (self.config.n_values,) or not np.issubdtype(
            values.dtype, np.unsignedinteger
        ):
            raise InvalidInput(
                f"values must be {self.config.n_values} unsigned ints; got {values.shape}"
            )
        if int(values.max()) >= self.config.encoding.modulus:
            raise InvalidInput(f"values must be < 2^{self.config.encoding.bits}")
        self._masked[u] = values.astype(np.uint64)

    def stored_masked_inputs(self) -> dict[int, np.ndarray]:
        """What the server holds per client (for audits and tests): masked values only."""
        return {u: v.copy() for u, v in self._masked.items()}

    # Step 4 ---------------------------------------------------------------------------
    def unmask_request(self) -> tuple[frozenset[int], frozenset[int]]:
        """Close the upload step; return ``(survivors, dropped)`` to send to survivors.

        Raises:
            SecAggAborted: fewer survivors than the threshold.
        """
        if len(self._masked) < self.config.threshold:
            raise SecAggAborted(
                f"{len(self._masked)} masked inputs arrived; the threshold is "
                f"{self.config.threshold}: the round fails without an aggregate"
            )
        self._survivors = frozenset(self._masked)
        self._dropped = self.shared - self._survivors
        return self._survivors, self._dropped

    def receive_unmask(self, response: UnmaskResponse) -> None:
        """Record a survivor's shares.

        Raises:
            InvalidInput: not a survivor, a second answer, a share of the wrong kind for a
                client (a seed share for a dropped client or a key share for a survivor),
                or a share whose x is not the sender. A refused answer stores nothing.
        """
        u = response.client_id
        if self._survivors is None or u not in self._survivors or u in self._answered:
            raise InvalidInput(f"client_id {u} cannot answer the unmask request now")
        if (
            not set(response.self_mask_shares) <= self._survivors
            or not set(response.mask_key_shares) <= self._dropped
        ):
            raise InvalidInput(
                "self_mask_shares must name survivors and mask_key_shares dropped clients"
            )
        kinds = (
            (response.self_mask_shares, self._seed_shares),
            (response.mask_key_shares, self._key_shares),
        )
        for shares, _ in kinds:  # check everything first: a refused answer stores nothing
            for owner, share in shares.items():
                if share.x != u or owner not in self._neighbours[u]:
                    raise InvalidInput(f"client {u} sent a share it cannot hold (owner {owner})")
        for shares, store in kinds:
            for owner, share in shares.items():
                store.setdefault(owner, {})[u] = share
        self._answered.add(u)

    def _reconstruct(self, store: dict[int, dict[int, Share]], owner: int, what: str) -> bytes:
        shares = store.get(owner, {})
        if len(shares) < self.config.threshold:
            raise SecAggAborted(
                f"only {len(shares)} shares of client {owner}'s {what} arrived; the threshold "
                f"is {self.config.threshold}: the round fails without an aggregate"
            )
        return combine_shares(shares.values(), self.config.threshold).to_bytes(32, "big")

    @staticmethod
    def _wrong_share(owner: int, what: str) -> str:
        return (
            f"client {owner}'s {what} rebuilt from its shares does not match what it "
            "advertised: a survivor sent a wrong share; the round fails without an aggregate"
        )

    def aggregate(self) -> np.ndarray:
        """Return the sum of the survivors' encoded updates mod ``2^bits`` (uint64).

        Raises:
            SecAggAborted: the unmask step was not run, or a survivor's self-mask seed or
                a dropped client's mask key lacks ``threshold`` shares or, rebuilt, does
                not match the commitment or public key the client advertised.
        """
        if self._survivors is None:
            raise SecAggAborted("aggregate needs the unmask step first")
        enc, n = self.config.encoding, self.config.n_values
        total = np.zeros(n, dtype=np.uint64)
        for y in self._masked.values():
            total = enc.add(total, y)
        for u in sorted(self._survivors):
            seed = self._reconstruct(self._seed_shares, u, "self-mask seed")
            if seed_commitment(seed, self.config.round_id, u) != self._roster[u].seed_commitment:
                raise SecAggAborted(self._wrong_share(u, "self-mask seed"))
            total = enc.subtract(total, expand_mask(seed, n, enc.bits))
        for d in sorted(self._dropped):
            key = X25519PrivateKey.from_private_bytes(
                self._reconstruct(self._key_shares, d, "mask key")
            )
            if key.public_key().public_bytes_raw() != self._roster[d].mask_public:
                raise SecAggAborted(self._wrong_share(d, "mask key"))
            for u in sorted(self._neighbours[d] & self._survivors):
                # Survivor u added pairwise_mask(u, d); the same value from d's side is its
                # negation, so adding d's view cancels it.
                total = enc.add(
                    total, pairwise_mask(self.config, d, u, key, self._roster[u].mask_public)
                )
        return total

    def aggregate_sum(self) -> tuple[np.ndarray, int]:
        """Return ``(decoded float sum of the survivors' updates, number of survivors)``."""
        total = self.aggregate()
        assert self._survivors is not None
        return self.config.encoding.decode_sum(total), len(self._survivors)
