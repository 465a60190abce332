"""``pip install 'pocketml[device]'`` in a fresh venv: exactly the extra's dependencies
install, and the SDK imports no heavy framework and no pydantic or typer."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# What `pip install 'pocketml[device]'` asks for, read from pyproject.toml (the one home).
_PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
DEVICE_DEPS = [*_PROJECT["dependencies"], *_PROJECT["optional-dependencies"]["device"]]
CHECK = (
    "import sys, pocketml.device; "
    "heavy = {'torch', 'fastapi', 'sqlalchemy', 'sklearn', 'onnx', 'pydantic', 'typer', "
    "'pyarrow'} & set(sys.modules); "
    "assert not heavy, heavy; print('ok')"
)


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_device_extra_installs_alone_and_imports_no_heavy_framework(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    created = _run(sys.executable, "-m", "venv", venv)
    assert created.returncode == 0, created.stderr
    python = venv / "bin" / "python"
    pip = (python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check")

    deps = _run(*pip, *DEVICE_DEPS)
    assert deps.returncode == 0, deps.stderr[-2000:]
    own = _run(*pip, "--no-deps", REPO)
    assert own.returncode == 0, own.stderr[-2000:]
    check = _run(python, "-c", CHECK)

    assert check.returncode == 0, check.stderr[-2000:]
    assert check.stdout.strip() == "ok"
