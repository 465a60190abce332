"""A federatable digits build for the federated device tests (ONNX written with onnx.helper).

The model: raw pixels ``x`` (64 values, normalized by the schema's scale 1/16) ->
``relu(x A + a)`` (a fixed seeded projection to 24 values: the frozen backbone, graph
output ``embedding``) -> ``Gemm(head.weight, head.bias, transB=1)`` -> softmax (graph
output ``probabilities``, listed first so ``predict`` reads it). The head starts as the
nearest-centroid classifier in embedding space, so the model is usable but improvable.
Its params name the head (``params.federated``), as docs/federated.md asks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pocketml.protocol import file_sha256
from pocketml.schema import Normalization
from pocketml.sim import centroids
from pocketml.train.model import make_schema

EMBED_DIM = 24
HEAD_SPEC = {
    "embedding_output": "embedding",
    "weight": "head.weight",
    "bias": "head.bias",
    "weight_layout": "out_in",
}


def backbone(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The frozen projection ``(A, a)``: 64 -> EMBED_DIM."""
    rng = np.random.default_rng(seed)
    return (
        rng.normal(0, 0.5, size=(64, EMBED_DIM)).astype(np.float32),
        rng.normal(0, 0.1, size=EMBED_DIM).astype(np.float32),
    )


def embed_raw(raw: np.ndarray) -> np.ndarray:
    """What the ONNX graph's ``embedding`` output computes (numpy reference)."""
    a_mat, a_vec = backbone()
    return np.maximum((np.asarray(raw, np.float32) / 16.0) @ a_mat + a_vec, 0.0)


def _head() -> tuple[np.ndarray, np.ndarray]:
    mu = embed_raw(centroids())  # 10 x d, class means in embedding space
    return (2.0 * mu).astype(np.float32), (-(mu**2).sum(axis=1)).astype(np.float32)


def write_federatable_build(out_dir: Path) -> Path:
    """Write a BUILD_DIR whose one device variant (ONNX) is federatable."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out_dir.mkdir(parents=True, exist_ok=True)
    a_mat, a_vec = backbone()
    weight, bias = _head()
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "backbone.A"], ["proj"]),
            helper.make_node("Add", ["proj", "backbone.a"], ["pre"]),
            helper.make_node("Relu", ["pre"], ["embedding"]),
            helper.make_node(
                "Gemm", ["embedding", "head.weight", "head.bias"], ["logits"], transB=1
            ),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        ],
        "digits-federatable",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", EMBED_DIM]),
        ],
        [
            numpy_helper.from_array(a_mat, "backbone.A"),
            numpy_helper.from_array(a_vec, "backbone.a"),
            numpy_helper.from_array(weight, "head.weight"),
            numpy_helper.from_array(bias, "head.bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = out_dir / "device.onnx"
    onnx.save(model, str(path))
    schema = make_schema(
        "digits",
        (64,),
        [str(i) for i in range(10)],
        layout="NC",
        normalization=Normalization(scale=1.0 / 16.0),
        value_range=(0.0, 16.0),
    )
    (out_dir / "schema.json").write_text(schema.to_json())
    (out_dir / "card.md").write_text("# digits (federatable test model)\n")
    build = {
        "format_version": 1,
        "model": "digits",
        "schema": "schema.json",
        "card": "card.md",
        "source_framework": "onnx",
        "params": {"federated": HEAD_SPEC},
        "variants": [
            {
                "name": "fed-onnx-fp32",
                "file": path.name,
                "format": "onnx",
                "precision": "fp32",
                "role": "device",
                "sha256": file_sha256(path),
                "size": path.stat().st_size,
                "profiles": ["edge-linux", "iphone"],
            }
        ],
    }
    (out_dir / "build.json").write_text(json.dumps(build, indent=2) + "\n")
    return out_dir
