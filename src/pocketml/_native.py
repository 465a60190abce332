"""Silence native libraries (LiteRT, TensorFlow's MLIR, ONNX Runtime tools, coremltools).

They print progress and INFO lines from C++ straight to file descriptors 1 and 2, which
Python's ``redirect_stdout`` cannot catch. ``quiet_native`` points both descriptors at
/dev/null for the duration of a call; exceptions still propagate unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
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


# Process-wide on purpose: descriptors 1 and 2 belong to the process, not to a caller.
_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int] | None = None


def _enter() -> None:
    global _depth, _saved
    with _lock:
        _depth += 1
        if _depth > 1 or _saved is not None:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            saved = (os.dup(1), os.dup(2))
        except OSError:  # no real descriptors (some embedded interpreters)
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.close(devnull)
        _saved = saved


def _exit() -> None:
    global _depth, _saved
    with _lock:
        _depth -= 1
        if _depth > 0 or _saved is None:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(_saved[0], 1)
        os.dup2(_saved[1], 2)
        os.close(_saved[0])
        os.close(_saved[1])
        _saved = None


@contextlib.contextmanager
def quiet_native() -> Iterator[None]:
    """Discard everything written to stdout/stderr (Python and native) inside the block.

    Safe across threads and when nested: file descriptors are process-wide, so one
    process-wide counter decides: the first caller redirects descriptors 1 and 2, the last
    one to leave flushes Python's buffers and restores them. ``sys.stdout`` itself is never
    swapped (``contextlib.redirect_stdout`` is not thread-safe: interleaved swaps left it
    pointing at a discarded buffer). Output of other threads during the block is silenced
    too, which is why library code uses this only around loads and conversions.
    """
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    _enter()
    try:
        yield
    finally:
        _exit()
