"""One SecAgg+ round run in memory, message by message, for tests, benchmarks and docs.

The same calls a server route and a device make over HTTP later, without the transport:
advertise keys, relay shares, upload masked inputs (clients in ``drop_after_sharing``
vanish here, after their shares are out: the hard case), unmask, sum.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import numpy as np

from pocketml.federated._secagg_server import SecAggServer
from pocketml.fl import SecAggClient, SecAggConfig

__all__ = ["SecAggRoundResult", "run_secagg_round"]


@dataclass(frozen=True)
class SecAggRoundResult:
    """The unmasked sum (encoded and decoded), who survived, and bytes each client sent."""

    encoded_sum: np.ndarray
    total: np.ndarray
    survivors: frozenset[int]
    upload_bytes: dict[int, int]
    server: SecAggServer


def run_secagg_round(
    config: SecAggConfig,
    updates: Mapping[int, np.ndarray],
    *,
    drop_after_sharing: Collection[int] = (),
    randbytes: Callable[[int], bytes] = os.urandom,
) -> SecAggRoundResult:
    """Run a whole round for ``updates`` (clipped float vectors, by client id).

    Raises:
        SecAggAborted: too many clients dropped for the threshold.
    """
    enc = config.encoding
    clients = {u: SecAggClient(u, config, randbytes=randbytes) for u in config.client_ids}
    server = SecAggServer(config)
    adverts = {u: c.advertise_keys() for u, c in clients.items()}
    sent = dict.fromkeys(clients, 96)  # two raw X25519 public keys + the seed commitment
    roster = server.receive_keys(adverts.values())
    for u, c in clients.items():
        sealed = c.share_keys(roster)
        sent[u] += sum(len(s) + 4 for s in sealed.values())  # + recipient id
        server.receive_shares(u, sealed)
    for u, c in clients.items():
        if u in drop_after_sharing:
            continue
        masked = c.mask_update(enc.encode(updates[u]), server.inbox(u))
        sent[u] += len(masked.to_bytes(enc))
        server.receive_masked_input(masked)
    survivors, dropped = server.unmask_request()
    for u in sorted(survivors):
        response = clients[u].unmask(survivors, dropped)
        sent[u] += response.wire_bytes()
        server.receive_unmask(response)
    encoded = server.aggregate()
    return SecAggRoundResult(encoded, enc.decode_sum(encoded), survivors, sent, server)
