"""The conformance world: fixed keys, the app, the model and its schema (see generate.py)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from pocketml.protect import ContentKey, Keyring, SigningKey

HERE = Path(__file__).resolve().parent
APP_ID = "conformance-app"
OTHER_APP_ID = "other-app"
MODEL = "conformance"
VARIANT = "logreg-onnx-fp32"
ISSUED_AT = "2026-12-01T00:00:00Z"
CREATED_AT = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
NONCE = bytes(range(1, 13))
CONTENT_KEY = ContentKey(key_id="aes:c0ffee00c0ffee00", secret=hashlib.sha256(b"content").digest())
WRONG_CONTENT_KEY = hashlib.sha256(b"not the content key").digest()

# A 2-feature logistic regression (two classes): softmax(x @ W + b).
WEIGHTS = [[1.5, -1.5], [-2.0, 2.0]]
BIAS = [0.25, -0.25]
SCHEMA: dict[str, Any] = {
    "format_version": 1,
    "name": MODEL,
    "task": "classification",
    "inputs": [
        {
            "name": "x",
            "dtype": "float32",
            "shape": [None, 2],
            "layout": "NC",
            "normalization": {"scale": 0.5, "mean": [1.0, 2.0], "std": [2.0, 4.0]},
        }
    ],
    "outputs": [{"name": "probabilities", "kind": "probabilities", "labels": ["no", "yes"]}],
}
CARD = "# conformance\n\nA 2-feature logistic regression for the client conformance vectors.\n"
CASCADE_THRESHOLD = 0.9  # between the vectors' confidences, so both paths are taken
RAW_INPUTS = [[0.0, 0.0], [4.0, 4.0], [10.0, -6.0], [-3.0, 12.0], [2.0, 4.0], [7.5, 1.25]]


def signing_key(name: str) -> SigningKey:
    """A fixed Ed25519 key per name: the vectors must not change between runs."""
    return SigningKey.from_private_bytes(
        hashlib.sha256(b"pocketml-conformance/" + name.encode()).digest()
    )


KEY_A, KEY_B, KEY_C = signing_key("a"), signing_key("b"), signing_key("c")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def keys_json(*keys: SigningKey) -> dict[str, str]:
    return {key.key_id: b64(key.public_bytes()) for key in keys}


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


# -- the model ----------------------------------------------------------------------------


def model_bytes() -> bytes:
    """The ONNX file, built with onnx's helpers (deterministic: no timestamps)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["z0"]),
            helper.make_node("Add", ["z0", "b"], ["z"]),
            helper.make_node("Softmax", ["z"], ["probabilities"], axis=1),
        ],
        "logreg",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])],
        initializer=[
            helper.make_tensor("W", TensorProto.FLOAT, [2, 2], [w for row in WEIGHTS for w in row]),
            helper.make_tensor("b", TensorProto.FLOAT, [2], BIAS),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="pocketml-conformance"
    )
    model.ir_version = 8
    return bytes(model.SerializeToString())


def keyring(
    sequence: int,
    *,
    active: SigningKey,
    keys: tuple[SigningKey, ...],
    signers: tuple[SigningKey, ...],
    revoked: tuple[SigningKey, ...] = (),
    app_id: str = APP_ID,
) -> Keyring:
    """A keyring of the conformance app, signed by ``signers``."""
    ring = Keyring(
        app_id=app_id,
        sequence=sequence,
        issued_at=ISSUED_AT,
        active=active.key_id,
        keys={k.key_id: k.public_bytes() for k in keys},
        revoked=tuple(k.key_id for k in revoked),
    )
    return ring.signed_by(*signers)
