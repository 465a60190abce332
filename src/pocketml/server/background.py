"""Run the server in the background: in a thread, or as its own process.

For the demo, notebooks and tests: ``with serve_in_thread(settings) as url: ...`` starts
uvicorn with ``create_app(settings)``, waits for its startup event (no sleeps), yields the
base URL, and shuts the server down on exit. ``serve_in_process(env)`` runs ``pocketml
server`` as a child process exactly as a user starts it (for tests that kill it, and for
benchmarks that must not share an interpreter with their load).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import uvicorn

from pocketml.config import Settings
from pocketml.errors import Unavailable
from pocketml.server._protocol import uvicorn_options
from pocketml.server.app import create_app

__all__ = ["serve_in_process", "serve_in_thread"]

_RUNNING = re.compile(r"Uvicorn running on (http://\S+)")


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
def serve_in_thread(settings: Settings, *, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``create_app(settings)`` on ``host`` and a free port; yield its base URL.

    Args:
        settings: the server's settings (its port is ignored: a free one is bound).
        host: the interface to bind.

    Raises:
        Unavailable: the server did not start (its log says why).
    """
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=0,
        log_level="warning",
        lifespan="on",
        **uvicorn_options(settings.server.limits),  # the same bounded head as `pocketml server`
    )
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


@contextmanager
def serve_in_process(
    env: Mapping[str, str],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    args: Sequence[str] = (),
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run ``python -m pocketml server`` until the block ends; yield (process, base URL).

    Args:
        env: ``POCKETML_*`` settings of the server (``POCKETML_HOME`` at least); every
            ``POCKETML_*`` variable of this process is left out, the rest is inherited.
        host: the interface to bind.
        port: the port (0: a free one; the URL names the one bound).
        args: more ``pocketml server`` options, e.g. ``["--no-access-log"]``.

    Raises:
        Unavailable: the server exited before serving (with what it printed).
    """
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("POCKETML_")}
    child_env.update(env)
    command = [
        sys.executable, "-m", "pocketml", "server", "--host", host, "--port", str(port), *args
    ]  # fmt: skip
    process = subprocess.Popen(command, env=child_env, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        printed = []
        for line in process.stderr:  # blocks until uvicorn says where it listens (or exits)
            printed.append(line)
            match = _RUNNING.search(line)
            if match:
                break
        else:
            raise Unavailable("the pocketml server exited before serving:\n" + "".join(printed))
        threading.Thread(target=process.stderr.read, daemon=True).start()  # drain the pipe
        yield process, match.group(1)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)
