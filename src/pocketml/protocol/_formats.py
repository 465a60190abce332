"""Model formats (their file extensions and build files) and a file's sha256.

Four format -> extension maps once disagreed on Core ML; every format list and extension
map of the package now derives from ``FORMATS``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FORMATS", "FORMAT_NAMES", "RUNNABLE_FORMATS", "ModelFormat", "file_sha256"]


@dataclass(frozen=True)
class ModelFormat:
    """A model format: its file extensions and the file a build writes.

    Attributes:
        name: the format's name on the wire (``"tflite"``).
        extensions: the model file extensions a package accepts, without the dot; the
            package member is ``model.<ext>`` (``.enc`` appended when encrypted).
        build_file: the file (or folder) ``convert`` writes for this format.
        is_runnable: the Python runtimes (ONNX Runtime, LiteRT) open it.
    """

    name: str
    extensions: tuple[str, ...]
    build_file: str
    is_runnable: bool


FORMATS: dict[str, ModelFormat] = {
    fmt.name: fmt
    for fmt in (
        ModelFormat("onnx", ("onnx",), "model.onnx", is_runnable=True),
        ModelFormat("ort", ("ort",), "model.ort", is_runnable=True),
        ModelFormat("tflite", ("tflite",), "model.tflite", is_runnable=True),
        ModelFormat("coreml", ("mlmodel", "mlpackage.zip"), "model.mlpackage", is_runnable=False),
    )
}
FORMAT_NAMES: tuple[str, ...] = tuple(FORMATS)
RUNNABLE_FORMATS: tuple[str, ...] = tuple(f.name for f in FORMATS.values() if f.is_runnable)


def file_sha256(path: Path, *, chunk_size: int = 1 << 20) -> str:
    """The sha256 hex digest of a file, read in chunks (memory stays flat).

    Args:
        path: the file.
        chunk_size: bytes read at a time.

    Returns:
        64 lowercase hex digits.

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
