"""Native-output silencing: only at an entry point's request, safe across threads, and never
on the server's model-load path (a request thread's output during a load is not lost)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def _run_child(script: str) -> subprocess.CompletedProcess[str]:
    # A child process, so the test sees the real descriptors 1 and 2, not pytest's capture.
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )


def test_concurrent_quiet_blocks_leave_stdout_working() -> None:
    result = _run_child(
        """
        import os, sys, threading
        from pocketml._native import native_output_silenced, quiet_native

        def noisy():
            for _ in range(200):
                with quiet_native():
                    os.write(1, b"native noise\\n")
                    with quiet_native():
                        os.write(2, b"nested noise\\n")

        with native_output_silenced():
            threads = [threading.Thread(target=noisy) for _ in range(4)]
            for t in threads: t.start()
            for t in threads: t.join()
        print("still visible", flush=True)
        os.write(2, b"stderr visible\\n")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "still visible\n"
    assert result.stderr == "stderr visible\n"


def test_quiet_block_without_an_entry_points_request_keeps_output() -> None:
    result = _run_child(
        """
        import os
        from pocketml._native import quiet_native

        with quiet_native():
            os.write(1, b"out inside\\n")
            os.write(2, b"err inside\\n")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "out inside\n"
    assert result.stderr.endswith("err inside\n")


@pytest.mark.parametrize(("command", "noise"), [("bench", ""), ("server", "native noise\n")])
def test_cli_silences_native_output_for_build_commands_only(command: str, noise: str) -> None:
    # The command's body is swapped for one noisy native block: the root callback alone
    # decides whether it is silenced (build commands) or not (the server's threads log).
    result = _run_child(
        f"""
        import os
        from pocketml import cli
        from pocketml._native import quiet_native

        def body():
            with quiet_native():
                os.write(1, b"native noise\\n")
            print("visible", flush=True)

        command = next(c for c in cli.app.registered_commands if c.name == {command!r})
        command.callback = body
        try:
            cli.main([{command!r}])
        except SystemExit as exc:
            assert not exc.code, exc.code
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{noise}visible\n"


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ONNX and TFLite model (the deterministic demo build) with its schema."""
    from pocketml.sim import write_demo_build

    return write_demo_build(tmp_path_factory.mktemp("build"), formats=("onnx", "tflite"))


@pytest.mark.parametrize(
    ("fmt", "runtime_class"),
    [
        ("tflite", "ai_edge_litert.interpreter:Interpreter"),
        ("onnx", "onnxruntime:InferenceSession"),
    ],
)
def test_server_model_load_keeps_another_threads_output(
    model_files: Path, fmt: str, runtime_class: str
) -> None:
    # Another thread writes to descriptors 1 and 2 while the runtime is loading the file
    # (synchronised with an event, not a sleep); before, LiteRT loads pointed both at
    # /dev/null for the whole process and these lines were lost.
    build = json.loads((model_files / "build.json").read_text())
    variant = next(v for v in build["variants"] if v["format"] == fmt)
    job = {
        "path": str(model_files / variant["file"]),
        "format": fmt,
        "schema": json.loads((model_files / "schema.json").read_text()),
        "runtime": runtime_class,
    }
    result = _run_child(
        f"""
        import importlib, json, os, threading
        from pathlib import Path
        from types import SimpleNamespace
        from pocketml.serving._cache import load_model

        job = json.loads({json.dumps(json.dumps(job))})
        module, name = job["runtime"].split(":")
        runtime = getattr(importlib.import_module(module), name)
        original = runtime.__init__

        def loading(self, *args, **kwargs):
            written = threading.Event()

            def other_thread():
                os.write(1, b"request thread: stdout\\n")
                os.write(2, b"request thread: stderr\\n")
                written.set()

            thread = threading.Thread(target=other_thread)
            thread.start()
            written.wait()
            thread.join()
            original(self, *args, **kwargs)

        runtime.__init__ = loading
        # the fields of the registry's VariantInfo that load_model reads
        variant = SimpleNamespace(format=job["format"], sha256="0" * 64, size=1)
        loaded = load_model(Path(job["path"]), variant, job["schema"], threads=1)
        print("loaded", loaded.runner.model_format, flush=True)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"request thread: stdout\nloaded {fmt}\n"
    assert "request thread: stderr\n" in result.stderr
