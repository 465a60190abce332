"""A lease owner id that survives a restart: one per home, held by one live process.

A lease owner made of host, pid and a random suffix is new at every start, so after a
crash (``kill -9``, OOM, power loss) the restarted replica finds its previous self's
lease "held by someone else" and waits out the TTL; a graceful stop inside that window
exported nothing. The fix: the owner id is a random id stored once in the directory the
exporter writes (``<home>/telemetry/.exporter-id``), so the restarted replica is the same
owner and reclaims its own stale lease at once. The server hands the same owner to the
rollout evaluator, so it too resumes at once after a crash.

The id may only be used by one live process at a time, or two processes of one home (a
server and a ``pocketml telemetry export`` next to it) would both believe they hold the
lease. So it comes with an exclusive ``flock`` on ``.exporter.lock`` in the same directory:
the kernel drops it when the process dies, however it dies. Whoever cannot take the lock
(another live process of the home has it), or runs where ``fcntl`` does not exist,
gets ``None`` and uses a per-process id: it then waits for the lease like any replica.
The host name is part of the id too, so replicas that share ``<home>/telemetry`` on a
network volume (where ``flock`` may not reach across hosts) never share an owner; a
replica restarted on the same host (or a pod that keeps its name) reclaims its lease.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from pathlib import Path
from typing import IO

__all__ = ["HomeIdentity", "claim_home_identity", "process_owner"]

logger = logging.getLogger(__name__)

_ID_FILE = ".exporter-id"
_LOCK_FILE = ".exporter.lock"


def process_owner() -> str:
    """A lease owner id unique to this process (host, pid, random suffix)."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class HomeIdentity:
    """The home's stable owner id and the lock that makes this process its only user."""

    def __init__(self, owner: str, lock: IO[bytes]) -> None:
        self.owner = owner
        self._lock = lock

    def close(self) -> None:
        """Give the identity up (closing the file drops the ``flock``)."""
        self._lock.close()


def claim_home_identity(directory: Path) -> HomeIdentity | None:
    """Take the stable identity of ``directory`` if no other live process holds it.

    Returns:
        The identity (keep it open while exporting), or None when another live process
        of this home holds it, the platform has no ``flock``, or the directory is not
        writable (the reason is logged).
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: per-process ids, the lease TTL applies after a crash
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock = (directory / _LOCK_FILE).open("a+b")
    except OSError as error:
        logger.warning("no stable exporter identity in %s: %s", directory, error)
        return None
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # another live process of this home exports: wait for the lease
        lock.close()
        return None
    try:
        home_id = _read_or_create_id(directory / _ID_FILE)
        return HomeIdentity(f"home:{socket.gethostname()[:64]}:{home_id}", lock)
    except OSError as error:
        lock.close()
        logger.warning("no stable exporter identity in %s: %s", directory, error)
        return None


def _read_or_create_id(path: Path) -> str:
    """The id stored in ``path``; a new one written there first (we hold the lock)."""
    try:
        existing = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        existing = ""
    except UnicodeDecodeError:
        existing = ""
    if len(existing) == 32 and all(c in "0123456789abcdef" for c in existing):
        return existing
    new = uuid.uuid4().hex
    tmp = path.with_suffix(".tmp")
    tmp.write_text(new + "\n", encoding="ascii")
    os.replace(tmp, path)
    return new
