"""The README's "A short tour", run as written: every command, in order, against a real server.

The commands are read from README.md, not copied here, so the tour cannot drift from what
works. The test runs them with bash in a temporary directory laid out like a fresh clone
(``pocketml.toml`` and a ``.venv/bin/activate`` that puts a ``pocketml`` on PATH running
this checkout), with its own ``HOME`` (the server's home is ``~/.pocketml``). Only two
things are added, neither a change to a command: the server listens on a free port instead
of 8000 (other test runs may hold it), and after ``pocketml server &`` the script waits
for ``/healthz``, as a person does by reading the server's first line.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pocketml

REPO = Path(__file__).resolve().parents[2]
SRC = Path(pocketml.__file__).resolve().parents[1]
TOUR_HEADING = "## A short tour"
SERVER_LINE = "pocketml server &"
README_URL = "http://127.0.0.1:8000"

pytestmark = pytest.mark.skipif(
    not (REPO / "README.md").is_file(), reason="needs the source checkout (README.md)"
)

WAIT_FOR_HEALTH = textwrap.dedent(
    """
    import sys, time, urllib.request
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(sys.argv[1] + "/healthz", timeout=2) as reply:
                if reply.status == 200:
                    break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit("the server did not answer /healthz within 60 s")
            time.sleep(0.2)
    """
)


def tour_commands(readme: str) -> list[str]:
    """The lines of the first bash block after the tour's heading, comments included."""
    section = readme[readme.index(TOUR_HEADING) :]
    match = re.search(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert match, "the tour has no ```bash block"
    return match.group(1).splitlines()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fresh_clone(root: Path) -> None:
    """What the tour expects to find: the repository's files it reads, and the venv."""
    (root / "pocketml.toml").write_text((REPO / "pocketml.toml").read_text())
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    launcher = bin_dir / "pocketml"
    launcher.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m pocketml "$@"\n')
    launcher.chmod(0o755)
    (bin_dir / "activate").write_text(f'export PATH="{bin_dir}:$PATH"\n')


def _script(lines: list[str], url: str) -> str:
    out = ["set -euo pipefail", "set -x"]
    for line in lines:
        out.append(line.replace(README_URL, url))
        if line.startswith(SERVER_LINE):
            out.append("echo $! > server.pid")
            out.append(f"{shlex.quote(sys.executable)} wait_for_health.py {url}")
    return "\n".join(out) + "\n"


def test_the_tour_extracts_the_server_start_and_its_stop() -> None:
    lines = tour_commands((REPO / "README.md").read_text())

    assert any(line.startswith(SERVER_LINE) for line in lines)
    assert any(README_URL in line for line in lines)
    assert lines[-1].startswith("kill %1")


def test_every_tour_command_works_in_order(tmp_path: Path) -> None:
    lines = tour_commands((REPO / "README.md").read_text())
    root = tmp_path / "clone"
    root.mkdir()
    _fresh_clone(root)
    (root / "wait_for_health.py").write_text(WAIT_FOR_HEALTH)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("POCKETML_")}
    env.update(
        HOME=str(tmp_path / "home"),
        PYTHONPATH=str(SRC),
        POCKETML_SERVER__PORT=str(port),
        COLUMNS="80",
    )
    try:
        result = subprocess.run(
            ["bash", "-c", _script(lines, f"http://127.0.0.1:{port}")],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        pid_file = root / "server.pid"
        if pid_file.is_file():  # the tour's `kill %1` did not run: stop the server here
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    out = result.stdout
    assert "cnn-small-onnx-fp32" in out  # build's variant table, names whole at 80 columns
    assert re.search(r"digits v2 \(candidate\)", out), out[-2000:]
    assert "rolled_back" in out  # the rollout made room for the A/B test
    assert re.search(r"synced \d+/20", out)
    # the fleet reported to the tour's server, not to an in-process one of its own
    assert "digits: telemetry per version and device class" in out
