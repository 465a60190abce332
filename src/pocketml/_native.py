"""Silence native libraries (LiteRT, MLIR, ONNX Runtime tools, coremltools) if asked to.

They print progress and INFO lines from C++ straight to file descriptors 1 and 2, which
Python's ``redirect_stdout`` cannot catch. Descriptors belong to the process, so pointing
them at /dev/null silences every thread: right for the CLI, which converts and quantizes in
one thread, wrong for a server, whose request threads log while a model loads. So the
choice is split in two:

- ``quiet_native()`` marks a noisy native call in library code (an export, a conversion,
  a quantization, a LiteRT load). On its own it changes nothing.
- ``native_output_silenced()`` is the entry point's explicit choice (the CLI's build
  commands): while it is active, every ``quiet_native`` block points descriptors 1 and 2
  at /dev/null, and the noisy Python loggers are raised to ERROR.

The server and the device SDK never make that choice, so a model load there never touches
descriptors 1 and 2. ONNX Runtime is quieted there by its own setting
(``SessionOptions.log_severity_level``); LiteRT has none for its one "Created TensorFlow
Lite XNNPACK delegate" INFO line per process (``TF_CPP_MIN_LOG_LEVEL`` does not reach it),
which stays on stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator

__all__ = ["native_output_silenced", "quiet_native"]

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
_silencers = 0  # active native_output_silenced() blocks
_depth = 0  # active quiet_native() blocks that redirected
_saved: tuple[int, int] | None = None


def _enter() -> bool:
    """Redirect descriptors 1 and 2 if an entry point silences; True when this block counts."""
    global _depth, _saved
    with _lock:
        if _silencers == 0:
            return False
        _depth += 1
        if _depth > 1 or _saved is not None:
            return True
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            saved = (os.dup(1), os.dup(2))
        except OSError:  # no real descriptors (some embedded interpreters)
            return True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.close(devnull)
        _saved = saved
        return True


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
    """Mark a block whose native libraries print to stdout/stderr.

    Inside ``native_output_silenced()`` everything written to descriptors 1 and 2 (Python
    and native) in the block is discarded; otherwise the block runs untouched. Safe across
    threads and when nested: one process-wide counter decides, the first block redirects
    descriptors 1 and 2 and the last one to leave flushes Python's buffers and restores
    them. ``sys.stdout`` itself is never swapped (``contextlib.redirect_stdout`` is not
    thread-safe: interleaved swaps left it pointing at a discarded buffer). Exceptions
    propagate unchanged.
    """
    counts = _enter()
    try:
        yield
    finally:
        if counts:
            _exit()


@contextlib.contextmanager
def native_output_silenced() -> Iterator[None]:
    """Entry points only: let ``quiet_native`` blocks discard native output while inside.

    Output of other threads during a ``quiet_native`` block is discarded too, so only an
    entry point that does its noisy work in one thread (the CLI's build commands) may
    choose this; the server never does. The noisy Python loggers are set to ERROR for the
    duration and restored afterwards.
    """
    global _silencers
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    with _lock:
        _silencers += 1
    try:
        yield
    finally:
        with _lock:
            _silencers -= 1
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
