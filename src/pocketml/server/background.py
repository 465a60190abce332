"""Run the server in a background thread on 127.0.0.1 and a free port.

For the demo, notebooks and tests: ``with serve_in_thread(settings) as url: ...`` starts
uvicorn with ``create_app(settings)``, waits for its startup event (no sleeps), yields the
base URL, and shuts the server down on exit.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from pocketml.config import Settings
from pocketml.errors import Unavailable
from pocketml.server._state import DeviceOptions
from pocketml.server.app import create_app

__all__ = ["serve_in_thread"]


class _Server(uvicorn.Server):
    """uvicorn.Server that signals an Event once startup finished (or failed)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()


@contextmanager
def serve_in_thread(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    device_options: DeviceOptions | None = None,
) -> Iterator[str]:
    """Serve ``create_app(settings)`` on ``host`` and a free port; yield its base URL.

    Args:
        device_options: overrides of the device-route options (see ``create_app``).

    Raises:
        Unavailable: the server did not start (its log says why).
    """
    app = create_app(settings, device_options=device_options)
    config = uvicorn.Config(app, host=host, port=0, log_level="warning", lifespan="on")
    server = _Server(config)
    # run(): uvicorn's own loop factory (uvloop when installed), as `pocketml server` uses.
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        if not server.ready.wait(timeout=60) or not server.started:
            raise Unavailable("the pocketml server did not start; see the log above")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
