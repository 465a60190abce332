"""Shared by the registry benchmarks: run ``pocketml server`` (uvicorn) in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

OPERATOR_TOKEN = "pml_op_benchmark-operator-token"
_RUNNING = re.compile(r"Uvicorn running on (http://\S+)")


@contextmanager
def server_process(home: Path, **env_extra: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start the server on a free port with ``home``; yield the process and its URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POCKETML_")}
    env.update({"POCKETML_HOME": str(home), "POCKETML_OPERATOR_TOKEN": OPERATOR_TOKEN, **env_extra})
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "pocketml.server.app:create_app_from_env",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--log-level",
        "info",
        "--no-access-log",
    ]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        url = None
        for line in process.stderr:
            match = _RUNNING.search(line)
            if match:
                url = match.group(1)
                break
        if url is None:
            raise RuntimeError("the server exited before serving")
        threading.Thread(target=process.stderr.read, daemon=True).start()
        yield process, url
    finally:
        process.terminate()
        process.wait(timeout=30)


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of a live process, in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
