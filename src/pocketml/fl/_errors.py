"""Errors of federated rounds, under the tree of ``pocketml.errors``::

    Conflict (pocketml.errors)
    └── SecAggAborted     a secure-aggregation round that cannot finish correctly (too few
                          survivors or shares): it stops with this error, never with a
                          wrong aggregate

Malformed messages are :class:`pocketml.errors.InvalidInput`; a share ciphertext that does
not decrypt is :class:`pocketml.errors.IntegrityError`.
"""

from __future__ import annotations

from pocketml.errors import Conflict

__all__ = ["SecAggAborted"]


class SecAggAborted(Conflict):
    """The round's state forbids unmasking: below the threshold, the sum cannot be trusted."""

    code = "secagg_aborted"
