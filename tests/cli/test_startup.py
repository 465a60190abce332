"""The CLI starts without the heavy libraries: ``pocketml --help`` and light commands.

Typer builds every command's help at start-up, so a command module that imports torch or
FastAPI at its top makes every ``pocketml`` invocation pay for it (3-4 CPU-seconds before
this was enforced). The subprocess checks are what a user runs; the copies of library
constants the help texts need are checked against the library here.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = (
    "torch",
    "onnx",
    "onnxruntime",
    "coremltools",
    "litert",
    "ai_edge_litert",
    "ai_edge_torch",
    "sklearn",
    "scipy",
    "pyarrow",
    "fastapi",
    "sqlalchemy",
)

# Runs the CLI in-process like `python -m pocketml ARGS`, then prints the heavy modules loaded.
_PROBE = f"""
import json, runpy, sys
sys.argv = ["pocketml", *json.loads(sys.argv[1])]
try:
    runpy.run_module("pocketml", run_name="__main__")
except SystemExit:
    pass
sys.stdout.flush()
sys.stderr.write("\\nHEAVY=" + json.dumps(sorted(
    m for m in {HEAVY!r} if m in sys.modules
)) + "\\n")
"""


def heavy_modules_after(*args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    line = [x for x in result.stderr.splitlines() if x.startswith("HEAVY=")]
    assert line, result.stderr[-2000:]
    return list(json.loads(line[-1].removeprefix("HEAVY=")))


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("data", "--help"),
        ("rollout", "--help"),
        ("app", "keys", "--help"),
        ("server", "--help"),
        ("build", "--help"),
        ("train", "--help"),
        ("demo", "--help"),
        ("data", "info", "digits"),
        ("models", "list", "--server", "http://127.0.0.1:9", "--token", "t"),
    ],
    ids=lambda args: " ".join(args),
)
def test_a_light_command_imports_no_heavy_library(args: tuple[str, ...]) -> None:
    assert heavy_modules_after(*args) == []


def test_importing_the_cli_loads_no_heavy_library() -> None:
    code = f"import sys, pocketml.cli; print([m for m in {HEAVY!r} if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


def test_help_copies_agree_with_the_library() -> None:
    from pocketml.cli import _convert, _demo, _train
    from pocketml.convert import DEFAULT_OPSET, ORT_PLATFORMS, TARGETS
    from pocketml.demo import CHAPTERS
    from pocketml.train import SKLEARN_ARCHITECTURES, TORCH_ARCHITECTURES

    assert _convert.DEFAULT_OPSET == DEFAULT_OPSET
    assert tuple(_convert.ORT_PLATFORMS) == tuple(ORT_PLATFORMS)
    assert tuple(_convert.TARGETS) == tuple(TARGETS)
    assert _demo.CHAPTERS == CHAPTERS
    expected = (*TORCH_ARCHITECTURES, *SKLEARN_ARCHITECTURES)
    assert expected == _train.ARCHITECTURES
