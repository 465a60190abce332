"""pocketml.fl: the federated-learning math both a device and the server need.

- :func:`train_head` trains a classifier head on frozen embeddings (softmax regression,
  numpy) and returns the update; :class:`Head`, :class:`LocalRecipe`.
- :func:`clip_update` (L2) and :func:`add_gaussian_noise` (local noise).
- :class:`FixedPoint` encodes clipped float updates as integers mod ``2^bits`` with a
  scale that cannot wrap for the stated number of clients.
- Secure aggregation, client side (SecAgg+): :class:`SecAggConfig`, :class:`SecAggClient`,
  the messages, :func:`neighbours_of`; Shamir sharing (:func:`split_secret`,
  :func:`combine_shares`) and the mask PRG (:func:`expand_mask`).

A core package: numpy and ``cryptography`` only, because the device SDK imports it. The
server side (aggregators, DP, the SecAgg server, FedBuff) is ``pocketml.federated``.
docs/federated.md describes the math and the protocol.
"""

from pocketml.fl._clip import add_gaussian_noise, clip_update, l2_norm
from pocketml.fl._errors import SecAggAborted
from pocketml.fl._fixed_point import FixedPoint
from pocketml.fl._head import Head, LocalRecipe, train_head
from pocketml.fl._prg import expand_mask, pairwise_seed, seed_commitment, share_key
from pocketml.fl._secagg import (
    SHARE_CIPHERTEXT_BYTES,
    KeyAdvertisement,
    MaskedInput,
    SecAggClient,
    SecAggConfig,
    UnmaskResponse,
    neighbours_of,
    pairwise_mask,
)
from pocketml.fl._shamir import PRIME, SHARE_BYTES, Share, combine_shares, split_secret

__all__ = [
    "PRIME",
    "SHARE_BYTES",
    "SHARE_CIPHERTEXT_BYTES",
    "FixedPoint",
    "Head",
    "KeyAdvertisement",
    "LocalRecipe",
    "MaskedInput",
    "SecAggAborted",
    "SecAggClient",
    "SecAggConfig",
    "Share",
    "UnmaskResponse",
    "add_gaussian_noise",
    "clip_update",
    "combine_shares",
    "expand_mask",
    "l2_norm",
    "neighbours_of",
    "pairwise_mask",
    "pairwise_seed",
    "seed_commitment",
    "share_key",
    "split_secret",
    "train_head",
]
