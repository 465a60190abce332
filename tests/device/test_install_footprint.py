"""The device SDK imports without the server's, the CLI's and the build's frameworks.

``pip install 'pocketml[device]'`` installs numpy, onnxruntime, httpx and cryptography
only; an import of anything else on the device path would fail there. Each check runs in a
fresh interpreter, because this test process has long imported everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pocketml

FORBIDDEN = ("pydantic", "typer", "rich", "fastapi", "sqlalchemy", "pyarrow", "torch")

# httpx imports its optional command line (click, rich) when they are installed, as they
# are in this development environment; a device install lacks them. Blocking httpx._main
# gives httpx the fallback it has on a device, so what remains is what pocketml imports.
_PROBE = """
import json, sys
sys.modules["httpx._main"] = None
import pocketml.device
print(json.dumps(sorted(name for name in sys.modules if "." not in name)))
"""


def _top_level_modules_after(code: str) -> set[str]:
    src = str(Path(pocketml.__file__).parent.parent)
    env = {**os.environ, "PYTHONPATH": src}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return set(json.loads(done.stdout))


def test_importing_the_device_sdk_loads_no_server_cli_or_build_framework() -> None:
    loaded = _top_level_modules_after(_PROBE)

    assert "pocketml" in loaded
    assert sorted(loaded & set(FORBIDDEN)) == []


def test_the_console_script_without_the_cli_extra_names_the_pip_command() -> None:
    code = (
        "import sys\n"
        "sys.modules['typer'] = None  # as on a device install\n"
        "from pocketml._launch import main\n"
        "main()\n"
    )
    src = str(Path(pocketml.__file__).parent.parent)
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": src},
    )

    assert done.returncode == 2
    assert "pip install 'pocketml[cli]'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("name", ["pydantic", "typer"])
def test_the_probe_would_see_a_forbidden_import(name: str) -> None:
    loaded = _top_level_modules_after(f"import {name}\n" + _PROBE)

    assert name in loaded
