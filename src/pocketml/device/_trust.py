"""Which signing keys a device trusts for one sync: the pinned keyring, moved forward safely.

The rule is ``pocketml.protect.accept_keyring`` (documented once, in docs/packages.md,
"Signing keys: rotation and revocation"); this module only decides what the device holds
as its pin and never lets a bad offer break a sync:

- the pin is the newer of the keyring the app shipped and the one pinned in the cache;
  an app that shipped bare ``{key_id: public key}`` starts from those keys; an app that
  shipped nothing trusts the first keyring it is offered (trust on first use, weaker);
- an offered keyring that is malformed, stale or not endorsed by a trusted key is ignored:
  the pin stays, models keep syncing against it, and the caller reports the problem;
- a pinned file that cannot be read is ignored like an absent one (never a crash).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from pocketml.device._store import CacheDir
from pocketml.protect import Keyring, KeyringInvalid, follow_keyrings, signing_key_id

__all__ = ["Anchor", "follow_keyring", "pinned_keyring"]

Anchor = Keyring | Mapping[str, bytes]


def follow_keyring(
    cache: CacheDir, shipped: Anchor | None, app_id: str, manifest: Mapping[str, Any]
) -> tuple[dict[str, bytes], str | None]:
    """The keys to verify this sync's packages with, and why an offer was refused.

    Args:
        cache: the device cache (holds the pin).
        shipped: what the app shipped with its build, or None.
        app_id: the app of the manifest.
        manifest: the check-in answer (its ``keyring``; ``public_keys`` from older servers).

    Returns:
        ``(trusted keys, problem)``; ``problem`` is None unless an offered keyring or key
        list was refused (the pin, possibly empty, is used then).
    """
    pinned = _pinned(cache, shipped, app_id)
    offered = manifest.get("keyring")
    if offered is None:
        if pinned is not None:
            return _trusted_of(pinned), None
        keys = valid_keys(manifest.get("public_keys"))  # a server older than keyrings
        if not keys:
            return {}, "the manifest offers no keyring and no valid public_keys to pin"
        cache.pin_keys(_encoded(keys))
        return keys, None
    chain = manifest.get("keyring_chain")
    try:
        accepted = follow_keyrings(
            pinned, offered, chain if isinstance(chain, list) else [], app_id=app_id
        )
    except KeyringInvalid as exc:
        kept = _trusted_of(pinned) if pinned is not None else {}
        return kept, f"refused the offered keyring, kept the pinned keys: {exc}"
    if accepted is not pinned:
        cache.pin_keys(_encoded(accepted.trusted_keys()), accepted.to_dict())
    return accepted.trusted_keys(), None


def pinned_keyring(cache: CacheDir, shipped: Anchor | None) -> Keyring | None:
    """The keyring the device trusts now (what the next sync starts from), if it is one.

    Args:
        cache: the device cache (holds the pin and the last check-in).
        shipped: what the app shipped with its build, or None.

    Returns:
        The newer of the shipped and the pinned keyring of the app of the last check-in
        (of the shipped keyring's app before any check-in); None when the device trusts
        bare keys or nothing yet.
    """
    _, manifest = cache.last_checkin()
    app_id = manifest.get("app_id") if isinstance(manifest, Mapping) else None
    if not isinstance(app_id, str):
        app_id = shipped.app_id if isinstance(shipped, Keyring) else None
    if app_id is None:
        return None
    anchor = _pinned(cache, shipped, app_id)
    return anchor if isinstance(anchor, Keyring) else None


def valid_keys(offered: Any) -> dict[str, bytes]:
    """The entries of a ``{key_id: base64}`` mapping whose bytes match their id."""
    keys: dict[str, bytes] = {}
    if not isinstance(offered, Mapping):
        return keys
    for key_id, text in offered.items():
        try:
            raw = base64.b64decode(text, validate=True) if isinstance(text, str) else b""
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 32 and signing_key_id(raw) == key_id:
            keys[key_id] = raw
    return keys


def _pinned(cache: CacheDir, shipped: Anchor | None, app_id: str) -> Anchor | None:
    ring: Keyring | None = None
    stored = cache.pinned_keyring()
    if stored is not None:
        try:
            ring = Keyring.from_dict(stored)
        except KeyringInvalid:
            ring = None
        if ring is not None and ring.app_id != app_id:
            ring = None
    if isinstance(shipped, Keyring):
        return ring if ring is not None and ring.sequence >= shipped.sequence else shipped
    if ring is not None:
        return ring
    if shipped is not None:
        return shipped
    legacy = valid_keys(cache.pinned_keys())  # pinned by an SDK older than keyrings
    return legacy or None


def _trusted_of(anchor: Anchor) -> dict[str, bytes]:
    if isinstance(anchor, Keyring):
        return anchor.trusted_keys()
    return {k: bytes(v) for k, v in anchor.items()}


def _encoded(keys: Mapping[str, bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v).decode("ascii") for k, v in keys.items()}
