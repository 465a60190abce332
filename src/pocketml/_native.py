"""Silence native libraries (LiteRT, TensorFlow's MLIR, ONNX Runtime tools, coremltools).

They print progress and INFO lines from C++ straight to file descriptors 1 and 2, which
Python's ``redirect_stdout`` cannot catch. ``quiet_native`` points both descriptors at
/dev/null for the duration of a call; exceptions still propagate unchanged.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterator

__all__ = ["quiet_native"]

_NOISY_LOGGERS = (
    "coremltools",
    "litert_torch",
    "torchao",
    "absl",
    "onnxruntime",
    "ort_format_model",
)


@contextlib.contextmanager
def quiet_native() -> Iterator[None]:
    """Discard everything written to stdout/stderr (Python and native) inside the block."""
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        saved = (os.dup(1), os.dup(2))
    except OSError:  # no real descriptors (some embedded interpreters): Python-level only
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)
