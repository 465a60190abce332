"""Honest labels: is a file labelled int8 really quantized, and is it really smaller?

A quantizer can succeed and change nothing: coremltools leaves every weight tensor under
2,048 elements in float (a small net comes out byte-for-byte the same size), and ONNX
Runtime's int8 rewrite of a tiny net adds scale and zero-point tensors that outweigh the
saved bytes (18.2 KB int8 against 12.2 KB fp32 for a MobileNet-style net). ``pocketml
build`` asks these questions of every optimized file: one that is not quantized is dropped
with that reason, one that is not smaller than its fp32 source is kept and flagged.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["QUANTIZED_ONNX_OPS", "is_quantized", "size_flag"]

# Operators that only appear in a graph ONNX Runtime has quantized (QDQ or integer ops).
QUANTIZED_ONNX_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "ConvInteger",
        "QLinearConv",
        "QLinearMatMul",
        "QGemm",
        "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat",
    }
)


def is_quantized(path: Path | str, model_format: str) -> bool:
    """Whether the file at ``path`` holds int8 weights or integer operators.

    ``model_format`` is "onnx", "tflite" or "coreml" (an ORT file is judged by the ONNX
    file it was built from). Unknown formats count as quantized (nothing to say).
    """
    path = Path(path)
    if model_format == "onnx":
        return _onnx_is_quantized(path)
    if model_format == "tflite":
        return _tflite_is_quantized(path)
    if model_format == "coreml":
        return _coreml_is_quantized(path)
    return True


def _onnx_is_quantized(path: Path) -> bool:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    if any(node.op_type in QUANTIZED_ONNX_OPS for node in model.graph.node):
        return True
    small = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    return any(init.data_type in small for init in model.graph.initializer)


def _tflite_is_quantized(path: Path) -> bool:
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(path)).get_tensor_details()
    return any(np.dtype(d["dtype"]) in (np.int8, np.uint8) for d in details)


def _coreml_is_quantized(path: Path) -> bool:
    import coremltools as ct

    spec = ct.utils.load_spec(str(path))
    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            if any(op.type.startswith("constexpr_") for op in block.operations):
                return True
    return False


def size_flag(size: int, fp32_size: int | None) -> str | None:
    """A flag when an optimized file is not smaller than its fp32 source, else None."""
    if fp32_size is None or size < fp32_size:
        return None
    return f"not smaller than fp32 ({size:,} B vs {fp32_size:,} B)"
