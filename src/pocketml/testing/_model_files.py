"""Deterministic model files of every format, distinct per seed and about ``size`` bytes.

ONNX: ``softmax(x @ w)`` for 64 features and 10 classes with seeded weights, padded to
about ``size`` bytes (so two seeds give two files). ORT: that model saved by ONNX Runtime
in its ORT format. TFLite: the FlatBuffer header with the ``TFL3`` identifier and
seeded bytes (not runnable; a push checks the container only). Core ML: a zipped
``.mlpackage`` with its ``Manifest.json`` and a seeded weights file.
"""

from __future__ import annotations

import json
import random
import struct
import zipfile
from pathlib import Path

from pocketml.errors import InvalidInput

__all__ = ["write_model_file"]


def write_model_file(
    path: Path, fmt: str = "onnx", *, seed: int | str = 0, size: int = 2000
) -> Path:
    """Write a small valid file of format ``fmt`` to ``path``.

    Args:
        path: where to write (parents are created).
        fmt: "onnx", "ort", "tflite" or "coreml".
        seed: makes the bytes (and so the sha256) differ between files.
        size: about how many bytes the file has.

    Returns:
        ``path``.

    Raises:
        InvalidInput: an unknown format.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    if fmt == "onnx":
        path.write_bytes(_onnx_bytes(rng, size))
    elif fmt == "ort":
        _write_ort(path, _onnx_bytes(rng, size))
    elif fmt == "tflite":
        path.write_bytes(struct.pack("<I", 28) + b"TFL3" + rng.randbytes(max(size - 8, 8)))
    elif fmt == "coreml":
        with zipfile.ZipFile(path, "w") as archive:
            manifest = {"fileFormatVersion": "1.0.0", "itemInfoEntries": {}}
            archive.writestr("model.mlpackage/Manifest.json", json.dumps(manifest))
            archive.writestr("model.mlpackage/Data/weights.bin", rng.randbytes(max(size, 1)))
    else:
        raise InvalidInput(f"format must be onnx, ort, tflite or coreml; got {fmt!r}.")
    return path


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes | int | str) -> bytes:
    """One protobuf field: a varint (int) or length-delimited (bytes, str)."""
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _value_info(name: str, width: int) -> bytes:
    """ValueInfoProto of a float tensor of shape (N, width)."""
    dims = _field(1, _field(2, "N")) + _field(1, _field(1, width))  # dim_param, dim_value
    tensor = _field(1, 1) + _field(2, dims)  # elem_type FLOAT, shape
    return _field(1, name) + _field(2, _field(1, tensor))


def _tensor(name: str, dims: tuple[int, ...], values: list[float]) -> bytes:
    """TensorProto{dims=1, data_type=2 (FLOAT=1), name=8, raw_data=9}."""
    raw = struct.pack(f"<{len(values)}f", *values)
    return b"".join(_field(1, d) for d in dims) + _field(2, 1) + _field(8, name) + _field(9, raw)


def _node(op: str, inputs: tuple[str, ...], output: str) -> bytes:
    return b"".join(_field(1, i) for i in inputs) + _field(2, output) + _field(4, op)


def _onnx_bytes(rng: random.Random, size: int, features: int = 64, classes: int = 10) -> bytes:
    """An ONNX model ``softmax(x @ w)`` (x: (N, 64), 10 classes), written by hand.

    It fits the 64-feature, 10-label schemas of the tests, so it runs in cloud predict.
    A ``doc_string`` of seeded hex digits brings the file to about ``size`` bytes and
    makes every seed's file distinct. No dependency on the onnx package.
    """
    weights = [rng.uniform(-1, 1) for _ in range(features * classes)]
    padding = rng.randbytes(max(1, (size - 4 * len(weights) - 200) // 2)).hex()
    graph = (
        _field(1, _node("MatMul", ("x", "w"), "z"))
        + _field(1, _node("Softmax", ("z",), "y"))
        + _field(2, "g")
        + _field(5, _tensor("w", (features, classes), weights))
        + _field(11, _value_info("x", features))
        + _field(12, _value_info("y", classes))
    )
    opset = _field(1, "") + _field(2, 13)  # OperatorSetIdProto{domain, version}
    # ir_version 8, doc_string, graph, opset_import
    return _field(1, 8) + _field(6, padding) + _field(7, graph) + _field(8, opset)


def _write_ort(path: Path, onnx_bytes: bytes) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(path)
    options.add_session_config_entry("session.save_model_format", "ORT")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
