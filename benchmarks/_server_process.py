"""Shared by the registry benchmarks: run ``pocketml server`` (uvicorn) in a subprocess."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pocketml.server.background import serve_in_process

OPERATOR_TOKEN = "pml_op_benchmark-operator-token"


@contextmanager
def server_process(home: Path, **env_extra: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``pocketml server --no-access-log`` on a free port with ``home``; yield the
    process and its URL."""
    env = {"POCKETML_HOME": str(home), "POCKETML_OPERATOR_TOKEN": OPERATOR_TOKEN, **env_extra}
    with serve_in_process(env, args=["--no-access-log"]) as running:
        yield running


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of a live process, in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
