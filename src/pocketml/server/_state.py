"""What the running server holds: settings, the open registry, the operator token.

Built by the lifespan in ``app.py`` and stored on ``app.state.pocketml``; routes reach it
through the ``server_state`` dependency, never through module globals.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Request

from pocketml.config import Settings
from pocketml.errors import Unavailable

if TYPE_CHECKING:
    from pocketml.registry import ArtifactStore, Registry

__all__ = ["ServerState", "server_state"]


@dataclass(frozen=True)
class ServerState:
    """Everything a request handler needs, opened once per process."""

    settings: Settings
    registry: Registry
    artifacts: ArtifactStore
    operator_token: str
    tmp_dir: Path

    @property
    def registry_label(self) -> str:
        """The database URL with any password masked, for logs."""
        return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", self.settings.resolved_database_url)

    @property
    def max_upload_bytes(self) -> int:
        """``settings.server.max_upload_mb`` in bytes."""
        return int(self.settings.server.max_upload_mb * 1024 * 1024)


def server_state(request: Request) -> ServerState:
    """FastAPI dependency: the state the lifespan opened.

    Raises:
        Unavailable: the app is serving without its lifespan having run.
    """
    state = getattr(request.app.state, "pocketml", None)
    if not isinstance(state, ServerState):
        raise Unavailable("the pocketml server is still starting; retry in a moment.")
    return state
